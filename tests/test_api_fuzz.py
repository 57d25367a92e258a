"""Schemathesis fuzzes every operation of the ASGI app: no 5xx, every answer as documented.

Three runs, each on its own database (SQLite or PostgreSQL, as the suite runs):
- the bootstrap administrator calls every operation but those that end or
  re-secure its own session (SESSION_ENDING);
- no credentials at all, a few examples per operation;
- SESSION_ENDING, each example with a fresh administrator of its own, and
  `{user_id}` aimed at that administrator (disable, lock, delete, reset it).

The seed is fixed and generation derandomized, so a run is repeatable; examples
are few (`FUZZ_EXAMPLES`) so that the three fit CI (README "Development").
"""

import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig
from schemathesis.core.transport import Response
from schemathesis.generation.case import Case
from schemathesis.schemas import BaseSchema
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from app.access.models import User, UserStatus
from app.core.security import PasswordHasher
from app.settings.models import SettingsSection
from tests.factories import bearer, login, make_user

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
SEED = 17
FUZZ_EXAMPLES = 20
ANONYMOUS_EXAMPLES = 2

# Operations that end, lock out or re-secure the caller's own session; the
# global security settings and password policy belong here too (2FA required
# of administrators, a rate limit of one a minute, a password already too old).
SESSION_ENDING = re.compile(
    r"^(POST /api/v1/auth/(logout|revoke|password|2fa/\w+)"
    r"|(PUT|PATCH) /api/v1/settings/(security|password-policy)"
    r"|POST /api/v1/users/\{user_id\}/(disable|lock|reset-password|2fa/disable)"
    r"|DELETE /api/v1/users/\{user_id\})$"
)

# Not fuzzed: sends mail to whatever SMTP host the fuzzer stored, a network call
# out of the test (tests/notifications/test_smtp_settings.py covers it against
# a local SMTP server).
NOT_FUZZED = re.compile(r"^POST /api/v1/notifications/smtp/test$")

# KNOWN OPEN: inputs that still answer 500 on this code; issue #17 names each,
# and another change fixes them. Such a 5xx is let through only for the input
# described. The lead deletes an entry once that fix is merged; the fuzzer then
# holds those inputs to "no 5xx" again.
BASE64_FIELDS = ("license_base64", "pkcs12_base64", "data_base64", "image_base64")


def _offset_beyond_int64(case: Case) -> bool:
    try:
        return int(str(case.query.get("offset"))) > 2**63 - 1
    except ValueError:
        return False


def _non_ascii_base64(case: Case) -> bool:
    def walk(value: Any) -> bool:
        if isinstance(value, dict):
            return any(
                (key in BASE64_FIELDS and isinstance(item, str) and not item.isascii())
                or walk(item)
                for key, item in value.items()
            )
        return isinstance(value, list) and any(walk(item) for item in value)

    return walk(case.body)


def _null_audit_setting(case: Case) -> bool:
    return (
        case.operation.label == "PUT /api/v1/audit-logs/settings"
        and isinstance(case.body, dict)
        and "audit_trail_enabled" in case.body
        and case.body["audit_trail_enabled"] is None
    )


KNOWN_OPEN: tuple[tuple[str, Callable[[Case], bool]], ...] = (
    ("offset above 2^63-1 on a list", _offset_beyond_int64),
    ("non-ASCII text in a base64 field", _non_ascii_base64),
    ("null for a non-nullable settings field", _null_audit_setting),
)


def _config(examples: int, *, coverage: bool = True) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {
                "max-examples": examples,
                "deterministic": True,
                "database": "none",
            },
            # Sequences of calls (links) are out of scope: each operation stands alone.
            "phases": {
                "coverage": {"enabled": coverage},
                "stateful": {"enabled": False},
            },
            "warnings": False,
        }
    )


@pytest.fixture(autouse=True)
def _nodeid_for_schemathesis(request: pytest.FixtureRequest) -> None:
    # schemathesis 4.32 (pytest.from_fixture) reads and renames `Function._nodeid`,
    # which pytest 9.2 no longer has; give it one to read. Drop when schemathesis does.
    request.node._nodeid = request.node.nodeid


@pytest.fixture
def api_schema(app: FastAPI) -> BaseSchema:
    return schemathesis.openapi.from_asgi(
        "/openapi.json", app, config=_config(FUZZ_EXAMPLES)
    )


@pytest.fixture
def anonymous_schema(app: FastAPI) -> BaseSchema:
    # Without credentials nearly every operation answers 401 before reading
    # its input: a few fuzzed examples each, no coverage phase.
    return schemathesis.openapi.from_asgi(
        "/openapi.json", app, config=_config(ANONYMOUS_EXAMPLES, coverage=False)
    )


def _ends_session(ctx: Any) -> bool:
    return SESSION_ENDING.match(ctx.operation.label) is not None


def _not_fuzzed(ctx: Any) -> bool:
    return NOT_FUZZED.match(ctx.operation.label) is not None


def _known_open(case: Case, response: Response) -> bool:
    return response.status_code == 500 and any(
        matches(case) for _reason, matches in KNOWN_OPEN
    )


def call_and_validate(case: Case, headers: dict[str, str]) -> None:
    response = case.call(headers=headers)
    if _known_open(case, response):
        return
    case.validate_response(response, checks=CHECKS, headers=headers)


api = schemathesis.pytest.from_fixture("api_schema").exclude(func=_not_fuzzed)
anonymous_api = schemathesis.pytest.from_fixture("anonymous_schema")


@api.exclude(func=_ends_session).parametrize()
def test_administrator_gets_documented_answers(
    case: Case, admin_headers: dict[str, str]
) -> None:
    call_and_validate(case, admin_headers)


@anonymous_api.parametrize()
def test_anonymous_caller_gets_documented_answers(case: Case) -> None:
    call_and_validate(case, {})


@api.include(func=_ends_session).parametrize()
def test_session_ending_operations_get_documented_answers(
    case: Case,
    client: TestClient,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    caller = make_user(
        session_factory,
        hasher,
        username=f"fuzz-{uuid.uuid4().hex[:12]}",
        roles=("administrator",),
    )
    tokens = login(client, caller)
    if _is_uuid(case.path_parameters.get("user_id")):
        case.path_parameters["user_id"] = str(caller.user_id)
    if isinstance(case.body, dict) and isinstance(case.body.get("token"), str):
        case.body["token"] = tokens["refresh_token"]
    try:
        call_and_validate(case, bearer(tokens["access_token"]))
    finally:
        # The next example's administrator meets the default policies and finds
        # a free seat: a disabled user holds none (licence capacity).
        with session_factory.begin() as session:
            session.execute(delete(SettingsSection))
            session.get_one(User, caller.user_id).status = UserStatus.DISABLED


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return value is not None


def test_openapi_documents_input_problems_on_every_route(app: FastAPI) -> None:
    """422 (parameters, body) and 400 (an unparseable body) are problem+json wherever they can occur."""
    document = app.openapi()
    undocumented = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            takes_body = "requestBody" in operation
            expected = {"400", "422"} if takes_body else set()
            if operation.get("parameters"):
                expected.add("422")
            for status in expected:
                content = operation["responses"].get(status, {}).get("content", {})
                if "application/problem+json" not in content:
                    undocumented.append(f"{method.upper()} {path} {status}")
    assert undocumented == []
