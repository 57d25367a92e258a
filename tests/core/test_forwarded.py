"""Forwarded client addresses are believed only from trusted proxies (issue #15, 4)."""

import asyncio
import datetime as dt
import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import Receive, Scope, Send

from app.audit.chain import content_hash, content_of
from app.audit.models import AuditEvent
from app.core.config import Settings, SettingsError, load_settings
from app.core.middleware import PEER_KEY, ForwardedMiddleware
from app.main import create_app
from tests.factories import Credentials, assert_problem, audit_events, set_rate_limits
from tests.served import serve, signvault_env

ADMIN_PASSWORD = "Chosen-Passw0rd"
PROXY = "10.0.0.5"


def bad_login(client: TestClient, **headers: str) -> httpx2.Response:
    return client.post(
        "/api/v1/auth/login",
        json={"username": "nobody", "password": "wrong"},
        headers=headers,
    )


# --- the middleware ---------------------------------------------------------


async def _seen(scope: Scope, receive: Receive, send: Send) -> None:
    seen.append(dict(scope))


seen: list[dict[str, Any]] = []


def resolve(peer: str, *, trusted: str, **headers: str) -> dict[str, Any]:
    seen.clear()
    app = ForwardedMiddleware(
        _seen, trusted=[ipaddress.ip_network(t) for t in trusted.split(",")]
    )
    scope = {
        "type": "http",
        "client": (peer, 1234),
        "scheme": "http",
        "headers": [
            (k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()
        ],
    }

    async def nothing() -> Any:
        return None

    asyncio.run(app(scope, nothing, nothing))  # type: ignore[arg-type]
    return seen[-1]


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        # From an untrusted peer the header is ignored, whatever it says.
        ("198.51.100.9", "1.2.3.4", "198.51.100.9"),
        # One trusted proxy: the address it appended.
        (PROXY, "203.0.113.9", "203.0.113.9"),
        # The client wrote the left part itself: the right-most untrusted hop wins.
        (PROXY, "1.2.3.4, 203.0.113.9", "203.0.113.9"),
        # Two trusted proxies in a row are skipped.
        (PROXY, "1.2.3.4, 203.0.113.9, 10.0.0.7", "203.0.113.9"),
        # Ports and brackets, as some proxies write them.
        (PROXY, "[2001:db8::1]:4711", "2001:db8::1"),
        (PROXY, "203.0.113.9:5555", "203.0.113.9"),
        # Garbage where an address should be: stop at the proxy that wrote it.
        (PROXY, "203.0.113.9, not-an-ip", PROXY),
        # No header from the proxy: the proxy itself.
        (PROXY, "", PROXY),
    ],
)
def test_the_client_is_the_right_most_untrusted_hop(
    peer: str, forwarded_for: str, client: str
) -> None:
    headers = {"x_forwarded_for": forwarded_for} if forwarded_for else {}
    scope = resolve(peer, trusted="10.0.0.0/8", **headers)
    assert scope["client"][0] == client
    assert scope[PEER_KEY] == peer


def test_forwarded_proto_and_rfc7239_header() -> None:
    trusted = resolve(PROXY, trusted="10.0.0.0/8", x_forwarded_proto="https")
    assert trusted["scheme"] == "https"
    untrusted = resolve("198.51.100.9", trusted="10.0.0.0/8", x_forwarded_proto="https")
    assert untrusted["scheme"] == "http"
    # A proxy that writes X-Forwarded-For passes a client's Forwarded through: never read.
    forged = resolve(PROXY, trusted="10.0.0.0/8", forwarded="for=1.2.3.4")
    assert forged["client"][0] == PROXY


def test_bad_trusted_proxies_setting_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SIGNVAULT_TRUSTED_PROXIES", "10.0.0.0/8, proxy.local")
    with pytest.raises(SettingsError, match="SIGNVAULT_TRUSTED_PROXIES"):
        load_settings()


# --- through the app --------------------------------------------------------


@pytest.fixture
def proxied_app(settings: Settings) -> Iterator[FastAPI]:
    other = create_app(
        settings.model_copy(
            update={"trusted_proxies": [ipaddress.ip_network("10.0.0.0/8")]}
        )
    )
    yield other
    other.state.engine.dispose()


def test_untrusted_peer_cannot_rotate_past_the_login_throttle(
    app: FastAPI, session_factory: sessionmaker[Session]
) -> None:
    set_rate_limits(session_factory, login_attempts_per_minute_per_ip=2)
    caller = TestClient(app, client=("198.51.100.9", 1))
    statuses = [
        bad_login(caller, **{"X-Forwarded-For": f"192.0.2.{n}"}).status_code
        for n in range(3)
    ]
    assert statuses == [401, 401, 429]
    entries = audit_events(session_factory, "auth.login")
    assert {(e.ip, e.peer_ip) for e in entries} == {("198.51.100.9", "198.51.100.9")}


