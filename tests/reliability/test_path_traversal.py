"""Path traversal on every endpoint that takes a backup's name: nothing outside the listed backups is touched.

Beside the store sit sentinel files: signed archives the app would restore if it
ever opened them (their rows carry a marker), and a plain text file. Inside the
store sit traps: symlinks to the sentinels and to /etc/passwd, a symlinked
directory, a hidden file and an archive the app never recorded. Each name of the
corpus (encoded, double-encoded, backslashes, absolute, NUL, unicode dots, ``..``
segments, the traps) goes to download, delete, pin, verify and restore (dry run
and real), in the URL path or the ``filename`` field. Every answer must be a 404
or 400, no answer may carry a sentinel's content, no file may be deleted or
changed, and the database and the backup list must stay as they were.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import quote

import pytest

from app.backup.archive import format
from app.backup.provenance import schema_revision
from app.backup.service import BackupService
from support.archives import build_archive, sample_tables, snapshot
from support.reliability import record
from support.restoring import create_backup

pytestmark = pytest.mark.reliability

MARKER = "SENTINEL-7f3a9c-outside-the-store"
OUTSIDE_NAME = "cyberquest_backup_20250101_000000.zip"
LINK_NAME = "cyberquest_backup_20250102_000000.zip"
PASSWD_LINK_NAME = "cyberquest_backup_20250103_000000.zip"
UNLISTED_NAME = "cyberquest_backup_20250104_000000.zip"


def marked_tables() -> dict:
    tables = sample_tables()
    tables["contact_submissions"][0]["message"] = MARKER
    return tables


def corpus(listed: str, outside: Path) -> list[tuple[str, str, str | None]]:
    """(label, the name the app is to receive, the URL path segment when it differs from ``quote(name)``)."""
    up = f"../outside/{OUTSIDE_NAME}"
    return [
        ("dot-dot", up, None),
        ("dot-dot raw in the URL", up, up),
        ("deep dot-dot", "../../../../../../etc/passwd", None),
        ("absolute path of a file outside", str(outside / OUTSIDE_NAME), None),
        ("absolute /etc/passwd", "/etc/passwd", None),
        ("double slash", "//etc/passwd", None),
        ("encoded dot-dot", up.replace(".", "%2e").replace("/", "%2f"), up.replace(".", "%2e").replace("/", "%2f")),
        ("double-encoded dot-dot", up.replace(".", "%252e").replace("/", "%252f"),
         up.replace(".", "%252e").replace("/", "%252f")),
        ("overlong UTF-8 dots", f"%c0%ae%c0%ae%c0%afoutside%c0%af{OUTSIDE_NAME}",
         f"%c0%ae%c0%ae%c0%afoutside%c0%af{OUTSIDE_NAME}"),
        ("backslashes", up.replace("/", "\\"), None),
        ("encoded backslashes", up.replace("/", "%5c"), up.replace("/", "%5c")),
        ("NUL after the listed name", listed + "\x00", None),
        ("NUL before an extension", listed + "\x00.txt", None),
        ("NUL then dot-dot", "\x00" + up, None),
        ("unicode two-dot leader", f"\u2025/outside/{OUTSIDE_NAME}", None),
        ("unicode one-dot leaders", f"\u2024\u2024/outside/{OUTSIDE_NAME}", None),
        ("fullwidth dots and solidus", f"\uff0e\uff0e\uff0foutside\uff0f{OUTSIDE_NAME}", None),
        ("dot-dot-slash doubled", f"....//....//outside//{OUTSIDE_NAME}", None),
        ("dot-dot semicolon", f"..;/outside/{OUTSIDE_NAME}", None),
        ("dot segment before the listed name", "./" + listed, None),
        ("detour back to the listed name", "outside/../" + listed, None),
        ("trailing slash", listed + "/", None),
        ("trailing dot segment", listed + "/.", None),
        ("the store itself", ".", None),
        ("the store's parent", "..", None),
        ("tilde", f"~/{OUTSIDE_NAME}", None),
        ("file URL", f"file://{outside / OUTSIDE_NAME}", None),
        ("UNC path", "\\\\127.0.0.1\\share\\" + OUTSIDE_NAME, None),
        ("drive letter", "C:\\Windows\\win.ini", None),
        ("symlink in the store to an archive outside", LINK_NAME, None),
        ("symlink in the store to /etc/passwd", PASSWD_LINK_NAME, None),
        ("through a symlinked directory", f"linked/{OUTSIDE_NAME}", None),
        ("hidden file in the store", ".hidden-" + OUTSIDE_NAME, None),
        ("archive in the store the app never recorded", UNLISTED_NAME, None),
        ("text file outside by its name", "../outside/sentinel.txt", None),
        ("a very long name", "a/" * 2000 + OUTSIDE_NAME, None),
    ]


def endpoints(client, headers):
    """(label, send(name, url_part)) for each endpoint that takes a backup's name.

    Werkzeug answers a path with ``//`` by a 308 to the path with one slash: the
    redirect is followed, so the answer judged is the one a client ends up with.
    """
    def restore(name, dry_run):
        data = {"filename": name, "mode": "replace", "confirm": "replace", "wait": "1", "trust_unsigned": "1"}
        if dry_run:
            data["dry_run"] = "1"
        return client.post("/admin/restore-backup", data=data, headers=headers)

    return [
        ("download", lambda name, part: client.get(f"/admin/download-backup/{part}", headers=headers,
                                                   follow_redirects=True)),
        ("delete", lambda name, part: client.post(f"/admin/delete-backup/{part}", headers=headers,
                                                  follow_redirects=True)),
        ("pin", lambda name, part: client.post(f"/admin/pin-backup/{part}", headers=headers,
                                               follow_redirects=True)),
        ("verify", lambda name, part: client.post(f"/admin/verify-backup/{part}", data={"wait": "1"},
                                                  headers=headers, follow_redirects=True)),
        ("restore dry run", lambda name, part: restore(name, True)),
        ("restore", lambda name, part: restore(name, False)),
    ]


def files_state(*roots: Path) -> dict[str, tuple]:
    """Every file under ``roots`` (symlinks as their target): content hash, size, mtime."""
    state = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_symlink():
                state[str(path)] = ("link", os.readlink(path))
            elif path.is_file():
                st = path.stat()
                state[str(path)] = (hashlib.sha256(path.read_bytes()).hexdigest(), st.st_size, st.st_mtime_ns)
    return state


def test_no_name_of_the_corpus_reaches_a_file_outside_the_listed_backups(app, admin_user, api_headers, tmp_path):
    store = Path(app.config["BACKUP_DIRECTORY"])
    outside = tmp_path / "outside"
    outside.mkdir()
    with app.app_context():
        key, revision = format.signing_key(app.config), schema_revision(app)
    build_archive(outside / OUTSIDE_NAME, marked_tables(), key=key, schema_revision=revision)
    # Signed with this instance's key, a file in the store is one of its backups (listed); unsigned, it is not.
    for where in (store / UNLISTED_NAME, store / (".hidden-" + OUTSIDE_NAME)):
        build_archive(where, marked_tables(), key=None, schema_revision=revision)
    (outside / "sentinel.txt").write_text(MARKER)
    listed = create_backup(app)
    (store / LINK_NAME).symlink_to(outside / OUTSIDE_NAME)
    (store / PASSWD_LINK_NAME).symlink_to("/etc/passwd")
    (store / "linked").symlink_to(outside, target_is_directory=True)
    secrets = [MARKER.encode(), (outside / OUTSIDE_NAME).read_bytes()[:64], b"root:x:0:0"]

    def listing():
        with app.app_context():
            return BackupService().list()

    client = app.test_client()
    before = files_state(store, outside), snapshot(app), listing()
    variants = corpus(listed, outside)
    failures, cases = [], 0
    for label, name, part in variants:
        for endpoint, send in endpoints(client, api_headers):
            cases += 1
            response = send(name, part if part is not None else quote(name, safe="/"))
            body = response.get_data()
            response.close()
            if response.status_code not in (400, 404):
                failures.append(f"{endpoint} of {label!r}: {response.status_code} {body[:200]!r}")
            elif not (response.is_json and response.get_json().get("error")):
                failures.append(f"{endpoint} of {label!r}: {response.status_code} without a JSON error")
            leaked = [secret for secret in secrets if secret in body]
            if leaked:
                failures.append(f"{endpoint} of {label!r}: the answer carries {leaked[0][:20]!r}")
    after = files_state(store, outside), snapshot(app), listing()
    for what, old, new in zip(("the files", "the database", "the backup list"), before, after):
        if old != new:
            failures.append(f"{what} changed")
    record("path-traversal", cases=cases, losses=len(failures),
           measured=f"{len(variants)} names × 6 endpoints (download, delete, pin, verify, restore dry run and "
                    f"real, by URL path or filename field): {len(failures)} answered other than 400/404, leaked a "
                    "sentinel or changed a file, the database or the list")
    assert not failures, "\n".join(failures)
    assert len(variants) >= 25
