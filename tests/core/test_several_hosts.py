"""Two hosts, one database: a change made through one is honoured by the other within a second.

Host A and host B are two apps with data dirs of their own (nothing shared on
disk) and the master key from a secret file, as on two machines.
"""

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import jwt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.core.security import PasswordHasher
from app.main import create_app
from tests.certificates.conftest import import_signer
from tests.certificates.pki import make_ca, make_signer
from tests.factories import Credentials, bearer, login, make_user
from tests.pdfs import make_pdf
from tests.served import signvault_env
from tests.test_cli import run

ME = "/api/v1/auth/me"
WITHIN_SECONDS = 1.0


def honoured_within_a_second(check: Callable[[], bool]) -> float:
    """Seconds until `check` holds on the other host; fails past one second."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < WITHIN_SECONDS, "not honoured within 1 s"
        time.sleep(0.01)
    return time.monotonic() - start


@pytest.fixture
def host_b(app: FastAPI, settings: Settings, tmp_path: Path) -> Iterator[TestClient]:
    secret = tmp_path / "secret" / "master-key"
    secret.parent.mkdir()
    secret.write_text(app.state.cipher.master_key.to_base64() + "\n")
    other = create_app(
        settings.model_copy(
            update={"data_dir": tmp_path / "host-b", "master_key_file": secret}
        )
    )
    with TestClient(other) as client:
        yield client
    other.state.engine.dispose()


@pytest.fixture
def signer(
    client: TestClient, admin: Credentials, admin_headers: dict[str, str]
) -> str:
    """A certificate assigned to the administrator."""
    ca = make_ca()
    created = import_signer(client, admin_headers, make_signer(ca), ca)
    assigned = client.post(
        f"/api/v1/certificates/{created['id']}/assignments",
        json={"user_id": str(admin.user_id)},
        headers=admin_headers,
    )
    assert assigned.status_code == 201, assigned.text
    certificate_id: str = created["id"]
    return certificate_id


def sign_on(host: TestClient, headers: dict[str, str], certificate_id: str) -> int:
    response = host.post(
        "/api/v1/sign",
        files={"file": ("doc.pdf", make_pdf(pages=1), "application/pdf")},
        data={"certificate_id": certificate_id},
        headers=headers,
    )
    return response.status_code


@pytest.mark.parametrize("change", ["disable", "revoke"])
def test_a_certificate_disabled_or_revoked_on_a_is_refused_by_b(
    client: TestClient,
    host_b: TestClient,
    admin_headers: dict[str, str],
    signer: str,
    change: str,
) -> None:
    assert sign_on(host_b, admin_headers, signer) == 200  # B holds the key in memory
    changed = client.post(
        f"/api/v1/certificates/{signer}/{change}", headers=admin_headers
    )
    assert changed.status_code == 200, changed.text
    honoured_within_a_second(lambda: sign_on(host_b, admin_headers, signer) == 409)


def test_a_setting_changed_on_a_is_obeyed_by_b(
    client: TestClient,
    host_b: TestClient,
    admin: Credentials,
    admin_headers: dict[str, str],
) -> None:
    assert login(host_b, admin)["expires_in"] == 900
    changed = client.put(
        "/api/v1/settings/security",
        json={"access_token_ttl_seconds": 600},
        headers=admin_headers,
    )
    assert changed.status_code == 200, changed.text
    honoured_within_a_second(lambda: login(host_b, admin)["expires_in"] == 600)


def test_a_token_key_rotated_on_a_signs_and_verifies_on_b(
    client: TestClient,
    host_b: TestClient,
    admin: Credentials,
    settings: Settings,
    database_url: str,
    tmp_path: Path,
) -> None:
    before = login(host_b, admin)["access_token"]  # B has read the keys
    old_kid = jwt.get_unverified_header(before)["kid"]

    rotated = run(
        signvault_env(settings.data_dir, database_url), tmp_path, "rotate-token-key"
    )
    assert rotated.returncode == 0, rotated.stderr

    def b_signs_with_a_new_key() -> bool:
        token = login(host_b, admin)["access_token"]
        return bool(jwt.get_unverified_header(token)["kid"] != old_kid)

    honoured_within_a_second(b_signs_with_a_new_key)
    # a token A signs with the new key verifies on B at once, and the other way round
    from_a = login(client, admin)["access_token"]
    from_b = login(host_b, admin)["access_token"]
    assert host_b.get(ME, headers=bearer(from_a)).status_code == 200
    assert client.get(ME, headers=bearer(from_b)).status_code == 200
    # tokens signed before the rotation still verify on both
    assert host_b.get(ME, headers=bearer(before)).status_code == 200
    assert client.get(ME, headers=bearer(before)).status_code == 200


def test_a_token_key_retired_on_a_is_refused_by_b(
    host_b: TestClient,
    admin: Credentials,
    settings: Settings,
    database_url: str,
    tmp_path: Path,
) -> None:
    token = login(host_b, admin)["access_token"]
    assert host_b.get(ME, headers=bearer(token)).status_code == 200  # remembered

    rotated = run(
        signvault_env(settings.data_dir, database_url),
        tmp_path,
        "rotate-token-key",
        "--retire-previous",
    )
    assert rotated.returncode == 0, rotated.stderr
    honoured_within_a_second(
        lambda: host_b.get(ME, headers=bearer(token)).status_code == 401
    )


def test_a_token_revoked_on_a_is_refused_by_b(
    client: TestClient, host_b: TestClient, admin: Credentials
) -> None:
    token = login(client, admin)["access_token"]
    assert host_b.get(ME, headers=bearer(token)).status_code == 200
    assert client.post("/api/v1/auth/logout", headers=bearer(token)).status_code == 204
    honoured_within_a_second(
        lambda: host_b.get(ME, headers=bearer(token)).status_code == 401
    )


def test_a_user_disabled_on_a_is_refused_by_b(
    client: TestClient,
    host_b: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    bob = make_user(session_factory, hasher, username="bob")
    token = login(host_b, bob)["access_token"]
    assert host_b.get(ME, headers=bearer(token)).status_code == 200
    disabled = client.post(
        f"/api/v1/users/{uuid.UUID(str(bob.user_id))}/disable", headers=admin_headers
    )
    assert disabled.status_code == 200, disabled.text
    honoured_within_a_second(
        lambda: host_b.get(ME, headers=bearer(token)).status_code == 401
    )
