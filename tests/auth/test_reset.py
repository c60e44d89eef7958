"""Forgot and reset password through a real SMTP server: single use, expiring, no enumeration."""
import re
from datetime import timedelta

from app.auth.credentials import GENERIC_LOGIN_ERROR
from app.auth.service import MAX_LINK_MAILS_PER_HOUR
from app.extensions import db
from app.models import PasswordResetToken
from support.app import USER_PASSWORD
from support.mail import link_in
from support.web import csrf_token_from, flashes, login

RESET_LINK = re.compile(r"http://localhost/auth/reset-password/([0-9a-f]{64})")
NEW_PASSWORD = "brand-new-password-2"




def forgot(client, address):
    page = client.get("/auth/forgot-password")
    return client.post("/auth/forgot-password", data={
        "email": address, "csrf_token": csrf_token_from(page.get_data(as_text=True))})


def reset_link(envelope) -> str:
    return link_in(envelope, RESET_LINK)


def choose_password(client, link, password=NEW_PASSWORD, confirm=None):
    page = client.get(link)
    assert page.status_code == 200, page.get_data(as_text=True)
    return client.post(link, data={"password": password, "confirm": password if confirm is None else confirm,
                                   "csrf_token": csrf_token_from(page.get_data(as_text=True))})


def test_forgot_then_reset_changes_the_password(app, client, plain_user, mailbox):
    response = forgot(client, "Alice@Example.com")
    assert response.status_code == 302 and response.headers["Location"] == "/auth/login"
    assert len(mailbox) == 1 and mailbox[0].rcpt_tos == ["alice@example.com"]
    assert "Subject: Reset your CyberQuest password" in mailbox[0].content.decode()
    link = reset_link(mailbox[0])

    changed = choose_password(client, link)
    assert changed.status_code == 302 and changed.headers["Location"] == "/auth/login"
    assert "Your password has been changed" in flashes(client.get("/auth/login"))[0]

    assert flashes(login(client, "alice", USER_PASSWORD)) == [GENERIC_LOGIN_ERROR]
    assert login(client, "alice", NEW_PASSWORD).status_code == 302
    with app.app_context():
        row = db.session.execute(db.select(PasswordResetToken)).scalar_one()
        assert row.is_active is False and row.used_at is not None
        assert row.expires_at - row.created_at == timedelta(hours=1)


def test_reset_logs_out_sessions_that_used_the_old_password(app, plain_user, mailbox):
    elsewhere = app.test_client()
    assert login(elsewhere, "alice", USER_PASSWORD).status_code == 302
    assert "Log out" in elsewhere.get("/").get_data(as_text=True)

    client = app.test_client()
    forgot(client, "alice@example.com")
    choose_password(client, reset_link(mailbox[0]))
    assert "Log out" not in elsewhere.get("/").get_data(as_text=True)


def test_a_reset_link_works_once(client, plain_user, mailbox):
    forgot(client, "alice@example.com")
    link = reset_link(mailbox[0])
    assert choose_password(client, link).status_code == 302

    again = client.get(link)
    assert again.status_code == 400
    page = again.get_data(as_text=True)
    assert "already been used" in page and 'href="/auth/forgot-password"' in page
    # posting to it directly changes nothing either
    reuse = client.post(link, data={"password": "attacker-password", "confirm": "attacker-password",
                                    "csrf_token": csrf_token_from(client.get("/auth/login").get_data(as_text=True))})
    assert reuse.status_code == 400
    assert login(client, "alice", NEW_PASSWORD).status_code == 302


def test_using_one_link_cancels_the_others(client, plain_user, mailbox):
    forgot(client, "alice@example.com")
    forgot(client, "alice@example.com")
    first, second = reset_link(mailbox[0]), reset_link(mailbox[1])
    assert choose_password(client, second).status_code == 302
    stale = client.get(first)
    assert stale.status_code == 400 and "no longer works" in stale.get_data(as_text=True)


def test_expired_link_gets_a_clear_page_and_changes_nothing(app, client, plain_user, mailbox):
    forgot(client, "alice@example.com")
    link = reset_link(mailbox[0])
    with app.app_context():
        row = db.session.execute(db.select(PasswordResetToken)).scalar_one()
        row.expires_at = row.created_at - timedelta(seconds=1)
        db.session.commit()

    expired = client.get(link)
    assert expired.status_code == 400
    page = expired.get_data(as_text=True)
    assert "expired" in page and 'href="/auth/forgot-password"' in page
    posted = client.post(link, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD,
                                     "csrf_token": csrf_token_from(client.get("/auth/login").get_data(as_text=True))})
    assert posted.status_code == 400
    assert login(client, "alice", USER_PASSWORD).status_code == 302


def test_unknown_or_garbage_link_gets_a_clear_page(client):
    for token in ["0" * 64, "not-a-token", "f" * 3000]:
        response = client.get(f"/auth/reset-password/{token}")
        assert response.status_code == 400
        assert "not valid" in response.get_data(as_text=True)


def test_unknown_email_gets_the_same_answer_and_no_mail(client, plain_user, mailbox):
    known = forgot(client, "alice@example.com")
    known_flash = flashes(client.get("/auth/login"))
    assert len(mailbox) == 1

    unknown = forgot(client, "nobody@example.com")
    unknown_flash = flashes(client.get("/auth/login"))
    assert (unknown.status_code, unknown.headers["Location"]) == (known.status_code, known.headers["Location"])
    assert unknown_flash == known_flash
    assert len(mailbox) == 1


def test_mismatched_or_short_new_password_is_a_form_error_and_keeps_the_link(client, plain_user, mailbox):
    forgot(client, "alice@example.com")
    link = reset_link(mailbox[0])
    mismatch = choose_password(client, link, confirm="something-else")
    assert mismatch.status_code == 200 and "The passwords do not match." in mismatch.get_data(as_text=True)
    short = choose_password(client, link, password="short")
    assert short.status_code == 200 and "between 8 and 1024 characters" in short.get_data(as_text=True)
    assert choose_password(client, link).status_code == 302


def test_malformed_email_is_a_form_error(client, mailbox):
    response = forgot(client, "not-an-email")
    assert response.status_code == 200
    assert "Enter a valid e-mail address." in response.get_data(as_text=True)
    assert forgot(client, "a" * 10_000 + "@example.com").status_code == 200
    assert mailbox == []


def test_reset_mails_to_one_address_are_capped_per_hour(client, plain_user, mailbox):
    for _ in range(MAX_LINK_MAILS_PER_HOUR + 2):
        assert forgot(client, "alice@example.com").status_code == 302
    assert len(mailbox) == MAX_LINK_MAILS_PER_HOUR
