"""Schemathesis fuzzes every operation of ``/admin/api/openapi.json`` against the app in-process.

Each operation gets a throwaway instance (the ``app`` fixture: its own SQLite
database and backup directory, holding one listed backup), so the destructive
operations (restore, delete, schedule save, token revoke) break nothing another
operation's cases see. Cases (valid and invalid data alike) go through WSGI with
an admin's Bearer token and are checked for: no 5xx, a status the document
lists, and a body that fits the documented schema. Hypothesis is derandomised
and bounded, so CI sends the same cases each run.

Schemathesis's own pytest integration (``from_fixture`` + ``parametrize``) reads
``request.node._nodeid``, which pytest 9 no longer has, so the test drives
Schemathesis's Hypothesis strategies (``APIOperation.as_strategy``) itself.
"""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from app.backup.web.openapi import OPERATIONS
from support.web import JSON

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
EXAMPLES = 30  # per operation


@pytest.fixture
def listed_backup(app, api_headers) -> str:
    """The filename of a backup the throwaway app lists."""
    made = app.test_client().post("/admin/create-backup", data={"wait": "1"}, headers=api_headers)
    assert made.status_code == 201, made.get_data(as_text=True)
    return made.get_json()["backup"]["filename"]


@pytest.fixture
def api_schema(app, api_headers):
    """The app's own OpenAPI document, loaded by Schemathesis, calling the app through WSGI."""
    config = schemathesis.Config.from_dict({"seed": 16, "generation": {"deterministic": True}})
    return schemathesis.openapi.from_wsgi("/admin/api/openapi.json", app, config=config, headers=api_headers)


def cases_of(operation, listed_backup: str):
    """Valid and invalid cases of ``operation``; some name the listed backup, so the success answers are fuzzed too."""
    modes = [operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)]
    if any(parameter.name == "filename" for parameter in operation.path_parameters):
        modes.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters={"filename": listed_backup}))
    if operation.path == "/admin/restore-backup":  # random fields never confirm: add the real restores
        modes += [operation.as_strategy(body={"filename": listed_backup, "mode": mode, "confirm": mode, **extra},
                                        media_type="application/json")
                  for mode in ("merge", "replace") for extra in ({"dry_run": "1"}, {"wait": "1"}, {})]
    return st.one_of(modes)


@pytest.mark.parametrize("operation_id", sorted(OPERATIONS))
def test_no_operation_answers_a_5xx_or_breaks_its_schema(api_schema, api_headers, listed_backup, operation_id):
    # A script asks for JSON: a case Schemathesis sends without the token must get the JSON 401, not the login page.
    headers = {**api_headers, **JSON}
    operation = api_schema.find_operation_by_id(operation_id)

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(case=cases_of(operation, listed_backup))
    def fuzz(case):
        # buffered: the test client reads and closes each answer (a download's open file too).
        case.call_and_validate(headers=headers, checks=CHECKS, buffered=True)

    fuzz()
