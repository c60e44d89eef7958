"""Fuzzed uploads to ``POST /admin/restore-backup``: never a 500, and a refusal never changes anything.

Hypothesis builds each case from the sample archive of ``support.archives``: its
ZIP bytes mutated, its member names changed, its JSON replaced or edited (tables,
rows, columns, value types), its metadata, checksums and signature altered. Most
edits are re-checksummed and re-signed with the instance's key, so the case gets
past the integrity checks into the parser and the restore planner. Each case is
posted as an admin script does (Bearer token, ``wait=1``) as a dry run or a real
merge or replace, sometimes with ``trust_unsigned=1``.

A case is lost when the answer is a 500 or any status outside the contract's
(200, 400, 413, 422), when a 4xx is not ``{"error": "..."}``, or when the data
tables, the API tokens or the backup list changed although the answer was a
refusal or a preview. Failures are collected, not raised at the first one, so the
row counts them; the test then fails if there was any.
"""
from __future__ import annotations

import io
import json
import warnings
import zipfile

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.backup.archive import format
from app.backup.provenance import schema_revision
from app.cli import create_account
from app.extensions import db
from app.security import issue_api_token
from support.app import build_app
from support.archives import build_archive, data_bytes, default_app_info, sample_tables, sha256, snapshot
from support.backup import archive_members
from support.reliability import count, record
from support.restoring import backup_names, restore_upload

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

CONTRACT_STATUSES = {200, 400, 413, 422}
TABLES = list(sample_tables())
COLUMNS = sorted({column for rows in sample_tables().values() for row in rows for column in row})
OTHER_KEY = b"another-instance-signing-key-0123456789"

# JSON values of every type, the awkward ones included (huge ints, NaN, deep nesting, odd unicode).
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63 - 2, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.sampled_from(["", "2025-01-02T03:04:05+00:00", "2025-13-45T99:99:99", "2025-01-02", "0", "-1", "true",
                     "\x00", "\ud7ff\ue000", "a" * 5000, "1e309", "NaN"]),
)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=12)
names = st.one_of(st.sampled_from(TABLES + COLUMNS + ["id", "", "sqlite_master", "api_tokens", "alembic_version",
                                                      "users; DROP TABLE users", "Users", "users\x00"]),
                  st.text(max_size=20))


def dumps(value) -> bytes:
    """JSON as Python writes it: NaN and Infinity come out as the bare words (not JSON), huge ints as digits."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


@st.composite
def edited_tables(draw) -> dict:
    """The sample tables after a few edits: values of another type, columns and rows added or removed,
    tables that are not lists, unknown tables, missing tables."""
    tables = sample_tables()
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["value", "value", "value", "drop-column", "add-column", "drop-row",
                                     "copy-row", "not-a-list", "not-a-row", "add-table", "drop-table"]))
        table = draw(st.sampled_from(sorted(tables))) if tables else None
        rows = tables.get(table) if table else None
        if kind == "add-table" or table is None:
            tables[draw(names)] = draw(st.lists(st.dictionaries(names, json_values, max_size=4), max_size=3))
        elif kind == "drop-table":
            del tables[table]
        elif kind == "not-a-list":
            tables[table] = draw(json_values)
        elif not isinstance(rows, list) or not rows:
            continue
        else:
            index = draw(st.integers(0, len(rows) - 1))
            row = rows[index]
            if kind == "drop-row":
                del rows[index]
            elif not isinstance(row, dict):  # an earlier edit made it something else
                rows[index] = draw(json_values)
            elif kind == "copy-row":
                rows.append(dict(row))
            elif kind == "not-a-row":
                rows[index] = draw(json_values)
            elif kind == "drop-column" and row:
                del row[draw(st.sampled_from(sorted(row)))]
            elif kind == "add-column":
                row[draw(names)] = draw(json_values)
            elif row:
                row[draw(st.sampled_from(sorted(row)))] = draw(json_values)
    return tables


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    """A ZIP of these members, duplicate names included (zipfile warns about those and writes them)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, content in members:
                zf.writestr(name, content)
    return buffer.getvalue()


