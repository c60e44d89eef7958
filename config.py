"""Configuration read from the environment.

Every variable of the public contract is parsed and validated here; a value that
cannot be parsed raises ``ConfigError`` naming the variable, which stops start-up.
"""
from __future__ import annotations

import os
import re
import secrets
import socket
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = BASE_DIR / "instance"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:5000"
MIN_KEY_BYTES = 32

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


def private_directory(path: Path) -> Path:
    """``path`` as a directory, created 0700 (with its missing parents) when it does not exist yet."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def instance_secret_key(directory: Path = INSTANCE_DIR) -> str:
    """A secret generated once per instance and kept in ``<directory>/secret_key`` (0600).

    The file appears whole or not at all (written to a temporary file, then linked into
    place), so workers starting together all read the one secret that won.
    """
    path = private_directory(directory) / "secret_key"
    if not path.exists():
        fd, temporary = tempfile.mkstemp(prefix=".secret_key.", dir=directory)  # mkstemp creates it 0600
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
                fh.flush()
                os.fsync(fh.fileno())
            os.link(temporary, path)
        except FileExistsError:
            pass  # another worker linked its secret first: that one is the instance's
        finally:
            os.unlink(temporary)
    return path.read_text().strip()


def create_private_sqlite_file(database_url: str, relative_to: Path) -> None:
    """Create an SQLite database file 0600 (its directory 0700) before SQLite would create it world-readable.

    A relative file name is taken under ``relative_to`` (Flask-SQLAlchemy's instance folder).
    Other databases, in-memory ones and files that exist already are left alone.
    """
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:" \
            or url.database.startswith("file:"):
        return
    path = Path(url.database)
    if not path.is_absolute():
        path = relative_to / path
    private_directory(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def check_settings(settings) -> None:
    """Refuse keys too short to be secret and a ``PUBLIC_URL`` that is not an http(s) origin.

    Run on the final settings (environment and overrides), it also derives what follows
    from ``PUBLIC_URL``: over https, the session and remember-me cookies are ``Secure``.
    Raises ``ConfigError`` naming the variable.
    """
    for name in ("SECRET_KEY", "BACKUP_SIGNING_KEY"):
        value = settings.get(name)
        if name == "SECRET_KEY" or value:
            if len(str(value or "").encode()) < MIN_KEY_BYTES:
                raise ConfigError(f"{name} must be at least {MIN_KEY_BYTES} bytes long; "
                                  "generate one with: python -c 'import secrets; print(secrets.token_hex(32))'")
    public_url = parse_public_url(settings.get("PUBLIC_URL") or DEFAULT_PUBLIC_URL)
    settings["PUBLIC_URL"] = public_url
    secure = public_url.startswith("https://")
    settings["SESSION_COOKIE_SECURE"] = secure
    settings["REMEMBER_COOKIE_SECURE"] = secure


def parse_public_url(raw: str) -> str:
    """An ``http(s)://host[:port][/path]`` address without a trailing slash, query or fragment."""
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"PUBLIC_URL={raw!r} must be an http:// or https:// address such as "
                          "https://backup.example.com (no query or fragment).")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


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
        "SECRET_KEY": get("SECRET_KEY") or instance_secret_key(),
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
        # Seconds an S3 request may wait for the store before it fails (each of its three attempts).
        "BACKUP_S3_TIMEOUT": parse_int("BACKUP_S3_TIMEOUT", get("BACKUP_S3_TIMEOUT", "60"), 1, 3600),
        # Downloads from S3 answer 302 to a presigned URL valid this many seconds, instead of
        # streaming through the app (authorisation and the audit entry still come first).
        "BACKUP_S3_PRESIGNED_DOWNLOADS": parse_bool("BACKUP_S3_PRESIGNED_DOWNLOADS",
                                                    get("BACKUP_S3_PRESIGNED_DOWNLOADS", "false")),
        "BACKUP_S3_PRESIGNED_EXPIRY": parse_int("BACKUP_S3_PRESIGNED_EXPIRY",
                                                get("BACKUP_S3_PRESIGNED_EXPIRY", "300"), 1, 604800),
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
        # How much nicer (Linux niceness, added to the process's own) a background job's threads
        # run, so that pages keep the CPU while a backup, restore or verification uses it.
        "BACKUP_JOB_NICE": parse_int("BACKUP_JOB_NICE", get("BACKUP_JOB_NICE", "10"), 0, 19),
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
        # Where users reach the app: every link in an e-mail starts with it, never with the
        # request's Host or X-Forwarded-Host (a poisoned reset link would hand over the account).
        "PUBLIC_URL": parse_public_url(get("PUBLIC_URL", DEFAULT_PUBLIC_URL)),
        # Host names this app answers to (Flask answers 400 to any other Host header); links do not use it.
        "TRUSTED_HOSTS": [h.strip() for h in get("TRUSTED_HOSTS", "").split(",") if h.strip()] or None,
        # Reverse proxies in front of the app. Their X-Forwarded-For/-Proto headers are believed
        # only when set (X-Forwarded-Host never is): otherwise every client shares the proxy's
        # address (and its per-IP login lock-out), and without a proxy a client could forge its address.
        "TRUSTED_PROXIES": parse_int("TRUSTED_PROXIES", get("TRUSTED_PROXIES", "0"), 0, 10),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        # CSRF is checked in our own before_request so Bearer-token requests can skip it.
        "WTF_CSRF_CHECK_DEFAULT": False,
        "WTF_CSRF_TIME_LIMIT": None,
        # Every request body larger than this is refused (413) before it is parsed, chunked
        # bodies included; only an admin's upload to /admin/restore-backup may be larger.
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        "MAX_FORM_MEMORY_SIZE": 1024 * 1024,
        # The largest form (the schedule) has about fifteen fields.
        "MAX_FORM_PARTS": 50,
        "LOGIN_MAX_FAILURES_PER_ACCOUNT": 5,
        "LOGIN_MAX_FAILURES_PER_IP": 20,
        "LOGIN_LOCKOUT_MINUTES": 15,
        "SCHEDULER_ENABLED": True,
    }
