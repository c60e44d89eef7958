"""Configuration from the environment: bad values stop start-up with a message naming the variable."""
import os
import subprocess

import pytest

from config import ConfigError, load_config
from support.processes import FLASK, REPO


def settings(**env):
    # A SECRET_KEY keeps load_config from creating instance/secret_key in the repository.
    return load_config({"SECRET_KEY": "k" * 32, **env})


@pytest.mark.parametrize("name, value", [
    ("MAX_BACKUP_SIZE", "lots"),
    ("MAX_BACKUP_SIZE", "-5MB"),
    ("MAX_BACKUP_SIZE", "0"),
    ("MAX_BACKUP_SIZE", "12 parsecs"),
    ("ENABLE_AUTO_BACKUP", "maybe"),
    ("MAIL_PORT", "x"),
    ("MAIL_PORT", "70000"),
    ("MAIL_USE_TLS", "sometimes"),
    ("BACKUP_RETENTION_DAYS", "forever"),
    ("BACKUP_STORAGE", "ftp"),
    ("DATABASE_URL", "just-a-filename.db"),
    ("BACKUP_MAX_DECOMPRESSED_SIZE", "huge"),
    ("BACKUP_MAX_COMPRESSION_RATIO", "0.5"),
    ("BACKUP_MAX_COMPRESSION_RATIO", "many"),
    ("TRUSTED_PROXIES", "yes"),
    ("TRUSTED_PROXIES", "-1"),
    ("BACKUP_S3_PRESIGNED_DOWNLOADS", "perhaps"),
    ("BACKUP_S3_PRESIGNED_EXPIRY", "soon"),
    ("BACKUP_S3_PRESIGNED_EXPIRY", "0"),
    ("BACKUP_S3_TIMEOUT", "a while"),
])
def test_a_bad_value_raises_config_error_naming_the_variable(name, value):
    with pytest.raises(ConfigError) as error:
        settings(**{name: value})
    assert name in str(error.value)
    assert repr(value) in str(error.value)


def test_s3_storage_needs_a_bucket():
    with pytest.raises(ConfigError, match="BACKUP_S3_BUCKET"):
        settings(BACKUP_STORAGE="s3")
    assert settings(BACKUP_STORAGE="S3", BACKUP_S3_BUCKET="backups")["BACKUP_STORAGE"] == "s3"


@pytest.mark.parametrize("raw, expected", [
    ("500MB", 500 * 1024**2),
    ("2GB", 2 * 1024**3),
    ("2gb", 2 * 1024**3),
    ("512MiB", 512 * 1024**2),
    ("1048576", 1048576),
    (" 750 KB ", 750 * 1024),
])
def test_sizes_parse_from_bytes_or_units(raw, expected):
    assert settings(MAX_BACKUP_SIZE=raw)["MAX_BACKUP_SIZE"] == expected


def test_defaults_follow_the_contract():
    config = settings()
    assert config["MAX_BACKUP_SIZE"] == 512 * 1024**2
    assert config["BACKUP_RETENTION_DAYS"] == 30
    assert config["ENABLE_AUTO_BACKUP"] is True
    assert config["BACKUP_STORAGE"] == "local"
    assert (config["MAIL_SERVER"], config["MAIL_PORT"]) == ("localhost", 25)
    assert config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///")
    assert config["SQLALCHEMY_DATABASE_URI"].endswith("instance/cyberquest.db")
    assert (config["BACKUP_S3_PRESIGNED_DOWNLOADS"], config["BACKUP_S3_PRESIGNED_EXPIRY"]) == (False, 300)
    assert config["BACKUP_S3_TIMEOUT"] == 60
    assert settings(BACKUP_S3_PRESIGNED_DOWNLOADS="true")["BACKUP_S3_PRESIGNED_DOWNLOADS"] is True


@pytest.mark.parametrize("raw, expected", [("false", False), ("0", False), ("off", False),
                                           ("TRUE", True), ("1", True), ("yes", True)])
def test_flags_accept_the_usual_spellings(raw, expected):
    assert settings(ENABLE_AUTO_BACKUP=raw)["ENABLE_AUTO_BACKUP"] is expected


def run_flask_routes(tmp_path, **env):
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MAIL_", "BACKUP_", "MAX_BACKUP"))}
    environ.update(FLASK_APP="wsgi", SECRET_KEY="k" * 32, DATABASE_URL=f"sqlite:///{tmp_path / 'cli.db'}",
                   ENABLE_AUTO_BACKUP="false", BACKUP_DIRECTORY=str(tmp_path / "backups"), **env)
    return subprocess.run([str(FLASK), "routes"], cwd=REPO, env=environ, capture_output=True, text=True,
                          timeout=60)


def test_flask_refuses_to_start_with_a_bad_value_and_says_which(tmp_path):
    result = run_flask_routes(tmp_path, MAX_BACKUP_SIZE="lots")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "MAX_BACKUP_SIZE" in result.stderr
    assert "Traceback" not in output
    assert len(result.stderr.strip().splitlines()) == 1

    # the same command with a good value starts and lists the routes
    good = run_flask_routes(tmp_path, MAX_BACKUP_SIZE="500MB")
    assert good.returncode == 0, good.stderr
    assert "/auth/register" in good.stdout


