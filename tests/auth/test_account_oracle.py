"""No account oracle: unknown accounts cost the same argon2 check, reset and verification requests
answer alike for any address, parallel guesses never pass the lock-out, IPv6 is locked by its /64."""
from __future__ import annotations

import logging
import statistics
import threading
import time

import pytest

from app.cli import create_account
from app.extensions import db
from app.mail import wait_for_background_mail
from app.models import LoginAttempt, User
from app.security import hash_password
from support.app import USER_PASSWORD, build_app
from support.web import csrf_token_from, flashes, login
from support.live_server import HttpClient, serving

TRIES = 30
PARALLEL_GUESSES = 16
LOCKED_OUT = "refused: too many recent failures"


def median_seconds(samples: list[float]) -> float:
    return statistics.median(samples)


def timed(call, clock=time.perf_counter) -> float:
    started = clock()
    call()
    return clock() - started


def test_an_unknown_account_costs_the_same_argon2_check_as_a_wrong_password(tmp_path):
    app = build_app(tmp_path, ARGON2_FAST=False)  # production's argon2 parameters, whose cost would show
    try:
        with app.app_context():
            create_account("alice", "alice@example.com", USER_PASSWORD, is_admin=False)
        client = app.test_client()
        login(client, "warm-up", "wrong-password")  # the dummy hash is made once, on first need
        known, unknown = [], []
        for n in range(5):
            known.append(timed(lambda: login(client, "alice", f"wrong-password-{n}")))
            unknown.append(timed(lambda: login(client, f"nobody-{n}", f"wrong-password-{n}")))
        ratio = median_seconds(unknown) / median_seconds(known)
        assert 0.6 < ratio < 1.6, (known, unknown)
    finally:
        with app.app_context():
            db.engine.dispose()


@pytest.mark.parametrize("path, inactive", [("/auth/forgot-password", False), ("/auth/resend-verification", True)])
def test_link_requests_answer_as_fast_for_known_as_for_unknown_addresses(app, client, mailbox, path, inactive):
    with app.app_context():
        db.session.add_all([User(username=f"user{n}", email=f"user{n}@example.com", is_active=not inactive,
                                 password_hash=hash_password(USER_PASSWORD)) for n in range(TRIES)])
        db.session.commit()
    token = csrf_token_from(client.get(path).get_data(as_text=True))

    def ask(address):
        response = client.post(path, data={"email": address, "csrf_token": token})
        assert response.status_code == 302

    known, unknown = [], []
    for n in range(TRIES):
        pair = [(f"user{n}@example.com", known), (f"stranger{n}@example.com", unknown)]
        # Alternating which goes first spreads the noise of the test's own SMTP server evenly.
        for address, samples in pair if n % 2 else reversed(pair):
            wait_for_background_mail()  # whatever the last request queued is done before the next is timed
            # The test client answers on this thread: its CPU time is the request's own work, free of
            # the noise other processes on a shared machine add to the wall clock.
            samples.append(timed(lambda: ask(address), clock=time.thread_time))
    assert len(mailbox) == TRIES  # every known address got its mail, no stranger did
    slower, faster = sorted([median_seconds(known), median_seconds(unknown)], reverse=True)
    assert slower / faster < 1.2, (median_seconds(known), median_seconds(unknown))


@pytest.fixture(params=["sqlite", "postgresql"])
def lockout_app(request, tmp_path):
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    app = build_app(tmp_path, url, SERVER_NAME=None)
    with app.app_context():
        create_account("alice", "alice@example.com", USER_PASSWORD, is_admin=False)
    yield app
    with app.app_context():
        db.engine.dispose()


def test_parallel_wrong_guesses_never_get_more_than_the_cap_checked(lockout_app, caplog):
    caplog.set_level(logging.WARNING, logger=lockout_app.logger.name)
    cap = lockout_app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"]
    with serving(lockout_app) as port:
        browser = HttpClient(port)
        token = browser.csrf_token()
        start = threading.Barrier(PARALLEL_GUESSES)
        statuses = []

        def guess(n):
            attacker = HttpClient(port, dict(browser.cookies))
            start.wait()
            answer = attacker.form_post("/auth/login", {"username": "alice", "password": f"guess-{n}",
                                                        "csrf_token": token})
            statuses.append(answer.status)

        threads = [threading.Thread(target=guess, args=(n,)) for n in range(PARALLEL_GUESSES)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert statuses == [200] * PARALLEL_GUESSES
        # the right password now finds the account locked
        refused = browser.form_post("/auth/login", {"username": "alice", "password": USER_PASSWORD,
                                                    "csrf_token": token})
        assert refused.status == 200
    refusals = [r for r in caplog.records if LOCKED_OUT in r.getMessage()]
    checked = PARALLEL_GUESSES - (len(refusals) - 1)  # the last refusal is the right password's
    assert checked <= cap, f"{checked} of {PARALLEL_GUESSES} parallel guesses were checked; the cap is {cap}"
    with lockout_app.app_context():
        outcomes = db.session.execute(db.select(LoginAttempt.success)).scalars().all()
    assert outcomes == [False] * (PARALLEL_GUESSES + 1)


def from_ip(app, address):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_ipv6_clients_are_locked_out_by_their_64(app, plain_user):
    cap = app.config["LOGIN_MAX_FAILURES_PER_IP"]
    for n in range(cap):
        attacker = from_ip(app, f"2001:db8:1:2:{n:x}::1")  # a new address for each guess, one /64
        assert flashes(login(attacker, f"guess{n}", "wrong-password")) != []
    neighbour = from_ip(app, "2001:db8:1:2:ffff:ffff:ffff:ffff")
    assert login(neighbour, "alice", USER_PASSWORD).status_code == 200  # same /64: locked out
    elsewhere = from_ip(app, "2001:db8:1:3::1")
    assert login(elsewhere, "alice", USER_PASSWORD).status_code == 302  # the next /64 is not
    with app.app_context():
        stored = db.session.execute(db.select(LoginAttempt.ip_address).order_by(LoginAttempt.id)).scalars().all()
    assert stored[0] == "2001:0db8:0001:0002:0000:0000:0000:0001"
    assert stored[-1] == "2001:0db8:0001:0003:0000:0000:0000:0001"
