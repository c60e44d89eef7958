"""Login and logout. Registration, verification, and password reset live in the same blueprint."""
from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user

from ..security import is_safe_next
from .forms import LoginForm
from .service import GENERIC_LOGIN_ERROR, authenticate

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if form.validate_on_submit():
        user = authenticate(form.username.data, form.password.data, request.remote_addr,
                            request.headers.get("User-Agent"))
        if user is not None:
            login_user(user)
            target = request.args.get("next")
            if not is_safe_next(target):
                target = url_for("admin.dashboard") if user.is_admin else url_for("main.index")
            return redirect(target)
        flash(GENERIC_LOGIN_ERROR, "error")
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
def logout():
    if current_user.is_authenticated:
        logout_user()
        flash("You have been logged out.", "info")
    return redirect(url_for("auth.login"))
