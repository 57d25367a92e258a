"""Installing, reading and downloading the licence over HTTP."""

import base64
import json
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.audit.service import SYSTEM
from app.core.config import Settings, SettingsError, load_settings
from app.core.security import PasswordHasher
from app.core.types import utcnow
from app.license import service as license_service
from app.license.errors import LicenseInvalid
from app.license.service import Capacity
from app.main import create_app
from tests.factories import (
    Credentials,
    assert_problem,
    audit_events,
    bearer,
    login,
    make_user,
)
from tests.license.conftest import make_license, public_key_text

LICENSE = "/api/v1/license"


def install(
    client: TestClient, headers: dict[str, str], content: bytes
) -> dict[str, object]:
    response = client.post(
        LICENSE,
        content=content,
        headers={**headers, "Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_fresh_server_is_in_evaluation_mode(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    status = client.get(LICENSE, headers=admin_headers).json()
    assert status["state"] == "evaluation"
    assert status["license_id"] is None
    assert status["days_left"] in (29, 30)
    assert status["limits"] == {
        "users": 25,
        "certificates": 25,
        "signatures_per_month": None,
        "signatures_total": 500,
    }
    assert status["features"] == ["batch", "ltv", "pkcs11"]
    assert "evaluation" in status["detail"]
    usage = client.get(f"{LICENSE}/usage", headers=admin_headers).json()
    assert usage["state"] == "evaluation"
    assert usage["period"] == utcnow().strftime("%Y-%m")
    assert usage["users"] == {"used": 1, "limit": 25, "remaining": 24}
    assert usage["certificates"] == {"used": 0, "limit": 25, "remaining": 25}
    assert usage["signatures_total"] == {"used": 0, "limit": 500, "remaining": 500}
    assert usage["signatures_this_month"] == {
        "used": 0,
        "limit": None,
        "remaining": None,
    }
    assert usage["months"] == []


def test_valid_licence_is_installed_audited_and_downloadable(
    client: TestClient,
    admin_headers: dict[str, str],
    issuer: Ed25519PrivateKey,
    session_factory: sessionmaker[Session],
) -> None:
    content = make_license(
        issuer, license_id="lic-1", users=10, signatures_per_month=1000
    )
    status = install(client, admin_headers, content)
    assert status["state"] == "valid"
    assert (status["license_id"], status["licensee"]) == ("lic-1", "Acme Ltd")
    assert status["installed_by"] == "admin"
    assert status["days_left"] == 364
    assert status["limits"] == {
        "users": 10,
        "certificates": None,
        "signatures_per_month": 1000,
        "signatures_total": None,
    }
    assert client.get(LICENSE, headers=admin_headers).json() == status
    [event] = audit_events(session_factory, "license.installed")
    assert event.resource_id == "lic-1"
    assert event.details["replaced"] is None
    assert event.actor_name == "admin"

    raw = client.get(f"{LICENSE}/file", headers=admin_headers)
    assert raw.status_code == 200
    assert raw.content == content
    assert "attachment" in raw.headers["content-disposition"]
    wrapped = client.get(f"{LICENSE}/file?format=base64", headers=admin_headers)
    assert base64.b64decode(wrapped.json()["license_base64"]) == content


def test_licence_can_be_uploaded_as_multipart_or_base64_json(
    client: TestClient,
    admin_headers: dict[str, str],
    issuer: Ed25519PrivateKey,
    session_factory: sessionmaker[Session],
) -> None:
    first = make_license(issuer, license_id="by-multipart")
    response = client.post(
        LICENSE, files={"file": ("signvault.license", first)}, headers=admin_headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["license_id"] == "by-multipart"

    second = make_license(issuer, license_id="by-base64")
    response = client.post(
        LICENSE,
        json={"license_base64": base64.b64encode(second).decode()},
        headers=admin_headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["license_id"] == "by-base64"

    third = make_license(issuer, license_id="as-json")
    response = client.post(
        LICENSE,
        content=third,
        headers={**admin_headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["license_id"] == "as-json"
    replaced = [
        e.details["replaced"]
        for e in audit_events(session_factory, "license.installed")
    ]
    assert replaced == [None, "by-multipart", "by-base64"]


def _tampered(issuer: Ed25519PrivateKey) -> bytes:
    document = json.loads(make_license(issuer, users=5))
    document["payload"]["limits"]["users"] = 5000
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (_tampered, "license_signature_invalid"),
        (
            lambda _issuer: make_license(Ed25519PrivateKey.generate()),
            "license_wrong_issuer",
        ),
        (lambda _issuer: b"this is not a licence", "license_malformed"),
        (lambda _issuer: b"", "license_malformed"),
        (
            lambda issuer: make_license(
                issuer,
                valid_from=utcnow() - timedelta(days=400),
                valid_until=utcnow() - timedelta(days=1),
            ),
            "license_already_expired",
        ),
        (
            lambda issuer: make_license(
                issuer, valid_from=utcnow() + timedelta(days=3)
            ),
            "license_not_yet_valid",
        ),
    ],
)
def test_bad_licence_file_is_refused_and_the_licence_in_force_stays(
    client: TestClient,
    admin_headers: dict[str, str],
    issuer: Ed25519PrivateKey,
    session_factory: sessionmaker[Session],
    make: object,
    code: str,
) -> None:
    install(client, admin_headers, make_license(issuer, license_id="in-force"))
    assert callable(make)
    bad: bytes = make(issuer)
    response = client.post(
        LICENSE,
        content=bad,
        headers={**admin_headers, "Content-Type": "application/octet-stream"},
    )
    assert_problem(response, 422, code)
    status = client.get(LICENSE, headers=admin_headers).json()
    assert (status["state"], status["license_id"]) == ("valid", "in-force")
    [refusal] = audit_events(session_factory, "license.install_refused")
    assert refusal.outcome == "failure"
    assert refusal.details["code"] == code
    assert refusal.actor_name == "admin"


def test_base64_field_that_is_not_base64_is_a_validation_problem(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = client.post(
        LICENSE, json={"license_base64": "%%%"}, headers=admin_headers
    )
    body = assert_problem(response, 422, "validation_failed")
    assert body["invalid_params"][0]["name"] == "license_base64"
    missing_file = client.post(
        LICENSE, files={"other": ("x", b"1")}, headers=admin_headers
    )
    assert_problem(missing_file, 422, "validation_failed")


def test_download_without_a_licence_is_404(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    assert_problem(
        client.get(f"{LICENSE}/file", headers=admin_headers),
        404,
        "license_not_installed",
    )


def test_reading_needs_license_read_and_installing_license_write(
    client: TestClient,
    admin: Credentials,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
    issuer: Ed25519PrivateKey,
) -> None:
    signer = make_user(session_factory, hasher, username="sam")
    headers = bearer(login(client, signer)["access_token"])
    assert_problem(client.get(LICENSE, headers=headers), 403, "forbidden")
    assert_problem(client.get(f"{LICENSE}/usage", headers=headers), 403, "forbidden")
    response = client.post(
        LICENSE,
        content=make_license(issuer),
        headers={**headers, "Content-Type": "application/octet-stream"},
    )
    assert_problem(response, 403, "forbidden")


def test_bad_license_public_key_setting_stops_start_up_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SIGNVAULT_LICENSE_PUBLIC_KEY", "not-a-key")
    with pytest.raises(SettingsError, match="SIGNVAULT_LICENSE_PUBLIC_KEY"):
        load_settings()


def test_pem_public_key_setting_is_accepted(
    settings: Settings,
    issuer: Ed25519PrivateKey,
    admin: Credentials,
    tmp_path: Path,
) -> None:
    pem = (
        issuer.public_key()
        .public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        .decode()
    )
    app = create_app(settings.model_copy(update={"license_public_key": pem}))
    try:
        with TestClient(app) as client:
            headers = bearer(login(client, admin)["access_token"])
            assert install(client, headers, make_license(issuer))["state"] == "valid"
    finally:
        app.state.engine.dispose()


def test_licence_no_longer_verifying_is_invalid_and_refuses_gated_work(
    client: TestClient,
    admin_headers: dict[str, str],
    issuer: Ed25519PrivateKey,
    settings: Settings,
    admin: Credentials,
) -> None:
    install(client, admin_headers, make_license(issuer, license_id="ours"))
    # The operator switches to another issuer key: the stored file no longer verifies.
    other = create_app(
        settings.model_copy(
            update={"license_public_key": public_key_text(Ed25519PrivateKey.generate())}
        )
    )
    try:
        with TestClient(other) as other_client:
            headers = bearer(login(other_client, admin)["access_token"])
            status = other_client.get(LICENSE, headers=headers).json()
            assert status["state"] == "invalid"
            assert status["limits"] is None
            assert "another issuer" not in status["detail"]
            assert "trusts licences from key" in status["detail"]
            usage = other_client.get(f"{LICENSE}/usage", headers=headers).json()
            assert usage["users"]["limit"] == 0
            factory: sessionmaker[Session] = other.state.sessionmaker
            with factory() as session, pytest.raises(LicenseInvalid):
                license_service.check_capacity(session, Capacity.USERS, actor=SYSTEM)
    finally:
        other.state.engine.dispose()
