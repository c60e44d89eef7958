"""Account commands: create-admin, create-user, ensure-admin; API tokens: create, list, revoke."""
from __future__ import annotations

import secrets

import click
import orjson
from flask import current_app
from sqlalchemy import func, or_, select

from .admin import api_tokens
from .errors import OneLineErrors
from .extensions import db
from .models import User
from .security import SCOPES, hash_password

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

    @app.cli.command("create-admin", cls=OneLineErrors)
    @with_account_options
    def create_admin(username, email, password):
        """Create an administrator account."""
        create_account(username, email, password, is_admin=True)
        click.echo(f"Admin {username} created.")

    @app.cli.command("create-user", cls=OneLineErrors)
    @with_account_options
    def create_user(username, email, password):
        """Create an ordinary, verified account."""
        create_account(username, email, password, is_admin=False)
        click.echo(f"User {username} created.")

    register_token_commands(app)

    @app.cli.command("ensure-admin", cls=OneLineErrors)
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


def register_token_commands(app) -> None:
    @app.cli.command("create-api-token", cls=OneLineErrors)
    @click.argument("username")
    @click.option("--scope", "scopes", multiple=True, type=click.Choice(SCOPES),
                  help="What the token may do (repeat for several; default admin).")
    @click.option("--expires-in", type=click.IntRange(1, api_tokens.MAX_EXPIRY_DAYS), metavar="DAYS",
                  help="Days until it stops working (default: never).")
    @click.option("--name", default="cli", help="A label for the token.")
    def create_api_token(username, scopes, expires_in, name):
        """Print a new API token for an admin as the last line (shown once, stored hashed)."""
        try:
            _token, secret = api_tokens.create_token(_user_by_name(username), name=name, scopes=scopes,
                                                     expires_in_days=expires_in, actor="cli")
        except api_tokens.TokenError as exc:
            raise click.ClickException(exc.message) from None
        click.echo(secret)

    @app.cli.command("list-api-tokens", cls=OneLineErrors)
    @click.option("--json", "as_json", is_flag=True, help='Print {"tokens": [...]}.')
    def list_api_tokens(as_json):
        """List the API tokens: id, name, owner, scopes, created, last used, expires, revoked."""
        tokens = api_tokens.list_tokens()
        if as_json:
            click.echo(orjson.dumps({"tokens": tokens}).decode())
            return
        rows = [("ID", "NAME", "OWNER", "SCOPES", "CREATED", "LAST USED", "EXPIRES", "REVOKED")]
        rows += [(str(t["id"]), t["name"], t["owner"] or "-", ",".join(t["scopes"]), _minute(t["created_at"]),
                  _minute(t["last_used_at"]), _minute(t["expires_at"], "never"), _minute(t["revoked_at"]))
                 for t in tokens]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())

    @app.cli.command("revoke-api-token", cls=OneLineErrors)
    @click.argument("token_id", type=int)
    def revoke_token(token_id):
        """Revoke one API token by its id."""
        try:
            token = api_tokens.revoke_token(token_id, actor="cli")
        except api_tokens.TokenError as exc:
            raise click.ClickException(exc.message) from None
        click.echo(f"Revoked API token {token['id']} ({token['name']}).")

    @app.cli.command("revoke-api-tokens", cls=OneLineErrors)
    @click.argument("username")
    def revoke_tokens(username):
        """Revoke every API token of a user."""
        count = api_tokens.revoke_user_tokens(_user_by_name(username), actor="cli")
        click.echo(f"Revoked {count} token(s) of {username}.")


def _minute(iso: str | None, missing: str = "-") -> str:
    return iso[:16].replace("T", " ") if iso else missing