def test_archive_reading_limits_and_the_upload_directory_come_from_the_environment(tmp_path):
    from app.backup.archive.limits import Limits

    config = settings(MAX_BACKUP_SIZE="10MB", BACKUP_MAX_DECOMPRESSED_SIZE="40MB", BACKUP_MAX_COMPRESSION_RATIO="20",
                      BACKUP_UPLOAD_DIRECTORY=str(tmp_path / "uploads"))
    assert Limits.from_config(config) == Limits(10 * 1024**2, 40 * 1024**2, 20.0)
    assert config["BACKUP_UPLOAD_DIRECTORY"] == str(tmp_path / "uploads")
    defaults = Limits.from_config(settings(MAX_BACKUP_SIZE="10MB"))
    assert (defaults.max_decompressed, defaults.max_ratio) == (160 * 1024**2, 100.0)
    assert settings()["BACKUP_UPLOAD_DIRECTORY"] is None


@pytest.mark.parametrize("name, value, says", [
    ("BACKUP_ENCRYPTION_KEY", "fifteen chars!!", "at least 16 characters"),
    ("BACKUP_ENCRYPTION_KEY", "a long passphrase\n", "control character"),
    ("BACKUP_ENCRYPTION_KEY", " a long passphrase", "space"),
    ("BACKUP_ENCRYPTION_OLD_KEYS", "an old long passphrase, short", "at least 16 characters"),
])
def test_an_unusable_encryption_passphrase_raises_config_error_naming_the_variable(name, value, says):
    env = {"BACKUP_ENCRYPTION_KEY": "the current passphrase", name: value}
    with pytest.raises(ConfigError, match=name) as error:
        settings(**env)
    assert says in str(error.value)


def test_encryption_passphrases_parse():
    assert settings()["BACKUP_ENCRYPTION_KEY"] is None and settings()["BACKUP_ENCRYPTION_OLD_KEYS"] == ()
    config = settings(BACKUP_ENCRYPTION_KEY="correct horse battery staple",
                      BACKUP_ENCRYPTION_OLD_KEYS="the first passphrase, the second passphrase,")
    assert config["BACKUP_ENCRYPTION_KEY"] == "correct horse battery staple"
    assert config["BACKUP_ENCRYPTION_OLD_KEYS"] == ("the first passphrase", "the second passphrase")


def test_a_short_encryption_key_stops_flask_and_says_which(tmp_path):
    result = run_flask_routes(tmp_path, BACKUP_ENCRYPTION_KEY="too short")
    assert result.returncode != 0
    assert "BACKUP_ENCRYPTION_KEY" in result.stderr and "at least 16" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    good = run_flask_routes(tmp_path, BACKUP_ENCRYPTION_KEY="a passphrase long enough")
    assert good.returncode == 0, good.stderr


def test_start_up_stops_when_the_key_cannot_be_used_here(tmp_path, monkeypatch):
    from pyzipper.zipfile_aes import AESZipEncrypter

    from app import create_app
    from support.app import test_settings

    with pytest.raises(ConfigError, match="BACKUP_ENCRYPTION_KEY must be at least 16"):
        create_app(test_settings(tmp_path, BACKUP_ENCRYPTION_KEY="short"))

    def broken(self, data):
        raise OSError("libcrypto is missing")

    monkeypatch.setattr(AESZipEncrypter, "encrypt", broken)
    with pytest.raises(ConfigError, match="BACKUP_ENCRYPTION_KEY is set but cannot be used.*libcrypto is missing"):
        create_app(test_settings(tmp_path, BACKUP_ENCRYPTION_KEY="a passphrase long enough"))


@pytest.mark.parametrize("name, value", [
    ("BACKUP_JOB_EXECUTOR", "processes"),
    ("CELERY_BROKER_URL", "127.0.0.1:6379"),
    ("BACKUP_LOCK_TTL", "1"),
    ("BACKUP_LOCK_TTL", "soon"),
    ("BACKUP_JOB_QUEUE_TIMEOUT", "-3"),
    ("BACKUP_HOOK_TIMEOUT", "0"),
    ("BACKUP_HOOK_ATTEMPTS", "many"),
    ("BACKUP_JOB_NICE", "20"),
    ("BACKUP_JOB_NICE", "-5"),
    ("BACKUP_JOB_NICE", "low"),
])
def test_a_bad_job_setting_raises_config_error_naming_the_variable(name, value):
    with pytest.raises(ConfigError) as error:
        settings(**{name: value})
    assert name in str(error.value) and repr(value) in str(error.value)


def test_jobs_run_in_threads_unless_celery_is_chosen_with_a_broker():
    config = settings()
    assert config["BACKUP_JOB_EXECUTOR"] == "thread" and config["CELERY_BROKER_URL"] is None
    assert (config["BACKUP_LOCK_TTL"], config["BACKUP_JOB_QUEUE_TIMEOUT"], config["BACKUP_JOB_NICE"]) == (30, 3600, 10)
    with pytest.raises(ConfigError, match="CELERY_BROKER_URL must be set when BACKUP_JOB_EXECUTOR=celery"):
        settings(BACKUP_JOB_EXECUTOR="celery")
    chosen = settings(BACKUP_JOB_EXECUTOR="Celery", CELERY_BROKER_URL="redis://127.0.0.1:6379/3")
    assert (chosen["BACKUP_JOB_EXECUTOR"], chosen["CELERY_BROKER_URL"]) == ("celery", "redis://127.0.0.1:6379/3")


def test_flask_refuses_to_start_with_celery_and_no_broker_and_says_which(tmp_path):
    result = run_flask_routes(tmp_path, BACKUP_JOB_EXECUTOR="celery")
    assert result.returncode != 0 and "Traceback" not in result.stdout + result.stderr
    assert "CELERY_BROKER_URL" in result.stderr and len(result.stderr.strip().splitlines()) == 1