class Cases:
    """Builds the fuzzed uploads for one app (its signing key and schema revision) in a scratch directory."""

    def __init__(self, scratch, key: bytes, revision: str):
        self.scratch, self.key, self.revision = scratch, key, revision
        self.good = build_archive(scratch / "good.zip", key=key, schema_revision=revision).read_bytes()
        self.members = archive_members(self.good)

    def signed(self, draw, tables=None, *, data=None, **changes) -> bytes:
        """An archive of ``tables`` (or raw ``data``), checksummed; signed with our key, another or none."""
        key = draw(st.sampled_from([self.key, self.key, self.key, OTHER_KEY, None]))
        layout = draw(st.sampled_from(["lines", "pretty", "compact", "shuffled"]))
        if data is None:
            try:
                data = data_bytes(tables, layout)
            except (TypeError, ValueError, AttributeError):  # huge ints, rows that are not objects: use json
                data = dumps(tables)
        counted = tables if isinstance(tables, dict) and all(isinstance(v, list) for v in tables.values()) else {}
        try:
            path = build_archive(self.scratch / "case.zip", counted, key=key, schema_revision=self.revision,
                                 data=data, **changes)
        except (TypeError, ValueError):  # metadata orjson cannot write (a huge int): sign it by hand
            return self.by_hand(changes.get("metadata_changes") or {}, data=data)
        return path.read_bytes()

    def strategy(self):
        return st.one_of(self.mutated_bytes(), self.renamed_members(), self.edited_rows(), self.raw_data(),
                         self.edited_metadata(), self.broken_integrity())

    def mutated_bytes(self):
        """The valid archive with a few bytes changed, inserted, removed, or the file cut short."""
        @st.composite
        def build(draw):
            data = bytearray(self.good)
            for _ in range(draw(st.integers(1, 6))):
                if not data:
                    break
                at = draw(st.integers(0, len(data) - 1))
                kind = draw(st.sampled_from(["set", "set", "insert", "delete", "truncate"]))
                if kind == "set":
                    data[at] = draw(st.integers(0, 255))
                elif kind == "insert":
                    data[at:at] = draw(st.binary(min_size=1, max_size=16))
                elif kind == "delete":
                    del data[at:at + draw(st.integers(1, 16))]
                elif at > 0:
                    del data[at:]
            return bytes(data)
        return build()

    def renamed_members(self):
        """The right contents under other names: renamed, doubled, missing, extra, unsafe names."""
        unsafe = st.sampled_from(["../database_backup.json", "/etc/passwd", "a/../../x", "C:\\x.json",
                                  "database_backup.json\x00", "DATABASE_BACKUP.JSON", "./app_info.json",
                                  "backup_metadata.json/", "\u2024\u2024/x", ""])

        @st.composite
        def build(draw):
            members = list(self.members.items())
            for _ in range(draw(st.integers(1, 3))):
                kind = draw(st.sampled_from(["rename", "double", "drop", "extra"]))
                index = draw(st.integers(0, len(members) - 1)) if members else None
                if kind == "rename" and members:
                    members[index] = (draw(st.one_of(unsafe, names)), members[index][1])
                elif kind == "double" and members:
                    members.append(members[index])
                elif kind == "drop" and members:
                    del members[index]
                else:
                    members.append((draw(st.one_of(unsafe, names)), draw(st.binary(max_size=64))))
            try:
                return _zip(members)
            except (ValueError, IndexError, UnicodeEncodeError):  # a name zipfile cannot write: the plain archive then
                return self.good
        return build()

    def edited_rows(self):
        """Rows edited (types, columns, rows, tables), re-checksummed and signed: reaches the planner."""
        @st.composite
        def build(draw):
            return self.signed(draw, draw(edited_tables()))
        return build()

    def raw_data(self):
        """A data member of any JSON (or not JSON at all), re-checksummed and signed."""
        @st.composite
        def build(draw):
            data = draw(st.one_of(
                json_values.map(dumps),
                st.dictionaries(names, json_values, max_size=4).map(dumps),
                st.binary(max_size=200),
                st.sampled_from([b"", b"{", b"[" * 5000 + b"]" * 5000, b'{"users": [' + b"[" * 100_000,
                                 b"\xef\xbb\xbf{}", b'{"users": []}\x00', b'{"users": [], "users": []}',
                                 "{\"users\": [{\"id\": 1, \"username\": \"\ud800\"}]}".encode("utf-8",
                                                                                             "surrogatepass")]),
            ))
            return self.signed(draw, sample_tables(), data=data)
        return build()

    def edited_metadata(self):
        """Metadata fields changed, removed or of another type, then signed (or not)."""
        fields = ["format_version", "created_at", "created_by", "trigger", "tables", "record_counts",
                  "total_records", "schema_revision", "database_dialect", "duration_seconds", "checksums"]

        @st.composite
        def build(draw):
            changes = draw(st.dictionaries(st.one_of(st.sampled_from(fields), names), json_values, max_size=3))
            removals = tuple(draw(st.lists(st.sampled_from(fields), max_size=2)))
            app_info = draw(st.one_of(st.none(), st.dictionaries(names, json_values, max_size=4),
                                      st.just({**default_app_info(), "app_name": "Other"})))
            return self.signed(draw, sample_tables(), data=None, metadata_changes=changes,
                               metadata_removals=removals, app_info=app_info or None)
        return build()

    def by_hand(self, changes: dict, data: bytes | None = None) -> bytes:
        """The good archive with ``changes`` to its metadata (and ``data``), written with ``json``, signed
        with our key when orjson can canonicalise it (else with its old signature removed)."""
        members = dict(self.members)
        if data is not None:
            members[format.DATA_MEMBER] = data
        metadata = orjson.loads(members[format.METADATA_MEMBER])
        metadata.update(changes)
        metadata.pop("signature", None)
        try:
            metadata["signature"] = format.sign_metadata(metadata, self.key)
        except (TypeError, ValueError):
            pass
        members[format.METADATA_MEMBER] = dumps(metadata)
        return _zip(list(members.items()))

    def broken_integrity(self):
        """Checksums and signatures that are wrong, malformed, missing or of another type."""
        bad = st.one_of(st.sampled_from(["", "sha256:", "sha256:" + "0" * 64, "md5:abc", "sha256:ZZ", "hmac-sha256:",
                                         "hmac-sha256:" + "0" * 64]), json_values)

        @st.composite
        def build(draw):
            data = data_bytes(sample_tables())
            which = draw(st.sampled_from(["data-checksum", "app-checksum", "checksums", "signature", "tamper"]))
            if which == "tamper":
                return self.signed(draw, sample_tables(), data=data,
                                   change_data=lambda raw: raw.replace(b"admin@example.com", b"evil@example.com"))
            if which == "signature":
                members = dict(self.members)
                metadata = orjson.loads(members[format.METADATA_MEMBER])
                metadata["signature"] = draw(bad)
                members[format.METADATA_MEMBER] = dumps(metadata)
                return _zip(list(members.items()))
            checksums = {format.DATA_MEMBER: sha256(data), format.APP_INFO_MEMBER: sha256(b"")}
            if which == "data-checksum":
                checksums[format.DATA_MEMBER] = draw(bad)
            elif which == "app-checksum":
                checksums[format.APP_INFO_MEMBER] = draw(bad)
            else:
                checksums = draw(json_values)
            return self.signed(draw, sample_tables(), data=data, metadata_changes={"checksums": checksums})
        return build()


