"""The authorisation matrix: every route of ``app.url_map`` × every method it accepts × every kind of caller.

The routes come from the URL map, so a new one is covered at once; what each may
answer comes from ``ROUTES`` below, written out from CONTRACT.md (the scope table,
"everything under /admin is for admins only", the anonymous / non-admin / CSRF
table) and app/security.py's one rule the contract leaves open (outside /admin a
token needs the `admin` scope). It is not computed by the app's own scope function.
A route or method of the map that ``ROUTES`` does not classify fails the test, so
whoever adds one must say who may call it.

Each request carries real values (a listed backup, a finished job, a spare token,
a real schedule change, a real restore), so a refusal that did not happen would
show: by its status (a 2xx, or a 3xx other than to the login page, is a leak) and
by its side effects (every table and every file of the backup store is compared
before and after each route's refused requests). The allowed requests (the control:
an admin session with its CSRF token, and tokens wide enough) run afterwards and
must get through, with fresh backups and tokens for the ones that destroy.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote

import pytest
import sqlalchemy as sa
from flask import jsonify

from app.backup.service import BackupService
from app.extensions import db
from app.models import ApiToken, User, utcnow
from app.security import issue_api_token
from support.app import ADMIN_PASSWORD, USER_PASSWORD, build_app
from support.reliability import record
from support.web import csrf_token_from, login, wait_for_job

pytestmark = pytest.mark.reliability

PUBLIC = "public"
# app/security.py: a token is for the /admin API; on any other route only an `admin` token is accepted.
TOKEN_SCOPE_OUTSIDE_ADMIN = "admin"
# The contract's scope table: what a token of each scope may reach.
GRANTS = {
    "health": {"health"},
    "read": {"health", "read"},
    "backup": {"health", "read", "backup"},
    "admin": {"health", "read", "backup", "admin"},
}


@dataclass(frozen=True)
class Route:
    """A URL rule: the URL sent (``{backup}``, ``{job}``, ``{token_id}`` filled in), per method the scope a
    token needs (``PUBLIC``: anyone, a page outside /admin) and the form fields sent."""

    path: str
    needs: dict[str, str]
    fields: dict[str, dict] = field(default_factory=dict)


RESTORE = {"filename": "{backup}", "mode": "merge", "confirm": "merge", "wait": "1"}
ROUTES: dict[str, Route] = {
    # Public pages (forms are sent empty: they answer with their errors and change nothing).
    "/": Route("/", {"GET": PUBLIC}),
    "/contact": Route("/contact", {"GET": PUBLIC, "POST": PUBLIC}),
    "/static/<path:filename>": Route("/static/style.css", {"GET": PUBLIC}),
    "/auth/login": Route("/auth/login", {"GET": PUBLIC, "POST": PUBLIC}),
    "/auth/logout": Route("/auth/logout", {"POST": PUBLIC}),
    "/auth/register": Route("/auth/register", {"GET": PUBLIC, "POST": PUBLIC}),
    "/auth/forgot-password": Route("/auth/forgot-password", {"GET": PUBLIC, "POST": PUBLIC}),
    "/auth/resend-verification": Route("/auth/resend-verification", {"GET": PUBLIC, "POST": PUBLIC}),
    "/auth/reset-password/<token>": Route("/auth/reset-password/" + "0" * 64, {"GET": PUBLIC, "POST": PUBLIC}),
    "/auth/verify-email/<token>": Route("/auth/verify-email/" + "0" * 64, {"GET": PUBLIC}),
    # /admin: the contract's scope table.
    "/admin/backup-health": Route("/admin/backup-health", {"GET": "health"}),
    "/admin/": Route("/admin/", {"GET": "read"}),
    "/admin/system-backup": Route("/admin/system-backup", {"GET": "read"}),
    "/admin/audit": Route("/admin/audit", {"GET": "read"}),
    "/admin/api/openapi.json": Route("/admin/api/openapi.json", {"GET": "read"}),
    "/admin/backup-jobs/<job_id>": Route("/admin/backup-jobs/{job}", {"GET": "read"}),
    "/admin/backup-schedule": Route("/admin/backup-schedule", {"GET": "read", "POST": "admin"},
                                    {"POST": {"keep_last": "5", "retention_days": "9"}}),
    "/admin/download-backup/<path:filename>": Route("/admin/download-backup/{backup}", {"GET": "backup"}),
    "/admin/create-backup": Route("/admin/create-backup", {"POST": "backup"}, {"POST": {"wait": "1"}}),
    "/admin/verify-backup/<path:filename>": Route("/admin/verify-backup/{backup}", {"POST": "backup"},
                                                  {"POST": {"wait": "1"}}),
    "/admin/pin-backup/<path:filename>": Route("/admin/pin-backup/{backup}", {"POST": "backup"}),
    "/admin/delete-backup/<path:filename>": Route("/admin/delete-backup/{backup}", {"POST": "admin"}),
    "/admin/restore-backup": Route("/admin/restore-backup", {"POST": "admin"}, {"POST": RESTORE}),
    "/admin/api-tokens": Route("/admin/api-tokens", {"GET": "read", "POST": "admin"},
                               {"POST": {"name": "from the matrix", "scopes": "admin"}}),
    "/admin/api-tokens/<int:token_id>/revoke": Route("/admin/api-tokens/{token_id}/revoke", {"POST": "admin"}),
}
# Requests that use up what they name: when allowed, each gets a resource of its own.
DESTROYS = {"/admin/delete-backup/<path:filename>": "backup", "/admin/api-tokens/<int:token_id>/revoke": "token_id"}


def unclassified(app) -> list[str]:
    """The rules and methods of ``app``'s URL map that ``ROUTES`` does not classify ("METHOD rule")."""
    missing = []
    for rule in app.url_map.iter_rules():
        known = ROUTES.get(rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if known is None or method not in known.needs:
                missing.append(f"{method} {rule.rule}")
    return missing


def matrix_pairs(app) -> list[tuple[str, str]]:
    """(rule, method) for every method of every rule, HEAD and OPTIONS included (once per path)."""
    return sorted({(rule.rule, method) for rule in app.url_map.iter_rules() for method in rule.methods})


# --- Callers -----------------------------------------------------------------------------------

@dataclass
class Caller:
    """Who asks: ``kind`` anonymous / user / admin (a browser session) or token; ``face`` html or json."""

    name: str
    kind: str
    face: str
    client: object
    sends_csrf: bool = True
    token: str | None = None  # the token's scope, or revoked / expired / unknown
    login_as: tuple[str, str] | None = None

    def headers(self) -> dict:
        return {"Accept": "application/json" if self.face == "json" else "text/html"}

    def csrf(self) -> str:
        return csrf_token_from(self.client.get("/contact").get_data(as_text=True))

    def relogin(self) -> None:
        if self.login_as:
            assert login(self.client, *self.login_as).status_code == 302


BAD_TOKENS = {"revoked": "revoked", "expired": "expired", "unknown": "invalid"}  # caller: a word its 401 says


def make_callers(app) -> list[Caller]:
    """The 15 callers: sessions logged in through the real form, tokens of each scope and three bad ones."""
    visitor, anonymous, user, admin, admin_no_csrf = (app.test_client() for _ in range(5))
    visitor.get("/contact")  # a visitor's session: a CSRF token, nobody logged in
    for client, who in ((user, ("alice", USER_PASSWORD)), (admin, ("admin", ADMIN_PASSWORD)),
                        (admin_no_csrf, ("admin", ADMIN_PASSWORD))):
        assert login(client, *who).status_code == 302
    callers = [
        Caller("anonymous with CSRF (page)", "anonymous", "html", visitor),
        Caller("anonymous without CSRF (page)", "anonymous", "html", anonymous, sends_csrf=False),
        Caller("anonymous without CSRF (JSON)", "anonymous", "json", anonymous, sends_csrf=False),
        Caller("user (page)", "user", "html", user, login_as=("alice", USER_PASSWORD)),
        Caller("user (JSON)", "user", "json", user, login_as=("alice", USER_PASSWORD)),
        Caller("admin without CSRF (page)", "admin", "html", admin_no_csrf, sends_csrf=False),
        Caller("admin without CSRF (JSON)", "admin", "json", admin_no_csrf, sends_csrf=False),
        Caller("admin with CSRF (page)", "admin", "html", admin, login_as=("admin", ADMIN_PASSWORD)),
    ]
    with app.app_context():
        owner = db.session.execute(db.select(User).filter_by(username="admin")).scalar_one()
        secrets = {scope: issue_api_token(owner, name=scope, scopes=[scope], expires_in_days=30)
                   for scope in GRANTS}
        secrets["revoked"] = issue_api_token(owner, name="revoked")
        secrets["expired"] = issue_api_token(owner, name="expired", expires_in_days=1)
        db.session.execute(db.update(ApiToken).filter_by(name="revoked").values(revoked_at=utcnow()))
        db.session.execute(db.update(ApiToken).filter_by(name="expired")
                           .values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    secrets["unknown"] = "cq_" + "x" * 43
    for name, secret in secrets.items():
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
        callers.append(Caller(f"token: {name}", "token", "json", client, token=name))
    return callers


# --- Expectations ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Expect:
    """``allowed``, or the refusal: ``status`` with ``login`` (302 to the login page), ``scope``
    (a 403 naming it), ``word`` (in the error), or ``automatic`` (OPTIONS: Flask's own answer or a refusal)."""

    allowed: bool = False
    status: int | None = None
    scope: str | None = None
    word: str | None = None
    login: bool = False
    automatic: bool = False


ALLOWED = Expect(allowed=True)


def expected(rule: str, method: str, caller: Caller) -> Expect:
    """What the contract says ``caller`` gets for ``method`` on ``rule`` (from ``ROUTES``, not from the app)."""
    if caller.token in BAD_TOKENS:
        return Expect(status=401, word=BAD_TOKENS[caller.token])  # whatever the method
    if method == "OPTIONS":
        # Flask answers OPTIONS itself (Allow, no body) without running the view; the contract is silent.
        return Expect(automatic=True)
    needed = ROUTES[rule].needs["GET" if method == "HEAD" else method]
    if caller.token:
        scope = TOKEN_SCOPE_OUTSIDE_ADMIN if needed == PUBLIC else needed
        return ALLOWED if scope in GRANTS[caller.token] else Expect(status=403, scope=scope)
    if needed != PUBLIC and caller.kind == "anonymous":
        return Expect(status=302, login=True) if caller.face == "html" else Expect(status=401)
    if method == "POST" and not caller.sends_csrf:
        return Expect(status=400, word="CSRF")
    if needed != PUBLIC and caller.kind != "admin":
        return Expect(status=403)
    return ALLOWED


def to_login(response) -> bool:
    """True for the anonymous page answer: a 302 to the login page with ``next``."""
    return response.status_code == 302 and response.headers.get("Location", "").startswith("/auth/login?next=")


def through(response) -> bool:
    """The request got to the resource: a 2xx, or a 3xx anywhere but the login page."""
    return 200 <= response.status_code < 300 or (300 <= response.status_code < 400 and not to_login(response))


def judge(response, expect: Expect, rule: str, method: str, path: str, caller: Caller) -> str | None:
    """None when ``response`` is what ``expect`` says, else what is wrong."""
    status = response.status_code
    head = method == "HEAD"
    body = b"" if head else response.get_data()
    if status >= 500:
        return f"{status}: {body[:200]!r}"
    if expect.automatic:
        if through(response) and not automatic_options(response, caller, rule):
            return f"OPTIONS ran more than Flask's automatic answer: {status} {body[:200]!r}"
        return None
    if expect.allowed:
        if rule.startswith("/admin"):
            fine = status in (200, 503) if rule == "/admin/backup-health" else (
                200 <= status < 300 if caller.face == "json" else through(response))
        else:
            fine = not (to_login(response) or status in (401, 403) or (status == 400 and b"CSRF" in body))
        if not fine:
            return f"refused the control: {status} {body[:200]!r}"
        if caller.face == "json" and rule.startswith("/admin") and "download" not in rule and not response.is_json:
            return f"a JSON request under /admin answered {response.mimetype}"
        return None
    if status != expect.status:
        return f"expected {expect.status}, got {status} {body[:200]!r}"
    if expect.login and path not in unquote(response.headers["Location"]):
        return f"the login redirect does not come back here: {response.headers['Location']}"
    if head:
        return None
    if caller.face == "json":
        if not response.is_json or not isinstance(response.get_json().get("error"), str):
            return f"a JSON refusal without {{'error': ...}}: {body[:200]!r}"
        error = response.get_json()["error"]
        if expect.scope and (response.get_json().get("required_scope") != expect.scope
                             or repr(expect.scope) not in error):
            return f"the 403 does not name the {expect.scope!r} scope: {error!r}"
        if expect.word and expect.word not in error:
            return f"the error does not say {expect.word!r}: {error!r}"
    elif not expect.login:
        if response.mimetype != "text/html":
            return f"a page refusal that is not a page: {response.mimetype}"
        if expect.word and expect.word.encode() not in body:
            return f"the page does not say {expect.word!r}"
    return None


def automatic_options(response, caller: Caller, rule: str) -> bool:
    """True for Flask's own OPTIONS answer: 200, no body, Allow naming the methods of every rule on this path."""
    methods = {m for r in caller.client.application.url_map.iter_rules() if r.rule == rule for m in r.methods}
    return (response.status_code == 200 and not response.get_data()
            and set(response.headers.get("Allow", "").split(", ")) == methods)


# --- The world: real values for the URL rules, and a snapshot of everything a request could change ----

class World:
    """The values the URL rules are filled with: a listed backup, a finished job, a spare token to revoke."""

    def __init__(self, app):
        self.app = app
        with app.app_context():
            self.values = {"backup": BackupService().create("manual", "admin")["filename"]}
        api = app.test_client()
        with app.app_context():
            owner = db.session.execute(db.select(User).filter_by(username="admin")).scalar_one()
            api.environ_base["HTTP_AUTHORIZATION"] = "Bearer " + issue_api_token(owner, name="world")
        started = api.post(f"/admin/verify-backup/{self.values['backup']}", data={"wait": "0"})
        self.values["job"] = wait_for_job(api, {}, started.get_json()["job"]["id"])["id"]
        self.values["token_id"] = self.fresh("token_id")

    def fresh(self, kind: str) -> str:
        """A new listed backup, or a new spare admin token's id."""
        with self.app.app_context():
            if kind == "backup":
                return BackupService().create("manual", "admin")["filename"]
            owner = db.session.execute(db.select(User).filter_by(username="admin")).scalar_one()
            issue_api_token(owner, name="spare")
            return str(db.session.execute(db.select(sa.func.max(ApiToken.id))).scalar_one())

    def request(self, rule: str, method: str, caller: Caller, values: dict | None = None):
        """Send ``method`` on ``rule`` as ``caller`` with the route's fields (CSRF token and password as a
        browser would add them); returns the path sent and the response."""
        values = values or self.values
        route = ROUTES[rule]
        path = route.path.format(**values)
        fields = {k: v.format(**values) for k, v in route.fields.get(method, {}).items()}
        if method == "POST":
            if caller.kind != "token" and caller.sends_csrf:
                fields["csrf_token"] = caller.csrf()
            if rule == "/admin/restore-backup" and caller.kind != "token":
                fields["password"] = ADMIN_PASSWORD if caller.kind == "admin" else USER_PASSWORD
        response = caller.client.open(path, method=method, headers=caller.headers(), data=fields or None,
                                      buffered=True)
        response.close()
        return path, response

    def snapshot(self) -> dict:
        """Every row of every table (but when a token was last used) and every file of the backup store."""
        with self.app.app_context():
            tables = {}
            with db.engine.connect() as conn:
                for table in db.metadata.sorted_tables:
                    columns = [c for c in table.c if not (table.name == "api_tokens" and c.name == "last_used_at")]
                    tables[table.name] = sorted(map(tuple, conn.execute(sa.select(*columns))), key=repr)
            store = self.app.config["BACKUP_DIRECTORY"]
        files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in Path(store).iterdir() if p.is_file()}
        return {"tables": tables, "files": files}


def changes(before: dict, after: dict) -> list[str]:
    """What differs between two snapshots, in words."""
    changed = [f"table {name}" for name in before["tables"] if before["tables"][name] != after["tables"][name]]
    return changed + ([f"backup store: {sorted(set(before['files']) ^ set(after['files']))}"]
                      if before["files"] != after["files"] else [])


def test_every_route_method_and_caller_gets_what_the_contract_says(app, admin_user, plain_user):
    assert not unclassified(app), "routes no one has classified in ROUTES: " + ", ".join(unclassified(app))
    world = World(app)
    callers = make_callers(app)
    pairs = matrix_pairs(app)
    # The whole matrix takes a few seconds, so CI and `make reliability` both run all of it.
    cells = [(rule, method, caller) for rule, method in pairs for caller in callers]
    refused = [c for c in cells if not expected(*c).allowed]
    allowed = [c for c in cells if expected(*c).allowed]
    wrong, leaks, side_effects = [], [], []

    # The refusals first, one rule at a time, with a snapshot around each rule's requests.
    by_rule: dict[str, list] = {}
    for cell in refused:
        by_rule.setdefault(cell[0], []).append(cell)
    for rule, group in by_rule.items():
        before = world.snapshot()
        for _, method, caller in group:
            expect = expected(rule, method, caller)
            path, response = world.request(rule, method, caller)
            problem = judge(response, expect, rule, method, path, caller)
            if problem:
                wrong.append(f"{method} {path} as {caller.name}: {problem}")
                if through(response):  # an OPTIONS judged wrong ran more than Flask's own answer
                    leaks.append(f"{method} {path} as {caller.name}: {response.status_code}")
        changed = changes(before, world.snapshot())
        if changed:
            side_effects.append(f"refused requests to {rule} changed {', '.join(changed)}")

    # Then the control: each allowed request gets through.
    for rule, method, caller in allowed:
        values = dict(world.values)
        if rule in DESTROYS:
            values[DESTROYS[rule]] = world.fresh(DESTROYS[rule])
        path, response = world.request(rule, method, caller, values)
        problem = judge(response, ALLOWED, rule, method, path, caller)
        if problem:
            wrong.append(f"{method} {path} as {caller.name}: {problem}")
        if rule == "/auth/logout":
            caller.relogin()

    routes = len({rule for rule, _ in pairs})
    losses = len(leaks) + len(side_effects)
    record("authz-matrix", cases=len(cells), losses=losses,
           measured=f"{len(cells)} requests: {routes} routes, {len(pairs)} route × method pairs × {len(callers)} "
                    f"callers ({len(refused)} refused, {len(allowed)} allowed); {len(leaks)} leaks, "
                    f"{len(side_effects)} refused routes with side effects")
    assert losses == 0, "\n".join(leaks + side_effects)
    assert not wrong, f"{len(wrong)} of {len(cells)} requests off the contract:\n" + "\n".join(wrong[:60])


def test_a_route_nobody_classified_fails_the_matrix(tmp_path):
    app = build_app(tmp_path)
    app.add_url_rule("/admin/brand-new-report", "brand_new_report", lambda: jsonify(ok=True), methods=["GET", "POST"])
    app.add_url_rule("/brand-new-page", "brand_new_page", lambda: "hello")
    app.add_url_rule("/admin/backup-schedule", "schedule_put", lambda: "", methods=["PUT"])
    assert sorted(unclassified(app)) == ["GET /admin/brand-new-report", "GET /brand-new-page",
                                         "POST /admin/brand-new-report", "PUT /admin/backup-schedule"]
    with app.app_context():
        db.engine.dispose()
