"""Lockout with `signvault serve --workers 2`: two real worker processes count failures."""

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy.orm import Session, sessionmaker

from app.access.models import LoginFailure, User, UserStatus
from tests.factories import audit_events
from tests.served import serve, signvault_env

ADMIN_PASSWORD = "Chosen-Passw0rd"
THRESHOLD = 4


def test_two_worker_processes_lock_the_address_out_exactly_once_at_n(
    tmp_path: Path, database_url: str, session_factory: sessionmaker[Session]
) -> None:
    env = signvault_env(
        tmp_path / "data",
        database_url,
        SIGNVAULT_ADMIN_PASSWORD=ADMIN_PASSWORD,
        SIGNVAULT_LOGIN_RATE_LIMIT_PER_MINUTE="0",
    )
    with serve(env, tmp_path, "--workers", "2") as served:
        base = served.base_url
        token = httpx.post(
            f"{base}/api/v1/auth/login",
            json={"username": "admin", "password": ADMIN_PASSWORD},
            timeout=10,
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        policy = httpx.put(
            f"{base}/api/v1/settings/password-policy",
            json={"lockout_threshold": THRESHOLD},
            headers=headers,
            timeout=10,
        )
        assert policy.status_code == 200, policy.text
        bob = httpx.post(
            f"{base}/api/v1/users",
            json={"username": "bob", "password": "Bobs-Passw0rd"},
            headers=headers,
            timeout=10,
        ).json()

        def attempt(_: int) -> int:
            # A new connection each time, so both workers take their share.
            return httpx.post(
                f"{base}/api/v1/auth/login",
                json={"username": "bob", "password": "wrong"},
                headers={"Connection": "close"},
                timeout=30,
            ).status_code

        attempts = 4 * THRESHOLD
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(attempt, range(attempts)))
        assert set(statuses) <= {401, 429}
        assert statuses.count(401) >= THRESHOLD
        right = httpx.post(
            f"{base}/api/v1/auth/login",
            json={"username": "bob", "password": "Bobs-Passw0rd"},
            timeout=10,
        )
        assert right.status_code == 429
        assert right.json()["code"] == "login_locked_out"
    with session_factory() as session:
        user = session.get_one(User, uuid.UUID(bob["id"]))
        assert user.status == UserStatus.ACTIVE
        row = session.get_one(LoginFailure, ("bob", "127.0.0.1"))
        assert (row.count, row.locked_until is not None) == (statuses.count(401), True)
    [locked] = audit_events(session_factory, "user.locked")
    assert locked.details["failures"] == THRESHOLD
