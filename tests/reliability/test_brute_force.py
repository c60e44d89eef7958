"""Login brute force across two processes: however the guesses are spread, no more than the cap get checked.

Two gunicorn instances (2 workers × 4 threads each, so 16 requests run at once)
serve one database: a SQLite file, or a throwaway PostgreSQL database. With
``TRUSTED_PROXIES=1`` each guess names its own client address in
X-Forwarded-For, as the proxy in front of them would.

- One account: N wrong passwords for alice are fired at once from N addresses,
  alternating between the instances. The answers all look alike (that is the
  point), so what the server did with each is read from its log: every guess the
  lock-out refuses is logged as ``refused: too many recent failures``, every other
  one had its password checked. No more than ``LOGIN_MAX_FAILURES_PER_ACCOUNT``
  may be checked. Then alice's right password, sent to each instance, must be
  refused, and ``login_attempts`` must hold every attempt (from both instances),
  none a success.
- One network: M guesses at unknown accounts from M addresses of one IPv6 /64,
  spread the same way; no more than ``LOGIN_MAX_FAILURES_PER_IP`` checked. Bob's
  right password from another address of that /64 is refused; from the next /64
  it logs him in. Addresses are stored written out in full.

tests/auth/test_login.py checks the lock-out's rules one request at a time, in process.
"""
from __future__ import annotations

import re
import threading

import pytest
from sqlalchemy import select

from app.auth.credentials import GENERIC_LOGIN_ERROR
from app.cli import create_account
from app.extensions import db
from app.models import LoginAttempt
from support.app import USER_PASSWORD, build_app
from support.live_server import HttpClient
from support.processes import flask_environment
from support.reliability import count, record
from support.served import Gunicorn

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

BOB_PASSWORD = "bob-password-1"
REFUSED = re.compile(r"login as '([^']*)' from (\S+) refused: too many recent failures")


@pytest.fixture(params=["sqlite", "postgresql"])
def deployment(request, tmp_path):
    """(database label, the app on the shared database, instance a, instance b), alice and bob created."""
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    app = build_app(tmp_path, url)
    with app.app_context():
        create_account("alice", "alice@example.com", USER_PASSWORD, is_admin=False)
        create_account("bob", "bob@example.com", BOB_PASSWORD, is_admin=False)
    # Production's argon2 (gunicorn reads no ARGON2_FAST): each check takes long enough for guesses to overlap.
    env = {**flask_environment(app), "TRUSTED_PROXIES": "1", "GUNICORN_CMD_ARGS": "--threads 4"}
    instances = []
    try:
        for _ in range(2):
            instances.append(Gunicorn(env, workers=2).start())
        yield request.param, app, *instances
    finally:
        for instance in instances:
            instance.stop()
        with app.app_context():
            db.engine.dispose()


