"""The System Backup forms: create a backup, restore one, save the schedule, page through the audit log.

Each form is filled from ``http.request_fields``, so the same form reads a
browser's form post, a script's urlencoded or multipart fields, and a JSON body
with the same keys (whose values keep their JSON types). The forms do not check
CSRF themselves: ``app.security`` checks it for every session request, and
Bearer requests carry none.
"""
from __future__ import annotations

from flask import request
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import Field, PasswordField, StringField
from wtforms.validators import StopValidation, ValidationError

from config import parse_flag

from ...auth.credentials import authenticate, is_locked_out
from ..audit import MAX_PAGE_SIZE, PAGE_SIZE
from ..errors import BadRequestError
from ..restore.options import RestoreOptions, parse_tables
from ..schedule.validation import UNKNOWN_FIELD, parse_setting, submitted_fields


class _FieldValues(dict):
    """Request fields as WTForms form data: one value per name, kept as it was sent."""

    def getlist(self, name: str) -> list:
        return [self[name]] if name in self else []


def _text(value) -> str:
    return str(value or "").strip()


class FlagField(Field):
    """A yes/no field: 1/true/yes/on or 0/false/no/off (see ``config.parse_flag``); absent or empty is
    the field's ``default`` (no, unless declared otherwise)."""

    def process_formdata(self, valuelist):
        sent = valuelist[0] if valuelist else None
        if sent is None or sent == "":
            self.data = bool(self.default)
            return
        try:
            self.data = parse_flag(sent)
        except ValueError:
            self.data = False
            raise ValueError(f"The field {self.name!r} must be 1/true or 0/false.") from None


class RequestForm(FlaskForm):
    """A form read from request fields (a dict; None for a page that only shows the form).

    ``refusal`` is the one message a refused request is answered with: the first
    error, in the order the fields are declared.
    """

    class Meta:
        csrf = False

    def __init__(self, fields: dict | None, **kwargs):
        super().__init__(formdata=None if fields is None else _FieldValues(fields), **kwargs)

    def refusal(self) -> str:
        """The first error message (call after ``validate``)."""
        return next(iter(self.errors.values()))[0]


class CreateBackupForm(RequestForm):
    """``POST /admin/create-backup``: ``wait`` makes the request return once the backup is made."""

    wait = FlagField()


class VerifyForm(RequestForm):
    """``POST /admin/verify-backup/<filename>``: ``wait=0`` answers at once with the job instead of the outcome."""

    wait = FlagField(default=True)


class RestoreForm(RequestForm):
    """``POST /admin/restore-backup``: the source, the restore options and their confirmation.

    ``tables`` is comma-separated text (``users, login_attempts``), a JSON list, or
    the page's checkboxes (``request_fields(joined=("tables",))`` joins them).
    Fields are declared in the order they are checked. After ``validate``,
    ``options`` holds the validated ``RestoreOptions`` (checked after the mode and
    the flags, before the confirmation; its error belongs to no single field).
    A session request passes the admin's username (``session_username``) and must
    carry the admin's current password, checked as a login is: it counts toward
    the login lock-out and is recorded in ``login_attempts``. A Bearer request
    passes None.
    """

    mode = StringField(filters=[_text])
    dry_run = FlagField()
    trust_unsigned = FlagField()
    tables = Field(filters=[parse_tables])
    on_conflict = StringField(filters=[lambda value: _text(value or "skip")])
    confirm = StringField(filters=[_text])
    password = PasswordField(filters=[lambda value: str(value or "")])
    filename = StringField(filters=[_text])
    backup_file = FileField()
    wait = FlagField()

    def __init__(self, fields: dict | None, *, session_username: str | None):
        super().__init__(fields)
        self.session_username = session_username
        self.options: RestoreOptions | None = None

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        if not (self.mode.errors or self.dry_run.errors or self.trust_unsigned.errors):
            try:
                self.options = RestoreOptions(mode=self.mode.data, tables=self.tables.data,
                                              on_conflict=self.on_conflict.data, dry_run=self.dry_run.data,
                                              trust_unsigned=self.trust_unsigned.data).validate()
            except BadRequestError as exc:
                self.form_errors.append(exc.message)
        return valid and self.options is not None

    def refusal(self) -> str:
        """The first error, the options' one right after the mode's and the flags'."""
        checked_first = [self.mode.errors, self.dry_run.errors, self.trust_unsigned.errors, self.form_errors]
        return next(errors[0] for errors in checked_first + [field.errors for field in self] if errors)

    def validate_mode(self, field):
        """A mode is required."""
        if not field.data:
            raise StopValidation("The field 'mode' is required: merge or replace.")

    def validate_confirm(self, field):
        """The confirmation repeats the mode's name."""
        if self.mode.data and field.data != self.mode.data:
            raise ValidationError(f"To restore, the field 'confirm' must equal the mode ({self.mode.data!r}).")

    def validate_password(self, field):
        """A session request carries the admin's current password: a login attempt, locked out as one."""
        if self.session_username is None:
            return
        if not field.data:
            raise StopValidation("Enter your current password to confirm the restore.")
        ip, agent = request.remote_addr, request.headers.get("User-Agent")
        if authenticate(self.session_username, field.data, ip, agent, logs_in=False) is None:
            if is_locked_out(self.session_username, ip):
                raise ValidationError("Too many wrong passwords: the account is locked for a while; the restore "
                                      "was not started.")
            raise ValidationError("The password is not correct; the restore was not started.")

    def validate_filename(self, field):
        """Exactly one source: a listed backup's name or an uploaded file."""
        if field.data and self.backup_file.data:
            raise ValidationError("Give either 'filename' or an uploaded 'backup_file', not both.")
        if not (field.data or self.backup_file.data):
            raise ValidationError("Name a listed backup in 'filename' or upload one in 'backup_file'.")


