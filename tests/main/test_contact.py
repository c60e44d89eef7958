"""The public contact form."""
import html

from app.extensions import db
from app.models import ContactSubmission
from support.web import csrf_token_from


def submissions(app) -> list[ContactSubmission]:
    with app.app_context():
        rows = db.session.execute(db.select(ContactSubmission).order_by(ContactSubmission.id)).scalars().all()
        db.session.expunge_all()
        return rows


def send(client, **fields):
    page = client.get("/contact")
    data = {"name": "Carol", "email": "carol@example.org", "subject": "Team sign-up",
            "message": "How do we register a team of four?",
            "csrf_token": csrf_token_from(page.get_data(as_text=True))}
    data.update(fields)
    return client.post("/contact", data=data)


def test_contact_link_in_every_page_nav(client):
    assert 'href="/contact"' in client.get("/").get_data(as_text=True)
    assert 'href="/contact"' in client.get("/auth/login").get_data(as_text=True)


def test_a_submission_is_stored_and_thanked_for(app, client):
    response = send(client)
    assert response.status_code == 302 and response.headers["Location"] == "/contact"
    thanks = client.get("/contact").get_data(as_text=True)
    assert "Thank you, your message has been sent." in html.unescape(thanks)

    [row] = submissions(app)
    assert (row.name, row.email, row.subject, row.message) == (
        "Carol", "carol@example.org", "Team sign-up", "How do we register a team of four?")
    assert row.is_read is False and row.created_at is not None


def test_subject_is_optional_and_the_longest_allowed_message_fits(app, client):
    assert send(client, subject="", message="m" * 5000).status_code == 302
    [row] = submissions(app)
    assert row.subject is None and len(row.message) == 5000


def test_missing_csrf_token_is_refused_with_400(app, client):
    response = client.post("/contact", data={"name": "Mallory", "email": "m@example.org",
                                             "subject": "hi", "message": "forged"})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)
    assert submissions(app) == []


def test_oversized_or_malformed_fields_are_form_errors_and_nothing_is_stored(app, client):
    cases = {
        "Field cannot be longer than 5000 characters.": dict(message="m" * 5001),
        "Field cannot be longer than 100 characters.": dict(name="n" * 10_000),
        "Field cannot be longer than 200 characters.": dict(subject="s" * 201),
        "Enter a valid e-mail address.": dict(email="carol-at-example"),
        "This field is required.": dict(message=""),
    }
    for error, fields in cases.items():
        response = send(client, **fields)
        assert response.status_code == 200, fields
        assert error in response.get_data(as_text=True), fields
    assert submissions(app) == []


def test_the_form_is_prefilled_for_a_logged_in_user(user_client):
    page = user_client.get("/contact").get_data(as_text=True)
    assert 'value="alice@example.com"' in page and 'value="alice"' in page
