import base64
import json
import time
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.auth import tokens
from app.auth.tokens import TokenKeys
from app.core.config import Settings
from app.core.errors import InvalidToken
from app.core.types import utcnow
from app.main import create_app
from tests.factories import Credentials, assert_problem, audit_events, bearer, login

ME = "/api/v1/auth/me"


def _claims(
    keys: TokenKeys, credentials: Credentials, **overrides: object
) -> dict[str, object]:
    now = int(utcnow().timestamp())
    claims: dict[str, object] = {
        "iss": keys.issuer,
        "aud": keys.audience,
        "sub": str(credentials.user_id),
        "iat": now,
        "exp": now + 600,
        "jti": "j" * 32,
        "kind": "user",
    }
    claims.update(overrides)
    return claims


def _signing_key(keys: TokenKeys) -> ec.EllipticCurvePrivateKey:
    key = keys._keys().signing_key
    assert key is not None
    return key


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("header", "detail_part"),
    [
        ("Bearer", "needs an access token"),
        ("Basic YWRtaW46YWRtaW4=", "needs an access token"),
        ("Bearer not-a-jwt", "not a well-formed JWT"),
        ("Bearer a.b.c", "not a well-formed JWT"),
    ],
)
def test_missing_or_malformed_authorization_is_401(
    client: TestClient, header: str, detail_part: str
) -> None:
    response = client.get(ME, headers={"Authorization": header})
    assert response.status_code == 401
    assert detail_part in response.json()["detail"]


def test_token_signed_with_another_key_is_refused_and_audited(
    client: TestClient,
    app: FastAPI,
    admin: Credentials,
    session_factory: sessionmaker[Session],
) -> None:
    keys: TokenKeys = app.state.token_keys
    stranger = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode(
        _claims(keys, admin), stranger, algorithm="ES256", headers={"kid": keys.kid}
    )
    body = assert_problem(client.get(ME, headers=bearer(forged)), 401, "invalid_token")
    assert "signature" in body["detail"]
    [event] = audit_events(session_factory, "auth.token_rejected")
    assert event.outcome == "denied"


def test_alg_none_is_refused(
    client: TestClient, app: FastAPI, admin: Credentials
) -> None:
    keys: TokenKeys = app.state.token_keys
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': keys.kid})}.{_b64(_claims(keys, admin))}."
    body = assert_problem(
        client.get(ME, headers=bearer(unsigned)), 401, "invalid_token"
    )
    assert "ES256" in body["detail"]


def test_hs256_with_the_public_key_as_secret_is_refused(
    client: TestClient, app: FastAPI, admin: Credentials
) -> None:
    keys: TokenKeys = app.state.token_keys
    token = jwt.encode(
        _claims(keys, admin),
        "some-shared-secret-of-32-bytes!!",
        algorithm="HS256",
        headers={"kid": keys.kid},
    )
    assert_problem(client.get(ME, headers=bearer(token)), 401, "invalid_token")


def test_expired_token_is_refused(
    client: TestClient, app: FastAPI, admin: Credentials
) -> None:
    keys: TokenKeys = app.state.token_keys
    past = int((utcnow() - timedelta(hours=1)).timestamp())
    token = jwt.encode(
        _claims(keys, admin, iat=past - 600, exp=past),
        _signing_key(keys),
        algorithm="ES256",
        headers={"kid": keys.kid},
    )
    assert (
        "expired"
        in assert_problem(client.get(ME, headers=bearer(token)), 401, "invalid_token")[
            "detail"
        ]
    )


@pytest.mark.parametrize(
    ("claim", "value", "detail_part"),
    [("aud", "another-api", "audience"), ("iss", "evil", "issuer")],
)
def test_wrong_audience_or_issuer_is_refused(
    client: TestClient,
    app: FastAPI,
    admin: Credentials,
    claim: str,
    value: str,
    detail_part: str,
) -> None:
    keys: TokenKeys = app.state.token_keys
    token = jwt.encode(
        _claims(keys, admin, **{claim: value}),
        _signing_key(keys),
        algorithm="ES256",
        headers={"kid": keys.kid},
    )
    assert (
        detail_part
        in assert_problem(client.get(ME, headers=bearer(token)), 401, "invalid_token")[
            "detail"
        ]
    )


