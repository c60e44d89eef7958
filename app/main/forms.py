"""The public contact form; every field is bounded, so oversized input is a form error, never a 500."""
from flask_wtf import FlaskForm
from wtforms import StringField, TextAreaField
from wtforms.validators import DataRequired, Email, Length, Optional

MAX_MESSAGE_LENGTH = 5000


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class ContactForm(FlaskForm):
    name = StringField("Name", filters=[_strip], validators=[DataRequired(), Length(max=100)])
    email = StringField("E-mail", filters=[_strip], validators=[
        DataRequired(), Length(max=255), Email(check_deliverability=False, message="Enter a valid e-mail address.")])
    subject = StringField("Subject", filters=[_strip], validators=[Optional(), Length(max=200)])
    message = TextAreaField("Message", validators=[DataRequired(), Length(max=MAX_MESSAGE_LENGTH)])