requests = st.fixed_dictionaries({
    "mode": st.sampled_from(["merge", "replace"]),
    "dry_run": st.booleans(),
    "trust_unsigned": st.sampled_from([None, None, "1"]),
    "on_conflict": st.sampled_from([None, None, "overwrite"]),
})


class Fuzzer:
    """Posts cases to one app as an admin script and collects what went wrong."""

    def __init__(self, app):
        self.app, self.client, self.failures, self.ran, self.statuses = app, app.test_client(), [], 0, {}
        self.admins = 0
        self.headers = self.new_admin()

    def new_admin(self) -> dict:
        """Headers of a fresh admin account's token (a real restore may remove or demote the last one)."""
        self.admins += 1
        with self.app.app_context():
            user = create_account(f"fuzzadmin{self.admins}", f"fuzzadmin{self.admins}@fuzz.test",
                                  "fuzz-admin-password-1", is_admin=True)
            return {"Authorization": f"Bearer {issue_api_token(user)}"}

    def state(self):
        return snapshot(self.app), backup_names(self.app)

    def post(self, archive: bytes, options: dict) -> None:
        self.ran += 1
        fields = {k: v for k, v in options.items() if v is not None and k != "dry_run" and
                  not (k == "on_conflict" and options["mode"] != "merge")}
        if options["dry_run"]:
            fields["dry_run"] = "1"
        before = self.state()
        response = restore_upload(self.client, self.headers, archive, **fields)
        status = response.status_code
        self.statuses[status] = self.statuses.get(status, 0) + 1
        body = response.get_json(silent=True)
        problem = None
        if status not in CONTRACT_STATUSES:
            problem = f"status {status}"
        elif status >= 400 and not (isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]):
            problem = f"status {status} without a JSON error"
        elif (status >= 400 or options["dry_run"]) and self.state() != before:
            problem = f"status {status} ({'preview' if status < 400 else 'refusal'}) but the database changed"
        if problem:
            self.failures.append(f"{problem}; options {options}; answer {response.get_data(as_text=True)[:300]!r}")
        if status == 200 and not options["dry_run"] and self.client.get(
                "/admin/backup-jobs/none", headers=self.headers).status_code != 404:
            self.headers = self.new_admin()  # the restore took our admin away: the next case needs one


