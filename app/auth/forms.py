"""Account forms; every field is bounded, so oversized or malformed input is a form error, never a 500."""
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Email, EqualTo, Length, Regexp

from ..cli import MIN_PASSWORD_LENGTH

MAX_PASSWORD_LENGTH = 1024


def _strip(value):
    return value.strip() if isinstance(value, str) else value


def _email_field(label="E-mail"):
    return StringField(label, filters=[_strip], validators=[
        DataRequired(), Length(max=255), Email(check_deliverability=False, message="Enter a valid e-mail address.")])


def _new_password_fields():
    password = PasswordField("Password", validators=[
        DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=MAX_PASSWORD_LENGTH)])
    confirm = PasswordField("Confirm password", validators=[
        DataRequired(), Length(max=MAX_PASSWORD_LENGTH), EqualTo("password", message="The passwords do not match.")])
    return password, confirm


class LoginForm(FlaskForm):
    username = StringField("Username or e-mail", validators=[DataRequired(), Length(max=255)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=MAX_PASSWORD_LENGTH)])


class RegistrationForm(FlaskForm):
    username = StringField("Username", filters=[_strip], validators=[
        DataRequired(), Length(min=3, max=80),
        # No "@": the login field takes a username or an e-mail, and must not confuse them.
        Regexp(r"^[A-Za-z0-9_.-]+$", message="Use only letters, digits, dots, dashes and underscores.")])
    email = _email_field()
    password, confirm = _new_password_fields()


class EmailForm(FlaskForm):
    """Just an e-mail address: forgot password, resend verification."""

    email = _email_field()


class ResetPasswordForm(FlaskForm):
    password, confirm = _new_password_fields()
