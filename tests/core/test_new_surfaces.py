"""What the routes added for several hosts and the console let a caller reach: nothing more."""

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.console.router import CONTENT_SECURITY_POLICY
from app.core.security import PasswordHasher
from tests.documents.test_documents import DOCS, upload
from tests.factories import assert_problem, bearer, login, make_user
from tests.pdfs import make_pdf

# RFC 7518's private members of EC and RSA keys, and symmetric key material.
PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def test_the_jwk_set_publishes_public_keys_only(client: TestClient) -> None:
    response = client.get("/.well-known/jwks.json")

    assert response.status_code == 200
    keys = response.json()["keys"]
    assert keys
    for jwk in keys:
        assert not PRIVATE_JWK_MEMBERS & set(jwk), jwk
        assert {"kty", "kid", "x", "y"} <= set(jwk)


def test_a_range_of_a_document_the_caller_cannot_see_is_404_as_if_missing(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    document = upload(client, admin_headers, make_pdf()).json()
    mallory = make_user(session_factory, hasher, username="mallory")
    headers = {**bearer(login(client, mallory)["access_token"]), "Range": "bytes=0-4"}

    hidden = client.get(f"{DOCS}/{document['id']}/content", headers=headers)
    missing = client.get(
        f"{DOCS}/00000000-0000-4000-8000-000000000000/content", headers=headers
    )

    assert_problem(hidden, 404, "document_not_found")
    assert_problem(missing, 404, "document_not_found")
    assert hidden.json()["detail"].replace(document["id"], "ID") == missing.json()[
        "detail"
    ].replace("00000000-0000-4000-8000-000000000000", "ID")
    assert "content-range" not in hidden.headers


@pytest.mark.parametrize(
    "path",
    [
        "/console/../app/core/config.py",
        "/console/%2e%2e/router.py",
        "/console/%2e%2e/%2e%2e/core/config.py",
        "/console/vendor/..%2f..%2frouter.py",
        "/console/vendor/%2e%2e/%2e%2e/core/config.py",
        "/console/static/../router.py",
        "/console/..%5c..%5crouter.py",
    ],
)
def test_console_paths_do_not_leave_its_folders(client: TestClient, path: str) -> None:
    response = client.get(path)

    assert b"import " not in response.content, path
    assert b"SIGNVAULT_" not in response.content, path
    if response.status_code == 200:
        # Normalised back inside /console: the app's own page, never a server file.
        assert response.headers["content-type"].startswith("text/html")
    else:
        assert response.status_code == 404


def test_console_errors_carry_its_security_headers(client: TestClient) -> None:
    response = client.get("/console/no-such-file.js")

    assert response.status_code == 404
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-frame-options"] == "DENY"
