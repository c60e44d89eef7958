"""Admin forms; every field is bounded, so malformed input is a form error, never a 500."""
from flask_wtf import FlaskForm
from wtforms import Field, IntegerField, StringField
from wtforms.validators import Length, NumberRange, Optional, ValidationError

from ..security import DEFAULT_SCOPES, parse_scopes
from .api_tokens import MAX_EXPIRY_DAYS


class ScopesField(Field):
    """Scopes as ticked checkboxes, a JSON list, or comma-separated text; none given means the default.

    The page renders one checkbox per scope itself, so the field has no widget of its own.
    """

    def process_formdata(self, valuelist):
        self.data = list(valuelist)

    def pre_validate(self, form):
        try:
            self.data = list(parse_scopes(self.data))
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class ApiTokenForm(FlaskForm):
    """A new API token: a name for what will use it, its scopes, and an optional lifetime in days."""

    # The CSRF token is checked for every cookie-authenticated post before any view runs.
    class Meta:
        csrf = False

    name = StringField("Name", filters=[lambda v: v.strip() if isinstance(v, str) else v],
                       validators=[Optional(), Length(max=100)])
    scopes = ScopesField("Scopes", default=list(DEFAULT_SCOPES))
    expires_in = IntegerField("Expires in (days)", validators=[Optional(), NumberRange(1, MAX_EXPIRY_DAYS)])

    def first_error(self) -> str:
        """One sentence naming the first field at fault."""
        for field in self:
            if field.errors:
                return f"{field.label.text}: {field.errors[0]}"
        return "The form is not valid."
