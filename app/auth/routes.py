"""Account pages: login, logout, registration, e-mail verification, password reset."""
from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user

from ..mail import MailError
from ..security import is_safe_next, wants_json
from . import credentials, service
from .forms import EmailForm, LoginForm, RegistrationForm, ResetPasswordForm

bp = Blueprint("auth", __name__)

CHECK_INBOX_RESET = ("If an account uses that e-mail address, we have sent it a link to reset the password. "
                     "The link is valid for one hour.")
CHECK_INBOX_VERIFY = ("If an account with that e-mail address is waiting for verification, "
                      "we have sent it a new link.")


def _link_problem(problem: service.LinkProblem, retry_endpoint: str, retry_label: str):
    if wants_json():
        return jsonify({"error": problem.message}), 400
    return render_template("auth/link_problem.html", problem=problem,
                           retry_url=url_for(retry_endpoint), retry_label=retry_label), 400


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The login form; success goes to a safe ``next`` or the user's home, failure shows one generic message."""
    form = LoginForm()
    if form.validate_on_submit():
        user = credentials.authenticate(form.username.data, form.password.data, request.remote_addr,
                                        request.headers.get("User-Agent"))
        if user is not None:
            login_user(user)
            target = request.args.get("next")
            if not is_safe_next(target):
                target = url_for("admin.dashboard") if user.is_admin else url_for("main.index")
            return redirect(target)
        flash(credentials.GENERIC_LOGIN_ERROR, "error")
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
def logout():
    """End the session (POST with CSRF only)."""
    if current_user.is_authenticated:
        logout_user()
        flash("You have been logged out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/register", methods=["GET", "POST"])
def register():
    """Create an inactive account and mail its verification link."""
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = RegistrationForm()
    if form.validate_on_submit():
        try:
            user = service.register_user(form.username.data, form.email.data, form.password.data)
        except service.AccountTaken as exc:
            getattr(form, exc.field).errors.append(exc.message)
        except MailError:
            flash("We could not send the verification e-mail just now, so no account was created. "
                  "Please try again in a few minutes.", "error")
        else:
            flash(f"We have sent a verification link to {user.email}. Open it within 24 hours "
                  "to activate your account, then log in.", "success")
            return redirect(url_for("auth.login"))
    return render_template("auth/register.html", form=form)


@bp.route("/verify-email/<token>")
def verify_email(token):
    """Activate the account of a verification link, or explain why the link cannot be used (400)."""
    try:
        service.verify_email(token)
    except service.LinkProblem as problem:
        if problem.kind == "used":
            return _link_problem(problem, "auth.login", "Go to the login page")
        return _link_problem(problem, "auth.resend_verification", "Send me a new verification link")
    flash("Your e-mail address is confirmed. You can log in now.", "success")
    return redirect(url_for("auth.login"))


@bp.route("/resend-verification", methods=["GET", "POST"])
def resend_verification():
    """Mail a new verification link; the answer is the same for any address."""
    form = EmailForm()
    if form.validate_on_submit():
        service.resend_verification(form.email.data)
        flash(CHECK_INBOX_VERIFY, "info")
        return redirect(url_for("auth.login"))
    return render_template("auth/email_form.html", form=form, title="Resend the verification e-mail",
                           intro="Enter the address you registered with and we will send a new link.",
                           button="Send a new link")


@bp.route("/forgot-password", methods=["GET", "POST"])
def forgot_password():
    """Mail a password reset link; the answer is the same for any address."""
    form = EmailForm()
    if form.validate_on_submit():
        service.request_password_reset(form.email.data)
        flash(CHECK_INBOX_RESET, "info")
        return redirect(url_for("auth.login"))
    return render_template("auth/email_form.html", form=form, title="Forgot your password?",
                           intro="Enter your account's e-mail address and we will send you a link to choose "
                                 "a new password.",
                           button="Send the reset link")


@bp.route("/reset-password/<token>", methods=["GET", "POST"])
def reset_password(token):
    """Choose a new password through a reset link, or explain why the link cannot be used (400)."""
    try:
        service.usable_reset_token(token)
    except service.LinkProblem as problem:
        return _link_problem(problem, "auth.forgot_password", "Ask for a new reset link")
    form = ResetPasswordForm()
    if form.validate_on_submit():
        try:
            service.reset_password(token, form.password.data)
        except service.LinkProblem as problem:
            return _link_problem(problem, "auth.forgot_password", "Ask for a new reset link")
        flash("Your password has been changed. Log in with the new password.", "success")
        return redirect(url_for("auth.login"))
    return render_template("auth/reset_password.html", form=form)
