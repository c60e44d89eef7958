"""Public-page logic: contact submissions."""
from __future__ import annotations

from ..extensions import db
from ..models import ContactSubmission


def save_contact_submission(name: str, email: str, subject: str | None, message: str) -> ContactSubmission:
    """Store a message from the contact form, unread, for the admins to see."""
    submission = ContactSubmission(name=name, email=email, subject=subject or None, message=message)
    db.session.add(submission)
    db.session.commit()
    return submission