def test_token_carries_the_standard_claims(
    client: TestClient, app: FastAPI, admin: Credentials
) -> None:
    token = login(client, admin)["access_token"]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256"
    assert header["kid"] == app.state.token_keys.kid
    claims = jwt.decode(token, options={"verify_signature": False})
    assert {"iss", "aud", "sub", "exp", "iat", "jti", "sid"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 900


def _counting_keys(
    monkeypatch: pytest.MonkeyPatch, *, ttl_seconds: int = 600
) -> tuple[TokenKeys, list[str]]:
    """Fresh token keys, and the tokens they fully verified (signature and claims), in order."""
    keys = TokenKeys.single(
        ec.generate_private_key(ec.SECP256R1()),
        issuer="https://signvault.test",
        audience="signvault-test",
        ttl_seconds=ttl_seconds,
    )
    fully_verified: list[str] = []
    verify = keys._verify

    def counting(token: str, leeway_seconds: int) -> tokens.AccessClaims:
        fully_verified.append(token)
        return verify(token, leeway_seconds)

    monkeypatch.setattr(keys, "_verify", counting)
    return keys, fully_verified


def _issue(keys: TokenKeys) -> str:
    token, _claims = keys.issue(sub="u", kind="user", sid=None, scope=None)
    return token


def test_a_remembered_token_is_refused_once_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys, fully_verified = _counting_keys(monkeypatch, ttl_seconds=2)
    token, claims = keys.issue(sub="u", kind="user", sid=None, scope=None)
    assert keys.verify(token, leeway_seconds=0).jti == claims.jti
    assert keys.verify(token, leeway_seconds=0).jti == claims.jti
    assert fully_verified == [token]  # the second time from memory
    time.sleep((claims.expires_at - utcnow()).total_seconds() + 0.05)
    with pytest.raises(InvalidToken, match="expired"):
        keys.verify(token, leeway_seconds=0)
    assert fully_verified == [token]  # refused from memory, by its expiry


def test_remembered_tokens_are_bounded_oldest_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tokens, "VERIFIED_TOKENS_KEPT", 2)
    keys, fully_verified = _counting_keys(monkeypatch)
    first, second, third = _issue(keys), _issue(keys), _issue(keys)
    for token in (first, second, third):
        keys.verify(token)
    keys.verify(third)
    keys.verify(second)
    assert fully_verified == [first, second, third]
    keys.verify(first)  # forgotten: verified again in full
    assert fully_verified == [first, second, third, first]


def test_a_remembered_token_does_not_vouch_for_an_altered_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys, _fully_verified = _counting_keys(monkeypatch)
    token = _issue(keys)
    keys.verify(token)
    header, _payload, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    altered = ".".join([header, _b64({**claims, "sub": "someone-else"}), signature])
    with pytest.raises(InvalidToken, match="signature"):
        keys.verify(altered)


def test_logout_revokes_the_access_token_and_its_refresh_family(
    client: TestClient, admin: Credentials
) -> None:
    pair = login(client, admin)
    assert (
        client.post(
            "/api/v1/auth/logout", headers=bearer(pair["access_token"])
        ).status_code
        == 204
    )
    body = assert_problem(
        client.get(ME, headers=bearer(pair["access_token"])), 401, "invalid_token"
    )
    assert "revoked" in body["detail"]
    refused = client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert_problem(refused, 401, "invalid_refresh_token")


def test_revocation_is_seen_by_another_app_instance(
    settings: Settings, admin: Credentials, client: TestClient
) -> None:
    """Revoked tokens live in the database, so every worker process refuses them."""
    pair = login(client, admin)
    other = create_app(settings)
    try:
        with TestClient(other) as other_client:
            assert (
                other_client.get(ME, headers=bearer(pair["access_token"])).status_code
                == 200
            )
            client.post("/api/v1/auth/logout", headers=bearer(pair["access_token"]))
            assert (
                other_client.get(ME, headers=bearer(pair["access_token"])).status_code
                == 401
            )
    finally:
        other.state.engine.dispose()


def test_refresh_rotates_the_pair(
    client: TestClient, admin: Credentials, session_factory: sessionmaker[Session]
) -> None:
    first = login(client, admin)
    time.sleep(1.01)  # a new iat, so the access token differs
    second = client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert second.status_code == 200
    pair = second.json()
    assert pair["refresh_token"] != first["refresh_token"]
    assert pair["access_token"] != first["access_token"]
    assert client.get(ME, headers=bearer(pair["access_token"])).status_code == 200
    assert (
        len(audit_events(session_factory, "auth.token_refreshed", outcome="success"))
        == 1
    )


def test_reused_refresh_token_revokes_the_whole_family(
    client: TestClient, admin: Credentials, session_factory: sessionmaker[Session]
) -> None:
    first = login(client, admin)
    second = client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    ).json()
    reuse = client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert (
        "already used" in assert_problem(reuse, 401, "invalid_refresh_token")["detail"]
    )
    # the thief's and the owner's latest tokens are all dead
    assert_problem(
        client.post(
            "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
        ),
        401,
        "invalid_refresh_token",
    )
    assert_problem(
        client.get(ME, headers=bearer(second["access_token"])), 401, "invalid_token"
    )
    assert_problem(
        client.get(ME, headers=bearer(first["access_token"])), 401, "invalid_token"
    )
    [event] = audit_events(session_factory, "auth.refresh_reuse_detected")
    assert (event.outcome, event.actor_id) == ("denied", str(admin.user_id))
    # a new login still works
    assert login(client, admin)["access_token"]


def test_unknown_refresh_token_is_401(client: TestClient) -> None:
    assert_problem(
        client.post("/api/v1/auth/refresh", json={"refresh_token": "nope"}),
        401,
        "invalid_refresh_token",
    )
