"""Account commands: create-admin, create-user, create-api-token, revoke-api-tokens, ensure-admin."""
from __future__ import annotations

import secrets

import click
from flask import current_app
from sqlalchemy import func, or_, select

from .extensions import db
from .models import User
from .security import hash_password, issue_api_token, revoke_api_tokens

MIN_PASSWORD_LENGTH = 8


def create_account(username: str, email: str, password: str, is_admin: bool) -> User:
    """Create an active account; raises ``click.ClickException`` when the name or e-mail is taken."""
    username, email = username.strip(), email.strip()
    if not username or "@" not in email:
        raise click.ClickException("A username and a valid e-mail address are required.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise click.ClickException(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.")
    taken = db.session.execute(
        select(User).where(or_(User.username == username, func.lower(User.email) == email.lower()))
    ).first()
    if taken:
        raise click.ClickException(f"A user named {username!r} or with e-mail {email!r} already exists.")
    user = User(username=username, email=email, password_hash=hash_password(password),
                is_active=True, is_admin=is_admin)
    db.session.add(user)
    db.session.commit()
    return user


def _user_by_name(username: str) -> User:
    user = db.session.execute(select(User).filter_by(username=username)).scalar_one_or_none()
    if user is None:
        raise click.ClickException(f"No user named {username!r}.")
    return user


def register_account_commands(app) -> None:
    account_options = [
        click.option("--username", prompt=True),
        click.option("--email", prompt=True),
        click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True),
    ]

    def with_account_options(func):
        for option in reversed(account_options):
            func = option(func)
        return func

    @app.cli.command("create-admin")
    @with_account_options
    def create_admin(username, email, password):
        """Create an administrator account."""
        create_account(username, email, password, is_admin=True)
        click.echo(f"Admin {username} created.")

    @app.cli.command("create-user")
    @with_account_options
    def create_user(username, email, password):
        """Create an ordinary, verified account."""
        create_account(username, email, password, is_admin=False)
        click.echo(f"User {username} created.")

    @app.cli.command("create-api-token")
    @click.argument("username")
    @click.option("--name", default="cli", help="A label for the token.")
    def create_api_token(username, name):
        """Print a new API token for an admin (shown once, stored hashed)."""
        user = _user_by_name(username)
        if not user.is_admin or not user.is_active:
            raise click.ClickException(f"{username!r} is not an active admin; API tokens are for admins.")
        click.echo(issue_api_token(user, name))

    @app.cli.command("revoke-api-tokens")
    @click.argument("username")
    def revoke_tokens(username):
        """Revoke every API token of a user."""
        count = revoke_api_tokens(_user_by_name(username))
        click.echo(f"Revoked {count} token(s) of {username}.")

    @app.cli.command("ensure-admin")
    def ensure_admin():
        """Create the admin account 'admin' when no admin exists (first start)."""
        if db.session.execute(select(User).filter_by(is_admin=True)).first():
            return
        import os

        password = os.environ.get("ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        create_account("admin", "admin@localhost.localdomain", password, is_admin=True)
        if os.environ.get("ADMIN_PASSWORD"):
            click.echo("Created admin account 'admin' with the password from ADMIN_PASSWORD.")
        else:
            click.echo(f"Created admin account 'admin' with password: {password}\n"
                       "This password is shown once; change it after logging in.")
        current_app.logger.info("first admin created")
