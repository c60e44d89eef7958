"""Known and unknown accounts answer in the same time: login, password reset and verification requests.

Each comparison times TRIES requests of each kind through the real form (CSRF
included) on the in-process Flask test client, alternating known and unknown
(ABAB, which goes first swapped every pair) so whatever else the machine does
falls on both alike, and asks that the medians be within 20 % of each other.

What is timed is CPU time, not the wall clock: the machine running the tests
is shared (two cores, other test runs beside this one), and its wall clock
swings by more than the 20 % being judged, while CPU time counts only the work
the request did.

- Login (unknown username vs a known one with a wrong password, each account
  and address used once, so no lock-out is involved) uses the process's CPU
  time: production's argon2 runs its four lanes on threads of its own, which the
  request thread's clock would miss. Nothing else in the process works meanwhile.
- Reset and verification requests (a known address vs an unknown one) use the
  request thread's CPU time: the user is looked up and the mail sent on the
  mail thread, which is waited for (untimed) before the next request. On the
  wall clock that thread does show a little, its start competing with the answer
  for the GIL: in process, with the test's SMTP server in the process too, known
  addresses measured about 1.1× the unknown ones.

A comparison that misses is measured once more (a burst of noise can hit one
run); the second result stands.
"""
from __future__ import annotations

import statistics
import time

import pytest

from app.extensions import db
from app.mail import wait_for_background_mail
from app.models import User
from app.security import hash_password
from support.app import USER_PASSWORD, build_app
from support.reliability import count, record
from support.web import csrf_token_from, login

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

TRIES = count(ci=10, full=30)
WITHIN = 1.2


def alternating(tries: int, known, unknown, clock, settle=lambda: None) -> tuple[list[float], list[float]]:
    """``tries`` timings of ``known(n)`` and of ``unknown(n)``, ABAB with the order swapped every pair;
    ``settle()`` runs, untimed, before each."""
    timings: tuple[list[float], list[float]] = ([], [])
    for n in range(tries):
        pair = [(known, timings[0]), (unknown, timings[1])]
        for call, samples in pair if n % 2 else reversed(pair):
            settle()
            started = clock()
            call(n)
            samples.append(clock() - started)
    return timings


def compare(measure) -> tuple[float, float, float, int]:
    """Known and unknown medians (ms), their ratio (slower / faster) and how many runs it took (1 or 2)."""
    for run in (1, 2):
        known, unknown = measure(run)
        known_ms, unknown_ms = statistics.median(known) * 1e3, statistics.median(unknown) * 1e3
        ratio = max(known_ms, unknown_ms) / min(known_ms, unknown_ms)
        if ratio < WITHIN:
            break
    return known_ms, unknown_ms, ratio, run


def figures(label: str, known_ms: float, unknown_ms: float, ratio: float, runs: int) -> str:
    retried = ", after one retry" if runs == 2 else ""
    return f"{label}: known {known_ms:.1f} ms vs unknown {unknown_ms:.1f} ms median ({ratio:.2f}{retried})"


def test_login_takes_as_long_for_an_unknown_account_as_for_a_wrong_password(tmp_path):
    app = build_app(tmp_path, ARGON2_FAST=False)  # production's argon2, whose cost would show
    try:
        with app.app_context():
            password_hash = hash_password(USER_PASSWORD)
            db.session.add_all([User(username=f"user{n}", email=f"user{n}@example.com", is_active=True,
                                     password_hash=password_hash) for n in range(2 * TRIES)])
            db.session.commit()
        client = app.test_client()
        login(client, "warm-up", "wrong-password")  # the dummy hash is made once, on first need

        def measure(run):
            def attempt(username, n):
                # A new address for each: no lock-out (per account or per IP) is reached.
                client.environ_base["REMOTE_ADDR"] = f"10.{run}.{n // 250}.{n % 250 + 1}"
                assert login(client, username, f"wrong-password-{n}").status_code == 200
            offset = (run - 1) * TRIES  # each run its own known accounts, each tried once
            return alternating(TRIES, lambda n: attempt(f"user{offset + n}", 2 * n),
                               lambda n: attempt(f"nobody{offset + n}", 2 * n + 1), time.process_time)

        known_ms, unknown_ms, ratio, runs = compare(measure)
    finally:
        with app.app_context():
            db.engine.dispose()
    record("login-timing", cases=TRIES, losses=int(ratio >= WITHIN),
           measured=figures("login", known_ms, unknown_ms, ratio, runs))
    assert ratio < WITHIN, (f"unknown accounts answer in {unknown_ms:.1f} ms, known ones with a wrong password "
                            f"in {known_ms:.1f} ms: the time tells them apart")


@pytest.mark.parametrize("label, path, inactive", [("reset", "/auth/forgot-password", False),
                                                   ("verification", "/auth/resend-verification", True)])
def test_link_requests_take_as_long_for_known_as_for_unknown_addresses(app, client, mailbox, label, path, inactive):
    with app.app_context():
        db.session.add_all([User(username=f"user{n}", email=f"user{n}@example.com", is_active=not inactive,
                                 password_hash=hash_password(USER_PASSWORD)) for n in range(2 * TRIES)])
        db.session.commit()
    token = csrf_token_from(client.get(path).get_data(as_text=True))

    def ask(address):
        response = client.post(path, data={"email": address, "csrf_token": token})
        assert response.status_code == 302

    def measure(run):
        offset = (run - 1) * TRIES  # each run its own known addresses, each asked for once
        return alternating(TRIES, lambda n: ask(f"user{offset + n}@example.com"),
                           lambda n: ask(f"stranger{offset + n}@example.com"), time.thread_time,
                           settle=wait_for_background_mail)  # the last request's mail is out before the next

    known_ms, unknown_ms, ratio, runs = compare(measure)
    assert len(mailbox) == runs * TRIES  # every known address got its mail, no stranger did
    record("login-timing", cases=TRIES, losses=int(ratio >= WITHIN),
           measured=figures(label, known_ms, unknown_ms, ratio, runs))
    assert ratio < WITHIN, (f"{label} requests answer in {known_ms:.2f} ms for known addresses, "
                            f"{unknown_ms:.2f} ms for unknown ones: the time tells them apart")