def fuzz(app, tmp_path, examples: int) -> Fuzzer:
    """Run ``examples`` Hypothesis cases against ``app``; returns the fuzzer with its counts and failures."""
    with app.app_context():
        cases = Cases(tmp_path, format.signing_key(app.config), schema_revision(app))
    fuzzer = Fuzzer(app)

    @settings(max_examples=examples, derandomize=True, deadline=None, database=None, print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(archive=cases.strategy(), options=requests)
    def run(archive, options):
        fuzzer.post(archive, options)

    run()
    return fuzzer


def report(fuzzer: Fuzzer, database: str) -> int:
    losses = len(fuzzer.failures)
    statuses = ", ".join(f"{n}×{s}" for s, n in sorted(fuzzer.statuses.items()))
    record("fuzz-archives", cases=fuzzer.ran, losses=losses,
           measured=f"{database}: {fuzzer.ran} uploads ({statuses}); {losses} a 500, off-contract "
                    "or changing the database on a refusal or preview")
    return losses


def test_fuzzed_archives_never_get_a_500_and_refusals_change_nothing_on_sqlite(app, tmp_path):
    fuzzer = fuzz(app, tmp_path, count(ci=150, full=2000))
    assert report(fuzzer, "SQLite") == 0, "\n".join(fuzzer.failures[:20])
    assert fuzzer.statuses.get(200), "no case got through to a restore: the fuzz never reached the planner"


@pytest.mark.postgres
def test_fuzzed_archives_never_get_a_500_and_refusals_change_nothing_on_postgresql(postgres_url, tmp_path):
    app = build_app(tmp_path, postgres_url)
    try:
        fuzzer = fuzz(app, tmp_path, count(ci=25, full=200))
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    assert report(fuzzer, "PostgreSQL") == 0, "\n".join(fuzzer.failures[:20])
