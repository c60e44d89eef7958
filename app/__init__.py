"""The CyberQuest Admin application factory."""
from __future__ import annotations

from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from config import ConfigError, check_settings, create_private_sqlite_file, load_config, parse_passphrase

from . import errors, extensions, request_limits, restore_hooks, security
from . import sqlite_pragmas  # noqa: F401  (importing it registers the SQLite connection settings)
from .admin.routes import bp as admin_bp
from .auth.routes import bp as auth_bp
from .backup.cli import rekey as rekey_cli, restores as restore_cli, schedule as schedule_cli
from .backup.archive.encryption import self_test
from .backup.cli.backups import backup_cli
from .backup.errors import EncryptionError
from .backup.jobs import executors
from .backup.schedule.wiring import start_for_app
from .backup.service import recover_after_crash as recover_backup_jobs
from .backup.web.audit import bp as audit_bp
from .backup.web.backups import bp as backup_bp
from .backup.web.openapi import bp as openapi_bp
from .backup.web.restores import bp as restore_bp
from .backup.web.schedule import bp as schedule_bp
from .cli import register_account_commands
from .extensions import csrf, db, login_manager, migrate
from .main.routes import bp as main_bp
from .seed.command import register_seed_command
from .version import __version__


def create_app(overrides: dict | None = None) -> Flask:
    """Build the app: configuration, extensions, blueprints, errors, commands, scheduler.

    ``overrides`` replaces settings read from the environment (tests pass their own).
    A configuration value that cannot be parsed raises ``ConfigError``.
    """
    app = Flask(__name__, instance_relative_config=True)
    configure_logging(app)
    configure(app, overrides)
    trust_proxies(app)
    register_extensions(app)
    register_blueprints(app)
    register_request_hooks(app)
    register_errorhandlers(app)
    register_commands(app)
    register_restore_hooks(app)
    recover_after_crash(app)
    start_scheduler(app)
    return app


def configure_logging(app: Flask) -> None:
    """Give the app's loggers (``app`` and every ``app.*`` module) Flask's handler on stderr, so a warning from
    a command, a worker or a server is one formatted line there, not Python's bare last-resort output."""
    app.logger  # noqa: B018 -- first access installs flask.logging.default_handler unless one is configured


def configure(app: Flask, overrides: dict | None) -> None:
    """Settings from the environment, then ``overrides``; checked as a whole, the SQLite file made private."""
    app.config.from_mapping(load_config())
    if overrides:
        app.config.from_mapping(overrides)
    check_settings(app.config)
    check_encryption(app)
    create_private_sqlite_file(app.config["SQLALCHEMY_DATABASE_URI"], Path(app.instance_path))


def check_encryption(app: Flask) -> None:
    """Stop start-up (``ConfigError`` naming the variable) unless ``BACKUP_ENCRYPTION_KEY``, if set, encrypts here."""
    key = app.config.get("BACKUP_ENCRYPTION_KEY")
    if key is None:
        return
    try:
        self_test(parse_passphrase("BACKUP_ENCRYPTION_KEY", key))
    except EncryptionError as exc:
        raise ConfigError(f"BACKUP_ENCRYPTION_KEY is set but cannot be used: {exc}") from exc


def trust_proxies(app: Flask) -> None:
    """Behind ``TRUSTED_PROXIES`` reverse proxies, take the client's address and scheme from them.

    Never the host: links are built from ``PUBLIC_URL``, and a forged X-Forwarded-Host must change nothing.
    """
    hops = app.config.get("TRUSTED_PROXIES", 0)
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)


def register_extensions(app: Flask) -> None:
    db.init_app(app)
    migrate.init_app(app, db, directory=str(_migrations_dir()))
    login_manager.init_app(app)
    csrf.init_app(app)
    extensions.mail.init_app(app)
    executors.install(app)
    security.init_login_manager(login_manager)


def register_blueprints(app: Flask) -> None:
    app.register_blueprint(main_bp)
    app.register_blueprint(auth_bp, url_prefix="/auth")
    app.register_blueprint(admin_bp, url_prefix="/admin")
    for backup_blueprint in (backup_bp, restore_bp, schedule_bp, audit_bp, openapi_bp):
        app.register_blueprint(backup_blueprint, url_prefix="/admin")


def register_request_hooks(app: Flask) -> None:
    app.request_class = request_limits.BoundedRequest
    # In this order: who is asking (a token's scope checked), how large a body that asker
    # may send, and only then CSRF, which reads the form.
    app.before_request(security.authenticate_bearer)
    app.before_request(request_limits.limit_request_body)
    app.before_request(security.check_csrf)
    app.after_request(security.add_security_headers)


def register_errorhandlers(app: Flask) -> None:
    errors.register(app)


def register_commands(app: Flask) -> None:
    register_account_commands(app)
    restore_cli.register(backup_cli)
    schedule_cli.register(backup_cli)
    rekey_cli.register(backup_cli)
    app.cli.add_command(backup_cli)
    register_seed_command(app)


def register_restore_hooks(app: Flask) -> None:
    """Give the backup's restore engine the app's policy for its own rows (API tokens, audit entries)."""
    restore_hooks.register(app)


def recover_after_crash(app: Flask) -> None:
    """Fail jobs left running by a dead process and remove unfinished archive files.

    Quietly does nothing while the database is not migrated yet (e.g. during ``flask db upgrade``).
    """
    recover_backup_jobs(app)


def start_scheduler(app: Flask) -> None:
    """Start the in-process backup scheduler unless tests, the CLI or config turn it off."""
    start_for_app(app)


def _migrations_dir():
    return Path(__file__).resolve().parent.parent / "migrations"


__all__ = ["create_app", "ConfigError", "__version__"]
