"""Registration with e-mail verification, through a real SMTP server."""
import re
from datetime import timedelta

from app.auth.credentials import GENERIC_LOGIN_ERROR
from app.extensions import db
from app.models import EmailVerification, User
from support.mail import link_in
from support.services import free_port
from support.web import csrf_token_from, flashes, login

VERIFY_LINK = re.compile(r"http://localhost/auth/verify-email/([0-9a-f]{64})")




def register(client, username="bob", mail="bob@example.com", password="bob-password-1", confirm=None):
    page = client.get("/auth/register")
    return client.post("/auth/register", data={
        "username": username, "email": mail, "password": password,
        "confirm": password if confirm is None else confirm,
        "csrf_token": csrf_token_from(page.get_data(as_text=True))})


def verification_link(envelope) -> str:
    return link_in(envelope, VERIFY_LINK)


def user_named(app, username):
    with app.app_context():
        user = db.session.execute(db.select(User).filter_by(username=username)).scalar_one_or_none()
        db.session.expunge_all()
        return user


def expire_verifications(app):
    with app.app_context():
        for row in db.session.execute(db.select(EmailVerification)).scalars():
            row.expires_at = row.created_at - timedelta(seconds=1)
        db.session.commit()


def test_register_verify_then_log_in(app, client, mailbox):
    response = register(client)
    assert response.status_code == 302 and response.headers["Location"] == "/auth/login"
    assert "We have sent a verification link to bob@example.com" in flashes(client.get("/auth/login"))[0]

    assert len(mailbox) == 1
    envelope = mailbox[0]
    assert envelope.rcpt_tos == ["bob@example.com"]
    assert envelope.mail_from == "cyberquest@test.local"
    assert "Subject: Confirm your CyberQuest e-mail address" in envelope.content.decode()
    link = verification_link(envelope)

    # not verified yet: the right password is refused like any other failure
    refused = login(client, "bob", "bob-password-1")
    assert refused.status_code == 200 and flashes(refused) == [GENERIC_LOGIN_ERROR]
    assert user_named(app, "bob").is_active is False

    verified = client.get(link)
    assert verified.status_code == 302 and verified.headers["Location"] == "/auth/login"
    assert flashes(client.get("/auth/login")) == ["Your e-mail address is confirmed. You can log in now."]

    assert login(client, "bob", "bob-password-1").status_code == 302
    assert "Log out" in client.get("/").get_data(as_text=True)
    with app.app_context():
        row = db.session.execute(db.select(EmailVerification)).scalar_one()
        assert row.is_verified is True and row.verified_at is not None
        assert row.email == "bob@example.com"
        # the link's token is not stored as such: a copy of the database holds no usable link
        assert row.token != link.rsplit("/", 1)[1] and len(row.token) == 64


def test_used_link_gets_a_clear_page_pointing_to_login(client, mailbox):
    register(client)
    link = verification_link(mailbox[0])
    assert client.get(link).status_code == 302

    again = client.get(link)
    assert again.status_code == 400
    page = again.get_data(as_text=True)
    assert "already been used" in page
    assert 'href="/auth/login"' in page


def test_expired_link_gets_a_clear_page_and_a_new_link_works(app, client, mailbox):
    register(client)
    link = verification_link(mailbox[0])
    expire_verifications(app)

    expired = client.get(link)
    assert expired.status_code == 400
    page = expired.get_data(as_text=True)
    assert "expired" in page and 'href="/auth/resend-verification"' in page
    assert user_named(app, "bob").is_active is False

    form = client.get("/auth/resend-verification")
    response = client.post("/auth/resend-verification", data={
        "email": "bob@example.com", "csrf_token": csrf_token_from(form.get_data(as_text=True))})
    assert response.status_code == 302
    assert len(mailbox) == 2 and mailbox[1].rcpt_tos == ["bob@example.com"]
    new_link = verification_link(mailbox[1])
    assert new_link != link
    assert client.get(new_link).status_code == 302
    assert login(client, "bob", "bob-password-1").status_code == 302


def test_resend_says_the_same_for_unknown_and_verified_addresses_and_sends_nothing(client, plain_user, mailbox):
    answers = []
    for address in ["nobody@example.com", "alice@example.com"]:
        form = client.get("/auth/resend-verification")
        response = client.post("/auth/resend-verification", data={
            "email": address, "csrf_token": csrf_token_from(form.get_data(as_text=True))})
        answers.append((response.status_code, response.headers["Location"], flashes(client.get("/auth/login"))))
    assert answers[0] == answers[1]
    assert mailbox == []


def test_unknown_link_gets_a_clear_page(client):
    response = client.get("/auth/verify-email/" + "0" * 64)
    assert response.status_code == 400
    assert "not valid" in response.get_data(as_text=True)
    as_json = client.get("/auth/verify-email/" + "0" * 64, headers={"Accept": "application/json"})
    assert as_json.status_code == 400 and "not valid" in as_json.get_json()["error"]
    assert client.get("/auth/verify-email/" + "x" * 5000).status_code == 400


def test_duplicate_username_or_email_is_a_form_error(app, client, plain_user, mailbox):
    taken_name = register(client, username="Alice", mail="other@example.com")
    assert taken_name.status_code == 200
    assert "That username is already taken." in taken_name.get_data(as_text=True)

    taken_mail = register(client, username="other", mail="ALICE@example.com")
    assert taken_mail.status_code == 200
    assert "An account with that e-mail address already exists." in taken_mail.get_data(as_text=True)

    assert user_named(app, "other") is None and user_named(app, "Alice") is None
    assert mailbox == []


def test_malformed_or_oversized_fields_are_form_errors(app, client, mailbox):
    bad_mail = register(client, mail="not-an-email")
    assert bad_mail.status_code == 200
    assert "Enter a valid e-mail address." in bad_mail.get_data(as_text=True)

    cases = {
        "Field cannot be longer than 255 characters.": dict(mail="b" * 10_000 + "@example.com"),
        "Field must be between 3 and 80 characters long.": dict(username="b" * 10_000),
        "Use only letters, digits, dots, dashes and underscores.": dict(username="bob@example.com"),
        "The passwords do not match.": dict(confirm="something-else"),
        "Field must be between 8 and 1024 characters long.": dict(password="short"),
    }
    for error, fields in cases.items():
        response = register(client, **fields)
        assert response.status_code == 200, fields
        assert error in response.get_data(as_text=True), fields

    assert user_named(app, "bob") is None
    assert mailbox == []


def test_when_mail_cannot_be_sent_no_account_is_left_and_retry_works(app, client, mailbox):
    state = app.extensions["mail"]
    working_port, state.port = state.port, free_port()  # nothing listens there
    failed = register(client)
    assert failed.status_code == 200
    assert "could not send the verification e-mail" in " ".join(flashes(failed))
    assert user_named(app, "bob") is None

    state.port = working_port
    assert register(client).status_code == 302
    assert len(mailbox) == 1


def test_logged_in_users_are_sent_home_from_register(user_client):
    response = user_client.get("/auth/register")
    assert response.status_code == 302 and response.headers["Location"] == "/"

