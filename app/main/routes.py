"""Public pages: home and the contact form."""
from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user

from .forms import ContactForm
from .service import save_contact_submission

bp = Blueprint("main", __name__)


@bp.route("/")
def index():
    """The public home page."""
    return render_template("main/index.html")


@bp.route("/contact", methods=["GET", "POST"])
def contact():
    """The public contact form; a valid submission is stored and thanked for."""
    form = ContactForm()
    if not form.is_submitted() and current_user.is_authenticated:
        form.name.data = form.name.data or current_user.username
        form.email.data = form.email.data or current_user.email
    if form.validate_on_submit():
        save_contact_submission(form.name.data, form.email.data, form.subject.data, form.message.data)
        flash("Thank you, your message has been sent. We will reply by e-mail.", "success")
        return redirect(url_for("main.contact"))
    return render_template("main/contact.html", form=form)