def test_a_trusted_proxy_forwards_the_client_and_the_audit_keeps_both(
    proxied_app: FastAPI,
    admin: Credentials,
    session_factory: sessionmaker[Session],
) -> None:
    set_rate_limits(session_factory, login_attempts_per_minute_per_ip=2)
    proxy = TestClient(proxied_app, client=(PROXY, 1))
    # Two clients behind one proxy each get their own login budget.
    for client_ip in ("203.0.113.1", "203.0.113.2"):
        for _ in range(2):
            assert bad_login(proxy, **{"X-Forwarded-For": client_ip}).status_code == 401
        assert_problem(
            bad_login(proxy, **{"X-Forwarded-For": client_ip}), 429, "too_many_requests"
        )
    token = proxy.post(
        "/api/v1/auth/login",
        json={"username": "admin", "password": admin.password},
        headers={"X-Forwarded-For": "203.0.113.3"},
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": "203.0.113.3"}
    listed = proxy.get(
        "/api/v1/audit-logs", params={"action": "auth.login"}, headers=headers
    ).json()["data"]
    assert {(e["ip"], e["peer_ip"]) for e in listed} == {
        ("203.0.113.1", PROXY),
        ("203.0.113.2", PROXY),
        ("203.0.113.3", PROXY),
    }
    exported = proxy.get(
        "/api/v1/audit-logs/export", params={"format": "jsonl"}, headers=headers
    )
    *lines, anchor_line = [json.loads(line) for line in exported.text.splitlines()]
    assert set(anchor_line) == {"anchor"}
    assert {line["peer_ip"] for line in lines if line["action"] == "auth.login"} == {
        PROXY
    }
    csv_header = proxy.get(
        "/api/v1/audit-logs/export", params={"format": "csv"}, headers=headers
    ).text.splitlines()[0]
    assert "peer_ip" in csv_header.split(",")
    verified = proxy.get("/api/v1/audit-logs/verify", headers=headers).json()
    assert verified["intact"] is True, verified


def test_peer_ip_is_in_the_hash_when_set_and_old_entries_keep_theirs(
    proxied_app: FastAPI, session_factory: sessionmaker[Session]
) -> None:
    proxy = TestClient(proxied_app, client=(PROXY, 1))
    bad_login(proxy, **{"X-Forwarded-For": "203.0.113.1"})
    [entry] = audit_events(session_factory, "auth.login")
    content = content_of(entry)
    assert content_hash(content) == entry.hash
    # An entry written before the column existed has no peer_ip: same hash as then.
    assert content_hash({**content, "peer_ip": None}) == content_hash(
        {k: v for k, v in content.items() if k != "peer_ip"}
    )
    # Changing the peer address of a stored entry breaks its hash.
    with session_factory.begin() as session:
        session.execute(
            update(AuditEvent)
            .where(AuditEvent.id == entry.id)
            .values(peer_ip="10.9.9.9")
        )
    with session_factory() as session:
        changed = session.get_one(AuditEvent, entry.id)
        assert content_hash(content_of(changed)) != changed.hash


# --- a real `signvault serve` ---------------------------------------------


def served_bad_login(http: httpx.Client, **headers: str) -> int:
    return http.post(
        "/api/v1/auth/login",
        json={"username": "nobody", "password": "wrong"},
        headers=headers,
    ).status_code


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file


def test_served_ignores_forwarded_for_from_loopback_by_default(
    tmp_path: Path, database_url: str, session_factory: sessionmaker[Session]
) -> None:
    env = signvault_env(
        tmp_path / "data",
        database_url,
        SIGNVAULT_ADMIN_PASSWORD=ADMIN_PASSWORD,
        SIGNVAULT_LOGIN_RATE_LIMIT_PER_MINUTE="2",
    )
    with serve(env, tmp_path) as served, httpx.Client(base_url=served.base_url) as http:
        statuses = [
            served_bad_login(http, **{"X-Forwarded-For": f"192.0.2.{n}"})
            for n in range(3)
        ]
    assert statuses == [401, 401, 429]
    entries = audit_events(session_factory, "auth.login")
    assert {(e.ip, e.peer_ip) for e in entries} == {("127.0.0.1", "127.0.0.1")}


def test_served_over_tls_behind_a_trusted_proxy(
    tmp_path: Path, database_url: str, session_factory: sessionmaker[Session]
) -> None:
    cert_file, key_file = self_signed(tmp_path)
    env = signvault_env(
        tmp_path / "data",
        database_url,
        SIGNVAULT_ADMIN_PASSWORD=ADMIN_PASSWORD,
        SIGNVAULT_TRUSTED_PROXIES="127.0.0.1",
    )
    with (
        serve(
            env,
            tmp_path,
            "--ssl-certfile",
            str(cert_file),
            "--ssl-keyfile",
            str(key_file),
            tls_ca=cert_file,
        ) as served,
        httpx.Client(base_url=served.base_url, verify=served.verify) as http,
    ):
        assert served.base_url.startswith("https://")
        assert http.get("/health").status_code == 200
        assert served_bad_login(http, **{"X-Forwarded-For": "203.0.113.50"}) == 401
        # Plain HTTP on the TLS port is not answered.
        with pytest.raises(httpx.TransportError):
            httpx.get(served.base_url.replace("https", "http") + "/health", timeout=5)
    [entry] = audit_events(session_factory, "auth.login")
    assert (entry.ip, entry.peer_ip) == ("203.0.113.50", "127.0.0.1")