def fire(instances, token: str, cookies: dict, guesses: list[tuple[str, str, str]]) -> list[int]:
    """POST every (username, password, client address) login at once, alternating instances; the statuses."""
    start = threading.Barrier(len(guesses))
    statuses: list[int] = [0] * len(guesses)

    def guess(n, username, password, address):
        instance = instances[n % 2]
        client = HttpClient(instance.port, dict(cookies))
        start.wait()
        statuses[n] = client.form_post("/auth/login", {"username": username, "password": password,
                                                       "csrf_token": token},
                                       {"X-Forwarded-For": address, "User-Agent": f"guesser/{n % 2}"}).status

    threads = [threading.Thread(target=guess, args=(n, *g)) for n, g in enumerate(guesses)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return statuses


def login_from(instance, token, cookies, username, password, address) -> int:
    """One login from ``address``: 302 when it logged in, 200 when it showed the generic error (else fails)."""
    answer = HttpClient(instance.port, dict(cookies)).form_post(
        "/auth/login", {"username": username, "password": password, "csrf_token": token},
        {"X-Forwarded-For": address})
    assert answer.status == 302 or (answer.status == 200 and GENERIC_LOGIN_ERROR in answer.text), answer
    return answer.status


def test_parallel_guesses_over_two_instances_never_pass_the_lock_out(deployment):
    database, app, a, b = deployment
    account_cap = app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]
    network_cap = app.config["LOGIN_MAX_FAILURES_PER_IP"]
    guesses_at_account = count(ci=24, full=100)
    guesses_at_network = count(ci=2 * network_cap, full=100)
    browser = HttpClient(a.port)
    token = browser.csrf_token()  # the session is signed with the shared secret: both instances accept it
    cookies = browser.cookies

    account_guesses = [("alice", f"guess-{n}", f"198.51.{100 + n // 250}.{n % 250 + 1}")
                       for n in range(guesses_at_account)]
    assert fire((a, b), token, cookies, account_guesses) == [200] * guesses_at_account
    right_at_a = login_from(a, token, cookies, "alice", USER_PASSWORD, "192.0.2.10")
    right_at_b = login_from(b, token, cookies, "alice@example.com", USER_PASSWORD, "192.0.2.11")

    network_guesses = [(f"nobody-{n}", f"guess-{n}", f"2001:db8:1:2:{n:x}::1") for n in range(guesses_at_network)]
    assert fire((a, b), token, cookies, network_guesses) == [200] * guesses_at_network
    neighbour = login_from(b, token, cookies, "bob", BOB_PASSWORD, "2001:db8:1:2:ffff:ffff:ffff:ffff")
    next_network = login_from(a, token, cookies, "bob", BOB_PASSWORD, "2001:db8:1:3::1")

    refusals = REFUSED.findall(a.stop() + b.stop())
    account_checked = guesses_at_account - sum(1 for name, ip in refusals if ip.startswith("198.51."))
    network_checked = guesses_at_network - sum(1 for name, _ in refusals if name.startswith("nobody-"))
    locked_logins = (right_at_a != 200) + (right_at_b != 200) + (neighbour != 200)
    losses = max(0, account_checked - account_cap) + max(0, network_checked - network_cap) + locked_logins
    record("brute-force", cases=guesses_at_account + guesses_at_network, losses=losses,
           measured=f"{database}: {account_checked} of {guesses_at_account} parallel guesses at one account "
                    f"checked (cap {account_cap}), {network_checked} of {guesses_at_network} from one /64 "
                    f"(cap {network_cap}), over 2 instances × 2 workers × 4 threads; "
                    f"{locked_logins} logins while locked")

    assert account_checked <= account_cap, f"{account_checked} guesses at alice were checked; the cap is {account_cap}"
    assert network_checked <= network_cap, f"{network_checked} guesses from one /64 were checked; the cap is {network_cap}"
    assert (right_at_a, right_at_b) == (200, 200), "alice's right password got in while she was locked out"
    assert neighbour == 200, "bob got in from a /64 that is locked out"
    assert next_network == 302, "the next /64 was locked out too"
    with app.app_context():
        rows = db.session.execute(select(LoginAttempt).order_by(LoginAttempt.id)).scalars().all()
        alice = [r for r in rows if r.username_or_email.startswith("alice")]
        assert len(alice) == guesses_at_account + 2 and not any(r.success for r in alice)
        assert {r.user_agent for r in alice if r.user_agent} == {"guesser/0", "guesser/1"}  # both instances
        from_network = [r for r in rows if r.username_or_email.startswith("nobody-")]
        assert len(from_network) == guesses_at_network and not any(r.success for r in from_network)
        assert all(r.ip_address.startswith("2001:0db8:0001:0002:") for r in from_network)
        assert [r.ip_address for r in rows[-2:]] == ["2001:0db8:0001:0002:ffff:ffff:ffff:ffff",
                                                     "2001:0db8:0001:0003:0000:0000:0000:0001"]
        assert [r.success for r in rows[-2:]] == [False, True]
