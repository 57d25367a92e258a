"""docker/entrypoint.sh, run on the host: migrate (with retries), then exec the command."""

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import app
from app.access import passwords
from app.settings.schemas import PasswordPolicy

ENTRYPOINT = Path(__file__).resolve().parent.parent / "docker" / "entrypoint.sh"
UNREACHABLE_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/none"


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The current environment without SIGNVAULT_* settings, `signvault` on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNVAULT_")}
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "signvault").exists():
        found = shutil.which("signvault")
        assert found is not None, "the signvault console script is not installed"
        bin_dir = Path(found).parent
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    env["SIGNVAULT_DATA_DIR"] = str(data_dir)
    env.update(extra)
    return env


def _run(
    cwd: Path, env: dict[str, str], *command: str
) -> subprocess.CompletedProcess[str]:
    sh = shutil.which("sh")
    assert sh is not None
    return subprocess.run(  # noqa: S603 - fixed argv, no shell interpolation
        [sh, str(ENTRYPOINT), *command],
        cwd=cwd,  # no stray ./.env is read
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_migrates_sqlite_then_runs_the_command(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    result = _run(tmp_path, _env(data_dir), "signvault", "version")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == app.__version__
    database = data_dir / "signvault.db"
    assert database.is_file()
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    connection.close()
    assert len(rows) == 1
    assert rows[0][0]


def test_unreachable_database_stops_before_the_command(tmp_path: Path) -> None:
    marker = tmp_path / "command-ran"
    env = _env(
        tmp_path / "data",
        SIGNVAULT_DATABASE_URL=UNREACHABLE_DATABASE,
        SIGNVAULT_MIGRATE_RETRIES="2",
        SIGNVAULT_MIGRATE_DELAY="0",
    )

    result = _run(tmp_path, env, "touch", str(marker))

    assert result.returncode != 0
    assert not marker.exists()
    assert "migration attempt 1/2 failed" in result.stderr
    assert "database migration failed after 2 attempt(s)" in result.stderr
    assert "cannot reach the database" in result.stderr


@pytest.mark.parametrize("retries", ["0", "many", "-1"])
def test_rejects_a_bad_retry_count(tmp_path: Path, retries: str) -> None:
    marker = tmp_path / "command-ran"
    env = _env(tmp_path / "data", SIGNVAULT_MIGRATE_RETRIES=retries)

    result = _run(tmp_path, env, "touch", str(marker))

    assert result.returncode == 64
    assert "SIGNVAULT_MIGRATE_RETRIES" in result.stderr
    assert not marker.exists()


def test_compose_example_admin_password_meets_the_policy_and_is_needed_once() -> None:
    compose = (ENTRYPOINT.parent.parent / "docker-compose.yml").read_text()
    [example] = re.findall(
        r"SIGNVAULT_ADMIN_PASSWORD='([^']+)' docker compose up", compose
    )
    # What a first start checks it against: the policy of a new database.
    assert passwords.violations(PasswordPolicy(), example) == []
    # Needed at the first start only: later starts, `down` and `logs` run without it.
    [line] = [
        line.strip()
        for line in compose.splitlines()
        if line.strip().startswith("SIGNVAULT_ADMIN_PASSWORD:")
    ]
    assert line == "SIGNVAULT_ADMIN_PASSWORD: ${SIGNVAULT_ADMIN_PASSWORD:-}"
