"""Configuration read from the environment.

Every variable of the public contract is parsed and validated here; a value that
cannot be parsed raises ``ConfigError`` naming the variable, which stops start-up.
"""
from __future__ import annotations

import os
import re
import secrets
import socket
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = BASE_DIR / "instance"

_SIZE_UNITS = {"": 1, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4,
               "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(ValueError):
    """A configuration variable holds a value that cannot be used."""


def parse_size(name: str, raw: str) -> int:
    """Parse ``512``, ``500MB``, ``2GB`` or ``512MiB`` into bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", raw)
    unit = match.group(2).upper() if match else None
    if not match or unit not in _SIZE_UNITS:
        raise ConfigError(f"{name}={raw!r} is not a size: use bytes or a value like 500MB or 2GB.")
    value = int(float(match.group(1)) * _SIZE_UNITS[unit])
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be larger than zero.")
    return value


def parse_flag(raw) -> bool:
    """The one reading of a flag, for configuration and requests alike.

    1/true/yes/on or 0/false/no/off in any case with spaces around (a number is
    read as its text); a bool is itself. Raises ``ValueError`` for anything else,
    the empty text included: a caller that takes an empty or absent value as false
    says so itself.
    """
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{raw!r} is not a flag")


def parse_bool(name: str, raw: str) -> bool:
    """``parse_flag`` for a configuration variable: ``ConfigError`` naming it."""
    try:
        return parse_flag(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a flag: use true or false.") from None


def parse_int(name: str, raw: str, minimum: int = 0, maximum: int | None = None) -> int:
    """Parse a bounded integer."""
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number.") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ConfigError(f"{name}={raw!r} must be {bound}.")
    return value


def parse_ratio(name: str, raw: str) -> float:
    """Parse a ratio such as ``100`` (meaning 100:1), larger than 1."""
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number.") from None
    if not value > 1 or value == float("inf"):
        raise ConfigError(f"{name}={raw!r} must be a number larger than 1 (100 means 100:1).")
    return value


PASSPHRASE_MIN_LENGTH = 16


def parse_passphrase(name: str, raw: str) -> str:
    """A backup passphrase: at least 16 characters, UTF-8 encodable, no control characters or outer spaces.

    Control characters (a stray newline from a secrets file, say) and leading or
    trailing spaces would make the passphrase hard to type into ``7z x -p…`` right
    when the app is gone.
    """
    if len(raw) < PASSPHRASE_MIN_LENGTH:
        raise ConfigError(f"{name} must be at least {PASSPHRASE_MIN_LENGTH} characters long (it has {len(raw)}); "
                          "choose a long passphrase, e.g. five random words.")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{name} is not valid text (it holds bytes that are not UTF-8).") from None
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in raw):
        raise ConfigError(f"{name} holds a control character (a newline or tab?); use printable characters only.")
    if raw != raw.strip():
        raise ConfigError(f"{name} begins or ends with a space; remove it (spaces inside are fine).")
    return raw


def parse_passphrases(name: str, raw: str) -> tuple[str, ...]:
    """Passphrases separated by commas (and optional spaces), each as ``parse_passphrase`` requires."""
    return tuple(parse_passphrase(name, part.strip()) for part in raw.split(",") if part.strip())


def _instance_secret_key() -> str:
    """A secret generated once per instance and kept in ``instance/secret_key``."""
    INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
    path = INSTANCE_DIR / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip()


def load_config(environ: os._Environ | dict | None = None) -> dict:
    """Build the application's settings from ``environ`` (default: the process environment)."""
    env = os.environ if environ is None else environ

    def get(name, default=None):
        value = env.get(name)
        return default if value is None or value == "" else value

    storage = get("BACKUP_STORAGE", "local").lower()
    if storage not in ("local", "s3"):
        raise ConfigError(f"BACKUP_STORAGE={storage!r} must be 'local' or 's3'.")
    if storage == "s3" and not get("BACKUP_S3_BUCKET"):
        raise ConfigError("BACKUP_S3_BUCKET must be set when BACKUP_STORAGE=s3.")
    mail_port = parse_int("MAIL_PORT", get("MAIL_PORT", "25"), 1, 65535)
    executor = get("BACKUP_JOB_EXECUTOR", "thread").lower()
    if executor not in ("thread", "celery"):
        raise ConfigError(f"BACKUP_JOB_EXECUTOR={executor!r} must be 'thread' or 'celery'.")
    broker = get("CELERY_BROKER_URL")
    if executor == "celery" and not broker:
        raise ConfigError("CELERY_BROKER_URL must be set when BACKUP_JOB_EXECUTOR=celery "
                          "(for example redis://127.0.0.1:6379/0).")
    if broker and "://" not in broker:
        raise ConfigError(f"CELERY_BROKER_URL={broker!r} is not a broker URL (for example redis://127.0.0.1:6379/0).")
    database_url = get("DATABASE_URL", f"sqlite:///{INSTANCE_DIR / 'cyberquest.db'}")
    if "://" not in database_url:
        raise ConfigError(f"DATABASE_URL={database_url!r} is not an SQLAlchemy URL.")

    return {
        "SECRET_KEY": get("SECRET_KEY") or _instance_secret_key(),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "BACKUP_DIRECTORY": str(Path(get("BACKUP_DIRECTORY", str(BASE_DIR / "backups"))).resolve()),
        "MAX_BACKUP_SIZE": parse_size("MAX_BACKUP_SIZE", get("MAX_BACKUP_SIZE", "512MiB")),
        # Zip-bomb caps while an archive is read (None: 16 × MAX_BACKUP_SIZE, and 100:1).
        "BACKUP_MAX_DECOMPRESSED_SIZE": parse_size("BACKUP_MAX_DECOMPRESSED_SIZE", raw_decompressed)
        if (raw_decompressed := get("BACKUP_MAX_DECOMPRESSED_SIZE")) else None,
        "BACKUP_MAX_COMPRESSION_RATIO": parse_ratio("BACKUP_MAX_COMPRESSION_RATIO", raw_ratio)
        if (raw_ratio := get("BACKUP_MAX_COMPRESSION_RATIO")) else None,
        # Where uploaded archives wait while they are checked and restored (None: the system's temp dir).
        "BACKUP_UPLOAD_DIRECTORY": str(Path(raw_uploads).resolve())
        if (raw_uploads := get("BACKUP_UPLOAD_DIRECTORY")) else None,
        "BACKUP_RETENTION_DAYS": parse_int("BACKUP_RETENTION_DAYS", get("BACKUP_RETENTION_DAYS", "30"), 1),
        "BACKUP_KEEP_DAILY": parse_int("BACKUP_KEEP_DAILY", get("BACKUP_KEEP_DAILY", "7")),
        "BACKUP_KEEP_WEEKLY": parse_int("BACKUP_KEEP_WEEKLY", get("BACKUP_KEEP_WEEKLY", "4")),
        "BACKUP_KEEP_MONTHLY": parse_int("BACKUP_KEEP_MONTHLY", get("BACKUP_KEEP_MONTHLY", "12")),
        "ENABLE_AUTO_BACKUP": parse_bool("ENABLE_AUTO_BACKUP", get("ENABLE_AUTO_BACKUP", "true")),
        "BACKUP_STORAGE": storage,
        "BACKUP_S3_BUCKET": get("BACKUP_S3_BUCKET"),
        "BACKUP_S3_PREFIX": get("BACKUP_S3_PREFIX", ""),
        "BACKUP_S3_ENDPOINT_URL": get("BACKUP_S3_ENDPOINT_URL"),
        "BACKUP_SIGNING_KEY": get("BACKUP_SIGNING_KEY"),
        "BACKUP_ENCRYPTION_KEY": parse_passphrase("BACKUP_ENCRYPTION_KEY", raw_key)
        if (raw_key := get("BACKUP_ENCRYPTION_KEY")) else None,
        "BACKUP_ENCRYPTION_OLD_KEYS": parse_passphrases("BACKUP_ENCRYPTION_OLD_KEYS", raw_old)
        if (raw_old := get("BACKUP_ENCRYPTION_OLD_KEYS")) else (),
        # thread: jobs run in the web process; celery: it queues them to CELERY_BROKER_URL.
        "BACKUP_JOB_EXECUTOR": executor,
        "CELERY_BROKER_URL": broker,
        # A job's heartbeat keeps its lock this many seconds ahead; a holder silent for
        # longer is taken to be dead, whichever host it was on.
        "BACKUP_LOCK_TTL": parse_int("BACKUP_LOCK_TTL", get("BACKUP_LOCK_TTL", "30"), 2, 3600),
        # How long a queued job may wait for a Celery worker before it is failed.
        "BACKUP_JOB_QUEUE_TIMEOUT": parse_int("BACKUP_JOB_QUEUE_TIMEOUT", get("BACKUP_JOB_QUEUE_TIMEOUT", "3600"),
                                              10),
        # Webhook and heartbeat deliveries: seconds per try, and tries (with back-off) before giving up.
        "BACKUP_HOOK_TIMEOUT": parse_int("BACKUP_HOOK_TIMEOUT", get("BACKUP_HOOK_TIMEOUT", "5"), 1, 60),
        "BACKUP_HOOK_ATTEMPTS": parse_int("BACKUP_HOOK_ATTEMPTS", get("BACKUP_HOOK_ATTEMPTS", "3"), 1, 10),
        # The host part of this process's lock owner id (host:pid); set it where hosts share a name.
        "BACKUP_OWNER_HOST": get("BACKUP_OWNER_HOST") or socket.gethostname(),
        "MAIL_SERVER": get("MAIL_SERVER", "localhost"),
        "MAIL_PORT": mail_port,
        "MAIL_USE_TLS": parse_bool("MAIL_USE_TLS", get("MAIL_USE_TLS", "false")),
        "MAIL_USE_SSL": parse_bool("MAIL_USE_SSL", get("MAIL_USE_SSL", "false")),
        "MAIL_USERNAME": get("MAIL_USERNAME"),
        "MAIL_PASSWORD": get("MAIL_PASSWORD"),
        "MAIL_DEFAULT_SENDER": get("MAIL_DEFAULT_SENDER", "cyberquest@localhost"),
        # Host names this app answers to; links in e-mails are built from the request's
        # host, so production should set it to stop reset-link poisoning.
        "TRUSTED_HOSTS": [h.strip() for h in get("TRUSTED_HOSTS", "").split(",") if h.strip()] or None,
        # Reverse proxies in front of the app. Their X-Forwarded-For/-Proto/-Host headers are
        # believed only when set: otherwise every client shares the proxy's address (and its
        # per-IP login lock-out), and without a proxy a client could forge its address.
        "TRUSTED_PROXIES": parse_int("TRUSTED_PROXIES", get("TRUSTED_PROXIES", "0"), 0, 10),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        # CSRF is checked in our own before_request so Bearer-token requests can skip it.
        "WTF_CSRF_CHECK_DEFAULT": False,
        "WTF_CSRF_TIME_LIMIT": None,
        # Uploads larger than this are refused by Werkzeug before they reach a view.
        "MAX_CONTENT_LENGTH": None,
        "MAX_FORM_MEMORY_SIZE": 1024 * 1024,
        "LOGIN_MAX_FAILURES_PER_ACCOUNT": 5,
        "LOGIN_MAX_FAILURES_PER_IP": 20,
        "LOGIN_LOCKOUT_MINUTES": 15,
        "SCHEDULER_ENABLED": True,
    }
