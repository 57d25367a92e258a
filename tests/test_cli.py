"""The `signvault` command, run as a process the way operators run it."""

import re
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, make_url, select, text
from sqlalchemy.orm import Session, sessionmaker

from app import __version__
from app.access.models import User
from tests.conftest import POSTGRES_URL
from tests.factories import audit_events
from tests.served import BIN_DIR, free_port, serve, signvault_env


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


@pytest.mark.parametrize(
    "given", [None, ""], ids=["unset", "empty as compose passes it"]
)
def test_serve_bootstraps_an_admin_with_a_password_printed_once(
    tmp_path: Path,
    database_url: str,
    session_factory: sessionmaker[Session],
    given: str | None,
) -> None:
    extra = {} if given is None else {"SIGNVAULT_ADMIN_PASSWORD": given}
    env = signvault_env(tmp_path / "data", database_url, **extra)
    with serve(env, tmp_path) as served:
        match = re.search(
            r"created administrator 'admin' with password: (\S+)", served.log
        )
        assert match, served.log
        password = match.group(1)
        response = login(served.base_url, "admin", password)
        assert response.status_code == 200
        assert response.headers["x-request-id"]
        # Shown on a terminal or in a container log: it must be changed first.
        headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
        me = httpx.get(f"{served.base_url}/api/v1/auth/me", headers=headers)
        assert me.json()["must_change_password"] is True
        refused = httpx.get(f"{served.base_url}/api/v1/users", headers=headers)
        assert (refused.status_code, refused.json()["code"]) == (
            403,
            "password_change_required",
        )
        changed = httpx.post(
            f"{served.base_url}/api/v1/auth/password",
            json={"old_password": password, "new_password": "Own-Passw0rd-1"},
            headers=headers,
        )
        assert changed.status_code == 204, changed.text
        again = login(served.base_url, "admin", "Own-Passw0rd-1").json()
        users = httpx.get(
            f"{served.base_url}/api/v1/users",
            headers={"Authorization": f"Bearer {again['access_token']}"},
        )
        assert users.status_code == 200
    # a restart finds the admin and prints no password
    with serve(env, tmp_path) as again_served:
        assert "password" not in again_served.log
        assert (
            login(again_served.base_url, "admin", "Own-Passw0rd-1").status_code == 200
        )
    assert [e.action for e in audit_events(session_factory, "user.created")] == [
        "user.created"
    ]
    with session_factory() as session:
        stored = session.scalars(select(User)).one()
    assert password not in stored.password_hash


def test_serve_refuses_an_admin_password_the_policy_refuses(
    tmp_path: Path, database_url: str, session_factory: sessionmaker[Session]
) -> None:
    env = signvault_env(
        tmp_path / "data", database_url, SIGNVAULT_ADMIN_PASSWORD="choose-one"
    )
    result = run(env, tmp_path, "serve", "--port", str(free_port()))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [refusal] = [
        line for line in result.stderr.splitlines() if "ADMIN_PASSWORD" in line
    ]
    assert refusal == (
        "signvault: SIGNVAULT_ADMIN_PASSWORD is refused by the password policy: "
        "The password must contain an uppercase letter; must contain a digit."
    )
    assert "choose-one" not in result.stderr
    with session_factory() as session:
        assert session.scalars(select(User)).all() == []


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


def test_create_admin_applies_the_password_policy_and_email_validation(
    tmp_path: Path, database_url: str, session_factory: sessionmaker[Session]
) -> None:
    env = signvault_env(tmp_path / "data", database_url)

    def create(*args: str) -> subprocess.CompletedProcess[str]:
        return run(env, tmp_path, "create-admin", *args)

    weak = create("--username", "root", "--password", "a")
    assert weak.returncode == 2
    assert weak.stderr.strip().splitlines()[-1] == (
        "signvault: The password must be at least 10 characters long; "
        "must contain an uppercase letter; must contain a digit."
    )
    email = create(
        "--username", "root", "--password", "Root-Passw0rd", "--email", "root@"
    )
    assert email.returncode == 2
    assert email.stderr.startswith("signvault: --email: value is not a valid email")
    username = create("--username", "root admin", "--password", "Root-Passw0rd")
    assert username.returncode == 2
    assert username.stderr.startswith("signvault: --username: String should match")
    with session_factory() as session:
        assert session.scalars(select(User)).all() == []
    assert create("--username", "root", "--password", "Root-Passw0rd").returncode == 0


def test_command_without_a_database_names_it_and_creates_none(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        k: v
        for k, v in signvault_env(tmp_path, "sqlite://").items()
        if k not in ("SIGNVAULT_DATA_DIR", "SIGNVAULT_DATABASE_URL")
    }
    for command in (("audit", "verify"), ("audit", "purge"), ("rotate-master-key",)):
        result = run(env, elsewhere, *command)
        assert result.returncode == 2, result
        assert result.stderr.splitlines() == [
            f"signvault: no database at {elsewhere / 'data' / 'signvault.db'} "
            f"(data dir {elsewhere / 'data'}; run the command where SignVault runs, "
            "set SIGNVAULT_DATA_DIR or SIGNVAULT_DATABASE_URL, "
            "or create one with `signvault migrate`)"
        ]
    assert list(elsewhere.iterdir()) == []


@contextmanager
def empty_database(tmp_path: Path) -> Iterator[str]:
    """A database that exists but holds no table: an empty SQLite file, or a new PostgreSQL database."""
    if not POSTGRES_URL:
        (tmp_path / "empty.db").touch()
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    name = f"sv_empty_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield (
            make_url(POSTGRES_URL)
            .set(database=name)
            .render_as_string(hide_password=False)
        )
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def test_command_on_a_database_without_the_schema_says_so(tmp_path: Path) -> None:
    with empty_database(tmp_path) as database_url:
        env = signvault_env(tmp_path / "data", database_url)
        result = run(env, tmp_path, "audit", "verify")
        assert result.returncode == 2, result
        shown = make_url(database_url).render_as_string(hide_password=True)
        assert result.stderr.splitlines() == [
            f"signvault: no SignVault schema in the database {shown} "
            f"(data dir {tmp_path / 'data'}; run the command where SignVault runs, "
            "set SIGNVAULT_DATA_DIR or SIGNVAULT_DATABASE_URL, "
            "or create one with `signvault migrate`)"
        ]
        assert run(env, tmp_path, "migrate").returncode == 0
        verified = run(env, tmp_path, "audit", "verify")
        assert verified.returncode == 0, verified.stderr
        assert verified.stdout.startswith("audit chain intact")
