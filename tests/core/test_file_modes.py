"""The data dir is the organisation's alone: 0700 folders, 0600 files, whatever the umask."""

import os
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import POSTGRES_URL
from tests.pdfs import make_pdf
from tests.served import BIN_DIR, serve, signvault_env

pytestmark = pytest.mark.skipif(
    bool(POSTGRES_URL),
    reason="the embedded default's SQLite files (PostgreSQL keeps its own)",
)

PASSWORD = "Chosen-Passw0rd"


@contextmanager
def umask(value: int) -> Iterator[None]:
    """The process umask, inherited by the processes started meanwhile."""
    previous = os.umask(value)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def embedded_env(data: Path) -> dict[str, str]:
    """The embedded default: no database URL, so SQLite in the data dir."""
    env = signvault_env(data, "", SIGNVAULT_ADMIN_PASSWORD=PASSWORD)
    del env["SIGNVAULT_DATABASE_URL"]
    return env


@pytest.mark.parametrize("mask", [0o022, 0o000], ids=["umask 022", "umask 000"])
def test_served_data_dir_is_private_whatever_the_umask(
    tmp_path: Path, mask: int
) -> None:
    data = tmp_path / "data"
    with umask(mask), serve(embedded_env(data), tmp_path) as served:
        token = httpx.post(
            f"{served.base_url}/api/v1/auth/login",
            json={"username": "admin", "password": PASSWORD},
            timeout=10,
        ).json()["access_token"]
        uploaded = httpx.post(
            f"{served.base_url}/api/v1/documents",
            files={"file": ("doc.pdf", make_pdf(), "application/pdf")},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert uploaded.status_code == 201, uploaded.text
        # While the server runs, the database has its -wal and -shm files.
        database = data / "signvault.db"
        files = {
            "database": database,
            "wal": data / "signvault.db-wal",
            "shm": data / "signvault.db-shm",
            "master key": data / "master.key",
        }
        assert {name: mode(path) for name, path in files.items()} == dict.fromkeys(
            files, 0o600
        )
        assert (mode(data), mode(data / "blobs")) == (0o700, 0o700)
        # And nothing anywhere below is open to group or others.
        opened = {
            str(path.relative_to(data)): oct(mode(path))
            for path in data.rglob("*")
            if not stat.S_ISSOCK(path.lstat().st_mode) and mode(path) & 0o077
        }
        assert opened == {}
        assert any(path.is_file() for path in (data / "blobs").rglob("*"))


def test_files_of_an_older_install_are_tightened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with umask(0o022):
        first = subprocess.run(  # noqa: S603 (our own console script)
            [str(BIN_DIR / "signvault"), "migrate"],
            env=embedded_env(data),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert first.returncode == 0, first.stderr
        # As an older version left them.
        data.chmod(0o755)
        for path in data.glob("signvault.db*"):
            path.chmod(0o644)
        again = subprocess.run(  # noqa: S603
            [str(BIN_DIR / "signvault"), "migrate"],
            env=embedded_env(data),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert again.returncode == 0, again.stderr
    assert mode(data) == 0o700
    assert {p.name: mode(p) for p in data.glob("signvault.db*") if p.is_file()} == {
        p.name: 0o600 for p in data.glob("signvault.db*") if p.is_file()
    }
    assert (data / "signvault.db").is_file()
