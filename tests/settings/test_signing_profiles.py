"""Signing profiles over HTTP: CRUD with audit, and sign requests that name one."""

import io
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pyhanko.pdf_utils.reader import PdfFileReader
from sqlalchemy.orm import Session, sessionmaker

from app.core.security import PasswordHasher
from tests.certificates.pki import Issued, make_ca
from tests.factories import assert_problem, audit_events, bearer, login, make_user
from tests.signing.test_sign_api import DOCS, Signer, alice, content, upload

__all__ = ["alice"]  # the signer fixture, shared from tests/signing

PROFILES = "/api/v1/signing-profiles"
CONTRACTS = {
    "name": "contracts",
    "description": "Certified, stamped on page 2",
    "certify": "no_changes",
    "appearance": {"page": 2, "box": [40, 50, 240, 110], "text": "For %(signer)s"},
}


@pytest.fixture(scope="module")
def ca() -> Issued:
    return make_ca("Profiles Test CA")


def create(client: TestClient, headers: dict[str, str], **body: Any) -> Any:
    response = client.post(PROFILES, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def test_crud_is_audited(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    created = create(client, admin_headers, **CONTRACTS)
    assert (created["level"], created["certify"], created["tsa_url"]) == (
        None,
        "no_changes",
        None,
    )
    url = f"{PROFILES}/{created['id']}"
    assert client.get(url, headers=admin_headers).json() == created
    assert_problem(
        client.post(PROFILES, json=CONTRACTS, headers=admin_headers),
        409,
        "signing_profile_name_taken",
    )
    replaced = client.put(
        url, json={**CONTRACTS, "level": "B-B"}, headers=admin_headers
    ).json()
    assert (replaced["level"], replaced["certify"]) == ("B-B", "no_changes")
    listed = client.get(PROFILES, params={"q": "contr"}, headers=admin_headers).json()
    assert [p["id"] for p in listed["data"]] == [created["id"]]
    assert client.delete(url, headers=admin_headers).status_code == 204
    assert_problem(
        client.get(url, headers=admin_headers), 404, "signing_profile_not_found"
    )
    events = audit_events(session_factory, resource_type="signing_profile")
    assert [e.action for e in events] == [
        "signing_profile.created",
        "signing_profile.updated",
        "signing_profile.deleted",
    ]
    assert events[1].details == {"before": {"level": None}, "after": {"level": "B-B"}}


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {"name": "a/b"},
        {"name": "x", "level": "B-Z"},
        {"name": "x", "certify": "always"},
        {"name": "x", "appearance": {"page": 1, "box": [0, 0, 9, 9], "text": "%(x)s"}},
    ],
)
def test_invalid_profiles_are_422(
    client: TestClient, admin_headers: dict[str, str], body: dict[str, Any]
) -> None:
    assert_problem(
        client.post(PROFILES, json=body, headers=admin_headers),
        422,
        "validation_failed",
    )


def test_a_sign_request_naming_a_profile_takes_its_options(
    client: TestClient, admin_headers: dict[str, str], alice: Signer
) -> None:
    create(client, admin_headers, **CONTRACTS)
    document = upload(client, alice.headers)
    response = client.post(
        f"{DOCS}/{document['id']}/sign",
        json={"certificate_id": alice.certificate_id, "profile": "contracts"},
        headers=alice.headers,
    )
    assert response.status_code == 201, response.text
    signature = response.json()
    assert (signature["certified"], signature["level"]) == ("no_changes", "B-B")
    reader = PdfFileReader(io.BytesIO(content(client, alice.headers, document["id"])))
    page2 = reader.root["/Pages"]["/Kids"][1].get_object()
    [widget] = [a.get_object() for a in page2["/Annots"]]
    assert [float(v) for v in widget["/Rect"]] == [40.0, 50.0, 240.0, 110.0]
    # What the request spells out wins over the profile.
    plain = upload(client, alice.headers)
    overridden = client.post(
        f"{DOCS}/{plain['id']}/sign",
        json={
            "certificate_id": alice.certificate_id,
            "profile": "contracts",
            "certify": "form_filling",
        },
        headers=alice.headers,
    )
    assert overridden.json()["certified"] == "form_filling"


def test_an_unknown_profile_is_422_and_signs_nothing(
    client: TestClient, alice: Signer
) -> None:
    document = upload(client, alice.headers)
    refused = client.post(
        f"{DOCS}/{document['id']}/sign",
        json={"certificate_id": alice.certificate_id, "profile": "missing"},
        headers=alice.headers,
    )
    assert_problem(refused, 422, "unknown_signing_profile")
    listed = client.get(f"{DOCS}/{document['id']}/signatures", headers=alice.headers)
    assert listed.json() == []


def test_signers_see_the_profiles_they_may_name_but_not_their_settings(
    client: TestClient,
    admin_headers: dict[str, str],
    alice: Signer,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    create(client, admin_headers, **CONTRACTS)
    create(
        client,
        admin_headers,
        name="archive",
        level="B-LTA",
        tsa_url="https://tsa.internal/",
    )

    choices = client.get(f"{PROFILES}/choices", headers=alice.headers)

    assert choices.status_code == 200, choices.text
    assert choices.json() == [
        {"name": "archive", "description": "", "level": "B-LTA", "certify": None},
        {
            "name": "contracts",
            "description": CONTRACTS["description"],
            "level": None,
            "certify": "no_changes",
        },
    ]
    # The profiles themselves (TSA, stamp) stay with settings:read.
    assert_problem(client.get(PROFILES, headers=alice.headers), 403, "forbidden")
    auditor = bearer(
        login(
            client,
            make_user(session_factory, hasher, username="audra", roles=("auditor",)),
        )["access_token"]
    )
    assert_problem(client.get(f"{PROFILES}/choices", headers=auditor), 403, "forbidden")