class SettingField(Field):
    """One schedule setting: the stored value, or the value the request sent, checked by ``parse_setting``.

    ``sent`` says whether the request named it. After ``validate`` a sent value is
    the parsed one, or stays as sent when it is bad (so the page shows it again).
    """

    sent = False

    def process_formdata(self, valuelist):
        if valuelist:
            self.sent = True
            self.data = valuelist[0]

    def pre_validate(self, form):
        if self.sent:
            try:
                self.data = parse_setting(self.name, self.data)
            except ValueError as exc:
                raise StopValidation(str(exc)) from None


class ScheduleForm(RequestForm):
    """``GET/POST /admin/backup-schedule``: the schedule's settings; fields left out keep their values.

    ``current`` is the stored schedule (``ScheduleSettings.to_dict``). A JSON body
    may also be a GET's answer, ``{"schedule": {...}}``. A name that is no setting
    is an error too, listed among the form's own errors.
    """

    enabled = SettingField()
    frequency = SettingField()
    time = SettingField()
    weekday = SettingField()
    day_of_month = SettingField()
    retention_days = SettingField()
    keep_last = SettingField()
    notify_emails = SettingField()
    notify_on = SettingField()
    webhook_url = SettingField()
    heartbeat_url = SettingField()

    def __init__(self, fields: dict | None, *, current: dict):
        sent = None if fields is None else submitted_fields(fields)
        super().__init__(sent, data=current)
        self.unknown = {name: UNKNOWN_FIELD.format(name=name) for name in sent or () if name not in self._fields}

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        self.form_errors.extend(self.unknown.values())
        return valid and not self.unknown

    def changes(self) -> dict:
        """The settings the request sent, parsed (call after a successful ``validate``)."""
        return {name: field.data for name, field in self._fields.items() if field.sent}

    def setting_errors(self) -> dict[str, str]:
        """Setting name → message for every bad field, names that are no setting included."""
        return {**{name: field.errors[0] for name, field in self._fields.items() if field.errors}, **self.unknown}


class WholeNumberField(Field):
    """A whole number from ``low`` to ``high``; absent or empty is the field's default."""

    def __init__(self, *args, low: int, high: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.low, self.high = low, high

    def process_formdata(self, valuelist):
        sent = _text(valuelist[0] if valuelist else None)
        if not sent:
            return
        if not sent.isdigit() or not self.low <= int(sent) <= self.high:
            raise ValueError(f"The field {self.name!r} must be a whole number from {self.low} to {self.high}.")
        self.data = int(sent)


class AuditQueryForm(RequestForm):
    """``GET /admin/audit``: ``before`` (an entry id: only older entries), ``action`` (only that one), ``limit``."""

    before = WholeNumberField(low=1, high=2**63 - 1)
    action = StringField(filters=[_text])
    limit = WholeNumberField(low=1, high=MAX_PAGE_SIZE, default=PAGE_SIZE)
