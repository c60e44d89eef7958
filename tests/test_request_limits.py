"""No anonymous request can exhaust memory: bodies over 1 MiB get 413 before they are read, chunked
or not, on any URL; only an admin's upload to /admin/restore-backup may be larger."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.backup.archive import format
from app.backup.service import schema_revision
from app.cli import create_account
from app.extensions import db
from app.security import issue_api_token
from support.app import ADMIN_PASSWORD, USER_PASSWORD, build_app
from support.web import csrf_token_from, flashes
from support.archives import build_archive, generated_tables
from support.live_server import HttpClient, post_chunked, post_declaring, serving
from support.restoring import multipart

MiB = 1024 * 1024
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def live_app(tmp_path):
    """A migrated app served over real sockets, with an admin, an admin token and an ordinary user."""
    app = build_app(tmp_path, SERVER_NAME=None)
    with app.app_context():
        admin = create_account("admin", "admin@example.com", ADMIN_PASSWORD, is_admin=True)
        create_account("alice", "alice@example.com", USER_PASSWORD, is_admin=False)
        app.admin_token = issue_api_token(admin)
        app.read_token = issue_api_token(admin, "dashboard", scopes=["read"])
    yield app
    with app.app_context():
        db.engine.dispose()


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("path", ["/", "/auth/login", "/contact", "/admin/restore-backup", "/no/such/page"])
def test_an_anonymous_body_over_1_mib_is_refused_unread_declared_or_chunked(live_app, path):
    with serving(live_app) as port:
        # Nothing of the announced body is sent: the answer can only come from a server that did not wait for it.
        assert post_declaring(port, path, 5 * MiB, FORM) == 413
        status, sent = post_chunked(port, path, 5 * MiB, FORM)
        assert status == 413, sent


def test_a_body_of_1_mib_or_less_is_read_as_usual(live_app):
    with serving(live_app) as port:
        status, _ = post_chunked(port, "/auth/login", MiB - 100_000, FORM)
        assert status == 400  # read in full, then refused for its missing CSRF token


def test_json_bodies_are_bounded_the_same_way(live_app):
    json_body = {"Content-Type": "application/json", **bearer(live_app.admin_token)}
    with serving(live_app) as port:
        assert post_declaring(port, "/admin/create-backup", 2 * MiB, json_body) == 413
        status, _ = post_chunked(port, "/admin/create-backup", 2 * MiB, json_body, piece=b" " * 65536)
        assert status == 413
    client = live_app.test_client()
    response = client.post("/admin/create-backup", headers=bearer(live_app.admin_token),
                           data=b'{"wait": 1, "pad": "' + b"x" * (2 * MiB) + b'"}', content_type="application/json")
    assert response.status_code == 413 and "1.0 MiB" in response.get_json()["error"]


def big_archive(app, path: Path) -> bytes:
    with app.app_context():
        key, revision = format.signing_key(app.config), schema_revision(app)
    data = build_archive(path, generated_tables(users=1000, attempts=45_000), key=key,
                         schema_revision=revision).read_bytes()
    assert len(data) > 1.2 * MiB
    return data


PREVIEW = {"mode": "merge", "confirm": "merge", "dry_run": "1", "wait": "1"}


def test_an_admin_upload_over_1_mib_to_restore_still_works(live_app, tmp_path):
    archive = big_archive(live_app, tmp_path / "big.zip")
    body, headers = multipart(PREVIEW, archive)
    with serving(live_app) as port:
        answer = HttpClient(port).request("POST", "/admin/restore-backup", body,
                                          {**headers, **bearer(live_app.admin_token)})
        assert answer.status == 200, answer.text
        assert '"preview"' in answer.text and '"inserted":45000' in answer.text.replace(" ", "")
        # the same upload streamed without a length
        status, sent = post_chunked(port, "/admin/restore-backup", 0, {**headers, **bearer(live_app.admin_token)},
                                    body=body)
        assert status == 200 and sent >= len(body)


def test_an_admin_session_upload_over_1_mib_passes_the_csrf_check_and_restores(live_app, tmp_path):
    archive = big_archive(live_app, tmp_path / "big.zip")
    client = live_app.test_client()
    page = client.get("/auth/login")
    client.post("/auth/login", data={"username": "admin", "password": ADMIN_PASSWORD,
                                     "csrf_token": csrf_token_from(page.get_data(as_text=True))})
    token = csrf_token_from(client.get("/admin/system-backup").get_data(as_text=True))
    body, headers = multipart({**PREVIEW, "password": ADMIN_PASSWORD, "csrf_token": token}, archive)
    response = client.post("/admin/restore-backup", data=body, headers=headers)
    assert response.status_code == 302, response.get_data(as_text=True)
    assert flashes(client.get(response.headers["Location"]))[0].startswith("Preview (merge)")


def test_a_non_admin_upload_over_1_mib_to_restore_is_refused_unread(live_app):
    with serving(live_app) as port:
        user = HttpClient(port)
        token = user.csrf_token()
        assert user.form_post("/auth/login", {"username": "alice", "password": USER_PASSWORD,
                                              "csrf_token": token}).status == 302
        upload = {"Content-Type": "multipart/form-data; boundary=cq-boundary"}
        session = {"Cookie": "; ".join(f"{k}={v}" for k, v in user.cookies.items()), **upload}
        for who in (session, upload):  # a signed-in user, then nobody
            assert post_declaring(port, "/admin/restore-backup", 5 * MiB, who) == 413
            assert post_chunked(port, "/admin/restore-backup", 5 * MiB, who)[0] == 413
        # an admin's token without the admin scope is refused before its body is looked at
        assert post_declaring(port, "/admin/restore-backup", 5 * MiB, {**bearer(live_app.read_token), **upload}) == 403


def test_an_admin_upload_over_max_backup_size_is_refused_unread(live_app):
    live_app.config["MAX_BACKUP_SIZE"] = 2 * MiB
    with serving(live_app) as port:
        assert post_declaring(port, "/admin/restore-backup", 4 * MiB, bearer(live_app.admin_token)) == 413
        upload = {"Content-Type": "multipart/form-data; boundary=cq-boundary", **bearer(live_app.admin_token)}
        status, _ = post_chunked(port, "/admin/restore-backup", 4 * MiB, upload)
        assert status == 413


def test_a_form_with_more_parts_than_the_forms_need_is_refused(live_app):
    fields = {f"field{n}": "x" for n in range(60)}
    body, headers = multipart(fields, b"")
    response = live_app.test_client().post("/contact", data=body, headers=headers)
    assert response.status_code == 413


# --- The server's memory under a flood --------------------------------------------------------------

SERVER = """
import sys
from pathlib import Path
from werkzeug.serving import make_server
from support.app import build_app
app = build_app(Path(sys.argv[1]), SERVER_NAME=None)
server = make_server("127.0.0.1", 0, app, threaded=True)
print(server.server_port, flush=True)
server.serve_forever()
"""


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.slow
def test_300_mb_of_chunked_anonymous_posts_leave_the_servers_memory_flat(tmp_path):
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MAIL_", "BACKUP_", "SECRET_KEY"))}
    environ["PYTHONPATH"] = str(Path(REPO) / "tests")  # the server program imports the support package
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(tmp_path)], cwd=REPO, env=environ, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        port = int(server.stdout.readline())
        for _ in range(3):  # warm up every code path a refused post takes
            assert post_chunked(port, "/", 2 * MiB, FORM)[0] == 413
        before = peak_rss_kib(server.pid)
        started, total, rounds = time.monotonic(), 0, 0
        while total < 300 * MiB:
            status, sent = post_chunked(port, "/", 300 * MiB - total, FORM)
            assert status == 413
            total, rounds = total + sent, rounds + 1
        growth_mib = (peak_rss_kib(server.pid) - before) / 1024
        assert growth_mib < 40, f"peak RSS grew {growth_mib:.0f} MiB over {total / MiB:.0f} MiB in {rounds} posts"
        assert time.monotonic() - started < 120
    finally:
        server.terminate()
        server.wait(timeout=30)
        server.stdout.close()
