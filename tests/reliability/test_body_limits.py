"""No request body can exhaust a real server's memory, whoever sends it, however it is framed.

The app runs under ``gunicorn -w 1`` (a separate process, as in production); every
probe goes to it over a raw socket, so 100 MB bodies stream without being held by
the client. Before each probe the worker's peak resident memory (VmHWM) is reset
through ``/proc/<worker>/clear_refs``; after its answer, the growth of that peak over
the resident memory at the reset is the probe's cost, and must stay under 40 MB.

Probes, each as an anonymous visitor, a signed-in user (session cookie) and an admin
(API token): chunked and declared (10 GiB) form bodies to five URLs (a page, the login
form, an admin action, the contact form, an unknown URL); multipart with one huge field
and with more parts than ``MAX_FORM_PARTS``; a multipart file to a page and to
``/admin/restore-backup``; JSON to the three JSON endpoints; JSON and urlencoded bodies
under 1 MiB built to cost the most to parse; a ``Content-Length`` that declares 100
bytes while 100 MB follow, and one beside a chunked body. Every body over 1 MiB must
get 413 having been taken in no further than the limit (less than half the bytes offered
went out), except an admin's upload to /admin/restore-backup, which may be read up to
``MAX_BACKUP_SIZE`` (set to half the probe size): one under it is read and refused as
no backup (422), one over it gets 413. No probe may change the database or the list of
backups, or take the worker down. `make test` streams 32 MiB per probe, `make
reliability` 100 MiB.

tests/test_request_limits.py checks the messages and that allowed bodies still work.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.archives import snapshot
from support.live_server import HttpClient, post_chunked
from support.processes import flask_environment
from support.reliability import FULL, record
from support.restoring import backup_names
from support.served import Gunicorn

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

MiB = 1 << 20
SIZE = (100 if FULL else 32) * MiB  # what each streamed probe offers to send
MAX_BACKUP_SIZE = SIZE // 2
LIMIT = MiB  # MAX_CONTENT_LENGTH
MAX_FORM_PARTS = 50
RSS_BOUND = 40 * 1000 * 1000  # the target: 40 MB per request
BOUNDARY = "cq-probe-boundary"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json", "Accept": "application/json"}
ANSWERED = tuple(status for status in range(200, 500) if status != 413)


def part(name: str, value: bytes = b"", filename: str | None = None) -> bytes:
    """One multipart part (with its opening boundary) of field ``name``."""
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    kind = "\r\nContent-Type: application/zip" if filename else ""
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}{kind}\r\n\r\n".encode() + value + b"\r\n"


END = f"--{BOUNDARY}--\r\n".encode()
RESTORE_FIELDS = part("mode", b"merge") + part("confirm", b"merge") + part("wait", b"1")


def opened(name: str, filename: str | None = None) -> bytes:
    """A part left open: the filler that follows is its value."""
    return part(name, filename=filename)[:-2]


FILE_HEAD = RESTORE_FIELDS + opened("backup_file", "x.zip")


@dataclass
class Probe:
    """One request: a ``head`` and SIZE bytes of filler, chunked (or under the length ``declare`` says),
    or a ``whole`` body under its true length; the statuses it may get."""

    what: str
    path: str
    headers: dict
    head: bytes = b""
    declare: int | None = None
    whole: bytes | None = None
    expect: tuple[int, ...] = (413,)


def probes(caller: str) -> list[Probe]:
    """What each caller sends; an admin's upload to /admin/restore-backup is allowed up to MAX_BACKUP_SIZE."""
    admin = caller == "admin"
    listing = [probe for path in ("/", "/auth/login", "/admin/create-backup", "/contact", "/no/such/page")
               for probe in (Probe(f"chunked form to {path}", path, FORM),
                             Probe(f"form declaring 10 GiB to {path}", path, FORM, declare=10 << 30))]
    listing += [
        Probe("multipart, one huge field", "/contact", MULTIPART, head=part("name") + opened("message")),
        Probe(f"multipart, {MAX_FORM_PARTS + 1} small fields", "/contact", MULTIPART,
              whole=b"".join(part(f"f{n}", b"x") for n in range(MAX_FORM_PARTS + 1)) + END),
        Probe("urlencoded, 1 MiB of distinct fields", "/auth/login", FORM,
              whole=b"&".join(b"%d=" % n for n in range(200_000))[:LIMIT - 10]),
        Probe("multipart file to a page", "/", MULTIPART, head=FILE_HEAD),
        Probe("multipart file to an admin action", "/admin/create-backup", MULTIPART, head=FILE_HEAD),
        Probe("multipart file to restore-backup", "/admin/restore-backup", MULTIPART, head=FILE_HEAD),
        Probe("declares 10 GiB to restore-backup", "/admin/restore-backup", MULTIPART, head=FILE_HEAD,
              declare=10 << 30),
        # 100 bytes is a body like any other: it is read and answered (how depends on the caller), never with 413.
        Probe("declares 100 bytes, sends the rest", "/auth/login", FORM, declare=100, expect=ANSWERED),
        # Both framings at once (how requests are smuggled past a proxy): refused, by gunicorn or the app.
        Probe("chunked and declaring 100 bytes", "/auth/login", {**FORM, "Content-Length": "100"},
              expect=(400, 413)),
    ]
    listing += [Probe(f"chunked JSON to {path}", path, JSON, head=b'{"wait": "1", "pad": "')
                for path in ("/admin/create-backup", "/admin/restore-backup", "/admin/backup-schedule")]
    # Under the limit: only an admin's JSON reaches the parser (the others are refused as not logged in, not
    # allowed or without a CSRF token); a body it cannot use is a 400, never a 500.
    parsed = (400,) if admin else (400, 401, 403)
    listing += [
        Probe("JSON of 1 MiB of nested arrays", "/admin/create-backup", JSON, whole=b"[" * (LIMIT - 10),
              expect=parsed),
        Probe("JSON of 1 MiB of empty objects", "/admin/backup-schedule", JSON,
              whole=b"[" + b"{}," * (LIMIT // 3 - 2) + b"{}]", expect=parsed),
    ]
    if admin:
        upload = RESTORE_FIELDS + part("backup_file", b"\0" * (MAX_BACKUP_SIZE - MiB), "big.zip") + END
        listing += [
            Probe("an upload under MAX_BACKUP_SIZE, not a backup", "/admin/restore-backup", MULTIPART,
                  whole=upload, expect=(422,)),
            Probe("an upload with a huge text field", "/admin/restore-backup", MULTIPART,
                  head=RESTORE_FIELDS + opened("tables")),
            Probe(f"an upload with {MAX_FORM_PARTS + 1} parts", "/admin/restore-backup", MULTIPART,
                  whole=b"".join(part(f"f{n}", b"x") for n in range(MAX_FORM_PARTS)) + part(
                      "backup_file", b"PK", "x.zip") + END),
        ]
    return listing


def status_field(pid: int, name: str) -> int:
    """A memory figure of /proc/<pid>/status, in bytes."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{name}:\s+(\d+) kB", text, re.M).group(1)) * 1024


def the_worker(server: Gunicorn) -> int:
    """The pid of the one worker under gunicorn's master."""
    master = server.process.pid
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def send(port: int, probe: Probe, headers: dict) -> tuple[int, int]:
    """Send ``probe`` with ``headers``; returns the status and the body bytes that went out."""
    if probe.whole is None:
        return post_chunked(port, probe.path, SIZE, headers, head=probe.head, content_length=probe.declare)
    return post_chunked(port, probe.path, 0, headers, body=probe.whole, content_length=len(probe.whole))


@pytest.fixture
def app_settings():
    return {"SERVER_NAME": None}  # served over real sockets


@pytest.fixture
def served(app, admin_token, plain_user):
    """The app under ``gunicorn -w 1`` with MAX_BACKUP_SIZE at half the probe size, and each caller's headers."""
    server = Gunicorn({**flask_environment(app), "MAX_BACKUP_SIZE": str(MAX_BACKUP_SIZE)}, workers=1).start()
    try:
        user = HttpClient(server.port)
        signed_in = user.form_post("/auth/login", {"username": plain_user["username"],
                                                   "password": plain_user["password"], "csrf_token": user.csrf_token()})
        assert signed_in.status == 302, signed_in.text
        callers = {"anonymous": {},
                   "user": {"Cookie": "; ".join(f"{k}={v}" for k, v in user.cookies.items())},
                   "admin": {"Authorization": f"Bearer {admin_token}"}}
        yield app, server, callers
    finally:
        server.stop()


def test_every_body_over_1_mib_is_refused_unread_with_the_servers_memory_bounded(served):
    app, server, callers = served
    worker = the_worker(server)
    for _ in range(2):  # the first refusals compile the error page and warm the code paths
        post_chunked(server.port, "/", 2 * MiB, FORM)
    before = snapshot(app), backup_names(app)
    failures, lost, figures, worst, changed = [], set(), [], (0, ""), 0
    taken = {"limit": 0, "allowance": 0}  # the most that went out before a 413: at 1 MiB, at an admin's allowance
    for caller, headers in callers.items():
        for probe in probes(caller):
            name = f"{caller}: {probe.what}"

            def lose(why: str):
                failures.append(f"{name}: {why}")
                lost.add(name)

            Path(f"/proc/{worker}/clear_refs").write_text("5")
            start = status_field(worker, "VmRSS")
            try:
                status, sent = send(server.port, probe, {**probe.headers, **headers})
            except OSError as exc:
                lose(f"no answer ({exc!r})")
                continue
            growth = status_field(worker, "VmHWM") - start
            worst = max(worst, (growth, name))
            figures.append(f"{name}: {status}, +{max(growth, 0) / MiB:.1f} MiB")
            if status not in probe.expect:
                lose(f"{status}, expected {probe.expect}")
            if growth > RSS_BOUND:
                lose(f"the worker's peak memory grew {growth / MiB:.1f} MiB, over 40 MB")
            if probe.whole is None and status == 413:
                allowed = caller == "admin" and probe.path == "/admin/restore-backup" and probe.headers is MULTIPART
                kind = "allowance" if allowed else "limit"
                taken[kind] = max(taken[kind], sent)
                # What went out beyond the limit sat in the sockets' buffers (a few MiB).
                if sent >= (SIZE if allowed else MAX_BACKUP_SIZE):
                    lose(f"{sent / MiB:.0f} MiB were taken in before the 413")
            if (snapshot(app), backup_names(app)) != before:
                changed += 1
                lose("the database or the backup list changed")
                before = snapshot(app), backup_names(app)
    if the_worker(server) != worker:
        failures.append("the worker died and was replaced")
        lost.add("the worker")
    per_caller = ", ".join(f"{sum(f.startswith(c + ':') for f in figures)} {c}" for c in callers)
    record("body-limits", cases=len(figures), losses=len(lost),
           measured=f"{len(figures)} probes ({per_caller}; chunked and declared forms, multipart fields, files, JSON, "
                    f"lying lengths) against gunicorn -w 1, streamed bodies of {SIZE // MiB} MiB; worst peak RSS "
                    f"growth of the worker {worst[0] / MiB:.1f} MiB ({worst[1]}), bound 40 MB; {len(lost)} probes "
                    f"lost; refusals at 1 MiB came after at most {taken['limit'] / MiB:.1f} MiB had gone out, "
                    f"the admin's over MAX_BACKUP_SIZE ({MAX_BACKUP_SIZE // MiB} MiB) after "
                    f"{taken['allowance'] / MiB:.1f} MiB; {changed} changed the database or the backup list")
    print("\n".join(figures))
    assert not failures, "\n".join(failures + figures)
