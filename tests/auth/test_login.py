"""Logging in: by username or e-mail, every attempt recorded, lock-out per account and per IP.

One request at a time, in process. tests/reliability/test_brute_force.py fires guesses in parallel at
two gunicorn instances on one database (the lock-out across processes, IPv6 /64s), and
tests/reliability/test_login_timing.py times known against unknown accounts.
"""

from app.auth.credentials import GENERIC_LOGIN_ERROR
from app.extensions import db
from app.models import LoginAttempt
from app.cli import create_account
from support.app import USER_PASSWORD, build_app
from support.web import csrf_token_from, flashes, login



def attempts(app) -> list[LoginAttempt]:
    with app.app_context():
        rows = db.session.execute(db.select(LoginAttempt).order_by(LoginAttempt.id)).scalars().all()
        db.session.expunge_all()
        return rows


def logout(client):
    token = csrf_token_from(client.get("/").get_data(as_text=True))
    client.post("/auth/logout", data={"csrf_token": token})


def from_ip(client, ip):
    client.environ_base["REMOTE_ADDR"] = ip
    return client


def test_login_by_username_and_by_email(client, plain_user):
    response = login(client, "alice", USER_PASSWORD)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    home = client.get("/").get_data(as_text=True)
    assert "alice" in home and "Log out" in home

    logout(client)
    assert "Log out" not in client.get("/").get_data(as_text=True)
    response = login(client, "Alice@Example.com", USER_PASSWORD)
    assert response.status_code == 302
    assert "Log out" in client.get("/").get_data(as_text=True)


def test_every_attempt_is_recorded_with_ip_user_agent_and_outcome(app, client, plain_user):
    client.environ_base.update(REMOTE_ADDR="203.0.113.7", HTTP_USER_AGENT="QuestBrowser/2.0")
    assert login(client, "alice", "wrong-password").status_code == 200
    assert login(client, "nobody", "whatever-1").status_code == 200
    assert login(client, "alice@example.com", USER_PASSWORD).status_code == 302

    rows = attempts(app)
    assert [(r.username_or_email, r.success) for r in rows] == [
        ("alice", False), ("nobody", False), ("alice@example.com", True)]
    assert {r.ip_address for r in rows} == {"203.0.113.7"}
    assert {r.user_agent for r in rows} == {"QuestBrowser/2.0"}
    assert all(r.attempted_at is not None for r in rows)


def test_wrong_password_and_unknown_user_get_the_same_generic_message(client, plain_user):
    wrong = login(client, "alice", "wrong-password")
    unknown = login(client, "nobody-here", "wrong-password")
    assert wrong.status_code == unknown.status_code == 200
    assert flashes(wrong) == flashes(unknown) == [GENERIC_LOGIN_ERROR]


def test_account_locks_after_five_failures_even_for_the_right_password(app, client, plain_user):
    for _ in range(5):
        assert flashes(login(client, "alice", "wrong-password")) == [GENERIC_LOGIN_ERROR]

    locked = login(client, "alice", USER_PASSWORD)
    assert locked.status_code == 200
    assert flashes(locked) == [GENERIC_LOGIN_ERROR]
    # typing the account's e-mail instead of its username gives no way round the lock
    assert flashes(login(client, "ALICE@example.com", USER_PASSWORD)) == [GENERIC_LOGIN_ERROR]
    assert "Log out" not in client.get("/").get_data(as_text=True)

    # other accounts from the same browser are not affected
    with app.app_context():
        from app.cli import create_account

        create_account("bob", "bob@example.com", "bob-password-1", is_admin=False)
    assert login(client, "bob", "bob-password-1").status_code == 302


def test_lock_out_ends_after_the_lockout_window(app, client, plain_user):
    for _ in range(5):
        login(client, "alice", "wrong-password")
    assert login(client, "alice", USER_PASSWORD).status_code == 200

    from datetime import timedelta

    with app.app_context():
        for row in db.session.execute(db.select(LoginAttempt)).scalars():
            row.attempted_at = row.attempted_at - timedelta(minutes=app.config["LOGIN_LOCKOUT_MINUTES"] + 1)
        db.session.commit()
    assert login(client, "alice", USER_PASSWORD).status_code == 302


def test_ip_locks_after_twenty_failures_across_accounts(app, plain_user):
    attacker = from_ip(app.test_client(), "198.51.100.9")
    for n in range(20):
        assert login(attacker, f"guess{n}", "wrong-password").status_code == 200

    refused = login(attacker, "alice", USER_PASSWORD)
    assert refused.status_code == 200
    assert flashes(refused) == [GENERIC_LOGIN_ERROR]

    # alice herself, from her own address, still gets in
    alice = from_ip(app.test_client(), "192.0.2.44")
    assert login(alice, "alice", USER_PASSWORD).status_code == 302


def behind_proxy(app, client_ip):
    """A client whose requests reach the app through one reverse proxy at 10.0.0.1."""
    client = from_ip(app.test_client(), "10.0.0.1")
    client.environ_base["HTTP_X_FORWARDED_FOR"] = client_ip
    return client


def test_behind_a_trusted_proxy_each_client_is_locked_out_by_its_own_address(tmp_path):
    app = build_app(tmp_path, TRUSTED_PROXIES=1)
    try:
        with app.app_context():
            create_account("alice", "alice@example.com", USER_PASSWORD, is_admin=False)
        attacker = behind_proxy(app, "198.51.100.9")
        for n in range(20):
            login(attacker, f"guess{n}", "wrong-password")
        assert flashes(login(attacker, "alice", USER_PASSWORD)) == [GENERIC_LOGIN_ERROR]

        assert login(behind_proxy(app, "192.0.2.44"), "alice", USER_PASSWORD).status_code == 302
        assert {a.ip_address for a in attempts(app)} == {"198.51.100.9", "192.0.2.44"}
    finally:
        with app.app_context():
            db.engine.dispose()


def test_without_trusted_proxies_a_forwarded_address_is_not_believed(app, plain_user):
    attacker = behind_proxy(app, "198.51.100.9")
    for n in range(20):
        login(attacker, f"guess{n}", "wrong-password")
    # Everyone behind the proxy shares its address, so the lock-out reaches alice too:
    # the reason to set TRUSTED_PROXIES behind one.
    assert flashes(login(behind_proxy(app, "192.0.2.44"), "alice", USER_PASSWORD)) == [GENERIC_LOGIN_ERROR]
    assert {a.ip_address for a in attempts(app)} == {"10.0.0.1"}


def test_oversized_username_is_a_form_error_not_a_500(app, client, plain_user):
    page = client.get("/auth/login")
    response = client.post("/auth/login", data={
        "username": "x" * 10_000, "password": "whatever-1",
        "csrf_token": csrf_token_from(page.get_data(as_text=True))})
    assert response.status_code == 200
    assert "cannot be longer than 255 characters" in response.get_data(as_text=True)
    assert attempts(app) == []


def test_login_page_links_to_register_and_forgot_password(client):
    page = client.get("/auth/login").get_data(as_text=True)
    assert 'href="/auth/register"' in page
    assert 'href="/auth/forgot-password"' in page
    assert client.get("/auth/register").status_code == 200
    assert client.get("/auth/forgot-password").status_code == 200
