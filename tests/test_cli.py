"""The `signvault` command, run as a process the way operators run it."""

import re
import subprocess
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app import __version__
from app.access.models import User
from tests.factories import audit_events
from tests.served import BIN_DIR, serve, signvault_env


def run(
    env: dict[str, str], cwd: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (our own console script)
        [str(BIN_DIR / "signvault"), *args],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def login(base_url: str, username: str, password: str) -> httpx.Response:
    return httpx.post(
        f"{base_url}/api/v1/auth/login",
        json={"username": username, "password": password},
        timeout=10,
    )


def test_version(tmp_path: Path) -> None:
    result = run(signvault_env(tmp_path, "sqlite://"), tmp_path, "version")
    assert (result.returncode, result.stdout.strip()) == (0, __version__)


def test_bad_setting_stops_with_one_line_naming_it(tmp_path: Path) -> None:
    env = signvault_env(
        tmp_path,
        f"sqlite:///{tmp_path / 'x.db'}",
        SIGNVAULT_ACCESS_TOKEN_TTL_SECONDS="soon",
    )
    result = run(env, tmp_path, "serve")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        "signvault: invalid setting SIGNVAULT_ACCESS_TOKEN_TTL_SECONDS"
    )


def test_bad_database_url_stops_with_one_clear_line(tmp_path: Path) -> None:
    result = run(signvault_env(tmp_path, "nosuchdb://x"), tmp_path, "migrate")
    assert result.returncode == 2
    assert result.stderr.strip().startswith(
        "signvault: invalid setting SIGNVAULT_DATABASE_URL"
    )
    unreachable = run(
        signvault_env(tmp_path, "postgresql+psycopg://postgres@127.0.0.1:1/none"),
        tmp_path,
        "migrate",
    )
    assert unreachable.returncode == 2
    assert "cannot reach the database" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


def test_migrate_on_an_empty_database_then_again(tmp_path: Path) -> None:
    env = signvault_env(tmp_path, f"sqlite:///{tmp_path / 'fresh.db'}")
    first = run(env, tmp_path, "migrate")
    assert first.returncode == 0, first.stderr
    assert "database schema at" in first.stderr
    assert run(env, tmp_path, "migrate").returncode == 0


def test_serve_bootstraps_an_admin_with_a_password_printed_once(
    tmp_path: Path, database_url: str, session_factory: sessionmaker[Session]
) -> None:
    env = signvault_env(tmp_path / "data", database_url)
    with serve(env, tmp_path) as served:
        match = re.search(
            r"created administrator 'admin' with password: (\S+)", served.log
        )
        assert match, served.log
        password = match.group(1)
        response = login(served.base_url, "admin", password)
        assert response.status_code == 200
        assert response.headers["x-request-id"]
    # a restart finds the admin and prints no password
    with serve(env, tmp_path) as again:
        assert "password" not in again.log
        assert login(again.base_url, "admin", password).status_code == 200
    assert [e.action for e in audit_events(session_factory, "user.created")] == [
        "user.created"
    ]
    with session_factory() as session:
        stored = session.scalars(select(User)).one()
    assert password not in stored.password_hash


def test_serve_takes_the_admin_password_from_the_environment(
    tmp_path: Path, database_url: str
) -> None:
    env = signvault_env(
        tmp_path / "data", database_url, SIGNVAULT_ADMIN_PASSWORD="Chosen-Passw0rd"
    )
    with serve(env, tmp_path) as served:
        assert "Chosen-Passw0rd" not in served.log
        assert login(served.base_url, "admin", "Chosen-Passw0rd").status_code == 200


def test_serve_with_two_workers_shares_state_and_metrics(
    tmp_path: Path, database_url: str
) -> None:
    env = signvault_env(
        tmp_path / "data", database_url, SIGNVAULT_ADMIN_PASSWORD="Chosen-Passw0rd"
    )
    with serve(env, tmp_path, "--workers", "2") as served:
        pair = login(served.base_url, "admin", "Chosen-Passw0rd").json()
        headers = {
            "Authorization": f"Bearer {pair['access_token']}",
            "Connection": "close",
        }
        assert (
            httpx.post(
                f"{served.base_url}/api/v1/auth/logout", headers=headers, timeout=10
            ).status_code
            == 204
        )
        # whichever worker answers, the revoked token is refused
        for _ in range(6):
            assert (
                httpx.get(
                    f"{served.base_url}/api/v1/auth/me", headers=headers, timeout=10
                ).status_code
                == 401
            )
        metrics = httpx.get(f"{served.base_url}/metrics", timeout=10).text
        assert 'route="/api/v1/auth/me",status="401"} 6.0' in metrics


def test_create_admin(tmp_path: Path, database_url: str) -> None:
    env = signvault_env(tmp_path / "data", database_url)
    result = run(
        env,
        tmp_path,
        "create-admin",
        "--username",
        "Second",
        "--password",
        "Second-Passw0rd",
    )
    assert result.returncode == 0, result.stderr
    assert "administrator 'Second' created" in result.stdout
    duplicate = run(
        env, tmp_path, "create-admin", "--username", "second", "--password", "x"
    )
    assert duplicate.returncode == 2
    assert "taken" in duplicate.stderr
    prompted = run(
        env,
        tmp_path,
        "create-admin",
        "--username",
        "third",
        stdin="Third-Passw0rd\nThird-Passw0rd\n",
    )
    assert prompted.returncode == 0, prompted.stderr
    with serve(
        signvault_env(
            tmp_path / "data", database_url, SIGNVAULT_ADMIN_BOOTSTRAP="false"
        ),
        tmp_path,
    ) as served:
        assert login(served.base_url, "second", "Second-Passw0rd").status_code == 200
        assert login(served.base_url, "third", "Third-Passw0rd").status_code == 200
