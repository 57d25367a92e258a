"""HSM keys over PKCS#11, against a private SoftHSM2 token."""

import uuid
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.main import create_app
from tests.certificates.conftest import acting_as, vault_of
from tests.certificates.pki import Issued, make_ca, make_signer
from tests.certificates.softhsm import SoftHsm, create_token, missing_reason
from tests.certificates.test_vault import verify
from tests.factories import Credentials, assert_problem, bearer, login

BASE = "/api/v1/certificates"


@pytest.fixture(scope="session")
def hsm_keys() -> dict[str, Issued]:
    ca = make_ca("HSM CA")
    return {
        "rsa-seal": make_signer(ca, cn="RSA Seal", key_type="rsa2048"),
        "ec-seal": make_signer(ca, cn="EC Seal", key_type="p256"),
        "stranger": make_signer(ca, cn="Stranger", key_type="p256"),
    }


@pytest.fixture(scope="session")
def softhsm(
    tmp_path_factory: pytest.TempPathFactory, hsm_keys: dict[str, Issued]
) -> SoftHsm:
    reason = missing_reason()
    if reason:
        print(f"SKIP PKCS#11 tests: {reason}")  # noqa: T201
        pytest.skip(reason)
    return create_token(
        tmp_path_factory.mktemp("softhsm"),
        {
            "rsa-seal": (hsm_keys["rsa-seal"], True),
            "ec-seal": (hsm_keys["ec-seal"], False),
            "stranger": (hsm_keys["stranger"], True),
        },
    )


@pytest.fixture
def hsm_app(settings: Settings, softhsm: SoftHsm) -> Iterator[FastAPI]:
    application = create_app(
        settings.model_copy(
            update={
                "pkcs11_module": softhsm.module,
                "pkcs11_pin": SecretStr(softhsm.pin),
            }
        )
    )
    yield application
    application.state.engine.dispose()


@pytest.fixture
def hsm_client(hsm_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(hsm_app) as client:
        yield client


def register(
    client: TestClient, headers: dict[str, str], **fields: str
) -> dict[str, object]:
    response = client.post(
        f"{BASE}/pkcs11",
        json={"token_label": "signvault-tests", **fields},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def test_rsa_key_in_the_token_is_registered_by_label_and_signs(
    hsm_app: FastAPI,
    hsm_client: TestClient,
    admin: Credentials,
    session_factory: sessionmaker[Session],
    hsm_keys: dict[str, Issued],
) -> None:
    token = login(hsm_client, admin)["access_token"]
    headers = bearer(token)
    body = register(hsm_client, headers, key_label="rsa-seal")
    assert (body["key_store"], body["subject_cn"], body["key_algorithm"]) == (
        "pkcs11",
        "RSA Seal",
        "rsa",
    )
    assert body["pkcs11_key_label"] == "rsa-seal"
    hsm_client.post(
        f"{BASE}/{body['id']}/assignments",
        json={"user_id": str(admin.user_id)},
        headers=headers,
    )
    with acting_as(hsm_app, session_factory, token) as (session, principal):
        signer = vault_of(hsm_app).signer_for(
            session, principal, uuid.UUID(str(body["id"]))
        )
    signature = _sign(signer, b"hsm data")
    verify(hsm_keys["rsa-seal"], signature, b"hsm data")


def test_ec_key_with_an_uploaded_certificate_signs_with_the_raw_mechanism(
    hsm_app: FastAPI,
    hsm_client: TestClient,
    admin: Credentials,
    session_factory: sessionmaker[Session],
    hsm_keys: dict[str, Issued],
) -> None:
    token = login(hsm_client, admin)["access_token"]
    headers = bearer(token)
    body = register(
        hsm_client,
        headers,
        key_label="ec-seal",
        certificate_pem=hsm_keys["ec-seal"].certificate_pem().decode(),
    )
    hsm_client.post(
        f"{BASE}/{body['id']}/assignments",
        json={"user_id": str(admin.user_id)},
        headers=headers,
    )
    with acting_as(hsm_app, session_factory, token) as (session, principal):
        signer = vault_of(hsm_app).signer_for(
            session, principal, uuid.UUID(str(body["id"]))
        )
    verify(hsm_keys["ec-seal"], _sign(signer, b"ec data"), b"ec data")


def _sign(signer: object, data: bytes) -> bytes:
    import asyncio

    signature: bytes = asyncio.run(signer.async_sign_raw(data, "sha256"))  # type: ignore[attr-defined]
    return signature


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"key_label": "no-such-key"}, "pkcs11_object_not_found"),
        (
            {"key_label": "ec-seal", "cert_label": "no-such-cert"},
            "pkcs11_object_not_found",
        ),
        (
            {"key_label": "ec-seal", "cert_label": "stranger"},
            "key_certificate_mismatch",
        ),
    ],
    ids=["unknown-key", "unknown-certificate", "mismatch"],
)
def test_bad_registration_is_refused_with_its_code(
    hsm_client: TestClient,
    admin_headers: dict[str, str],
    fields: dict[str, str],
    code: str,
) -> None:
    response = hsm_client.post(
        f"{BASE}/pkcs11",
        json={"token_label": "signvault-tests", **fields},
        headers=admin_headers,
    )
    assert_problem(response, 422, code)


def test_unknown_token_is_refused(
    hsm_client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = hsm_client.post(
        f"{BASE}/pkcs11",
        json={"token_label": "nope", "key_label": "rsa-seal"},
        headers=admin_headers,
    )
    assert_problem(response, 422, "pkcs11_object_not_found")


def test_without_a_module_setting_registering_an_hsm_key_is_409(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = client.post(
        f"{BASE}/pkcs11",
        json={"token_label": "t", "key_label": "k"},
        headers=admin_headers,
    )
    # Nothing is unavailable (503 would invite a retry): it is not set up.
    assert_problem(response, 409, "pkcs11_not_configured")
