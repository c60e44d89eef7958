"""Account commands: create-admin, create-user, create-api-token, ensure-admin."""
import re

from app.extensions import db
from app.models import User
from support.web import login


def run(app, *args, input=None, env=None):
    return app.test_cli_runner().invoke(args=list(args), input=input, env=env)


def users(app) -> list[tuple[str, bool]]:
    with app.app_context():
        return [(u.username, u.is_admin) for u in db.session.execute(db.select(User).order_by(User.id)).scalars()]


def assert_one_clear_error(result, *words):
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for word in words:
        assert word in lines[0]


def test_create_admin_makes_an_admin_who_can_log_in(app):
    result = run(app, "create-admin", "--username", "root", "--email", "root@example.com",
                 "--password", "root-password-1")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "Admin root created."
    client = app.test_client()
    response = login(client, "root", "root-password-1")
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_create_admin_prompts_for_what_is_left_out(app):
    result = run(app, "create-admin", "--username", "root", "--email", "root@example.com",
                 input="root-password-1\nroot-password-1\n")
    assert result.exit_code == 0, result.output
    assert login(app.test_client(), "root", "root-password-1").status_code == 302


def test_create_user_makes_an_ordinary_verified_account(app):
    result = run(app, "create-user", "--username", "dave", "--email", "dave@example.com",
                 "--password", "dave-password-1")
    assert result.exit_code == 0, result.output
    client = app.test_client()
    assert login(client, "dave", "dave-password-1").status_code == 302  # no e-mail verification needed
    assert client.get("/admin/").status_code == 403


def test_duplicate_user_exits_1_with_one_clear_line(app, plain_user):
    for args in (["--username", "alice", "--email", "new@example.com"],
                 ["--username", "newbie", "--email", "ALICE@example.com"]):
        result = run(app, "create-user", *args, "--password", "some-password-1")
        assert_one_clear_error(result, "already exists")
    assert users(app) == [("alice", False)]


def test_short_password_or_bad_email_exits_1(app):
    assert_one_clear_error(run(app, "create-user", "--username", "e", "--email", "e@example.com",
                               "--password", "short"), "at least 8 characters")
    assert_one_clear_error(run(app, "create-user", "--username", "e", "--email", "nope",
                               "--password", "long-enough-1"), "e-mail")
    assert users(app) == []


def test_api_token_only_for_admins(app, admin_user, plain_user):
    assert_one_clear_error(run(app, "create-api-token", "alice"), "alice", "admin")
    assert_one_clear_error(run(app, "create-api-token", "ghost"), "ghost")

    result = run(app, "create-api-token", "admin")
    assert result.exit_code == 0
    token = result.stdout.strip()
    assert token.startswith("cq_") and len(token.splitlines()) == 1
    response = app.test_client().get("/admin/", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_ensure_admin_creates_admin_once_and_shows_the_password_once(app):
    first = run(app, "ensure-admin", env={"ADMIN_PASSWORD": None})
    assert first.exit_code == 0, first.output
    match = re.search(r"with password: (\S+)", first.stdout)
    assert match, first.stdout
    password = match.group(1)
    assert login(app.test_client(), "admin", password).status_code == 302

    second = run(app, "ensure-admin", env={"ADMIN_PASSWORD": None})
    assert second.exit_code == 0
    assert second.output == ""
    assert users(app) == [("admin", True)]


def test_ensure_admin_uses_admin_password_and_never_prints_it(app):
    result = run(app, "ensure-admin", env={"ADMIN_PASSWORD": "chosen-password-9"})
    assert result.exit_code == 0
    assert "chosen-password-9" not in result.output
    assert "ADMIN_PASSWORD" in result.stdout
    assert login(app.test_client(), "admin", "chosen-password-9").status_code == 302


def test_ensure_admin_leaves_an_existing_admin_alone(app, admin_user):
    result = run(app, "ensure-admin", env={"ADMIN_PASSWORD": "other-password-9"})
    assert result.exit_code == 0 and result.output == ""
    assert users(app) == [("admin", True)]
    assert login(app.test_client(), "admin", admin_user["password"]).status_code == 302
