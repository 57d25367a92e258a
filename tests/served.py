"""Run `signvault serve` as a real process on 127.0.0.1, as an operator would."""

import base64
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

BIN_DIR = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def signvault_env(data_dir: Path, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNVAULT_")}
    env.update(
        SIGNVAULT_DATA_DIR=str(data_dir),
        SIGNVAULT_DATABASE_URL=database_url,
        SIGNVAULT_ARGON2_MEMORY_KIB="64",
        SIGNVAULT_ARGON2_TIME_COST="1",
        PATH=f"{BIN_DIR}{os.pathsep}{env.get('PATH', '')}",
    )
    env.update(extra)
    return env


@dataclass
class Served:
    base_url: str
    log_path: Path
    pid: int
    # What httpx should verify the server with (a CA file when served over TLS).
    verify: ssl.SSLContext | bool = True

    @property
    def log(self) -> str:
        return self.log_path.read_text()


@contextmanager
def serve(
    env: dict[str, str], workdir: Path, *args: str, tls_ca: Path | None = None
) -> Iterator[Served]:
    """`signvault serve` on a free port; with `tls_ca` (the CA of its --ssl-certfile), over HTTPS."""
    port = free_port()
    log_path = workdir / f"serve-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(  # noqa: S603 (our own console script)
            [
                str(BIN_DIR / "signvault"),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *args,
            ],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=str(tls_ca)) if tls_ca else True
    )
    scheme = "https" if tls_ca else "http"
    served = Served(f"{scheme}://127.0.0.1:{port}", log_path, process.pid, verify)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"signvault serve exited with {process.returncode}:\n{served.log}"
                )
            try:
                ready = httpx.get(f"{served.base_url}/ready", timeout=1, verify=verify)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"signvault serve did not become ready:\n{served.log}"
                )
            time.sleep(0.2)
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def worker_pids(pid: int) -> set[int]:
    """The pids of the uvicorn worker processes of `serve --workers N` (its spawned children)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    workers = set()
    for pid in map(int, children.split()):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue  # gone meanwhile
        if b"spawn_main" in command:
            workers.add(pid)
    return workers


@contextmanager
def separate_worker(
    env: dict[str, str], workdir: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """`signvault worker` as a process of its own, for servers that run no background jobs."""
    log_path = workdir / "worker.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(  # noqa: S603 (our own console script)
            [str(BIN_DIR / "signvault"), "worker"], env=env, cwd=workdir,
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "running" not in log_path.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"signvault worker did not start:\n{log_path.read_text()}"
                )
            time.sleep(0.2)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def admin_with_assigned_certificate(
    http: httpx.Client, password: str, p12: bytes, p12_password: str
) -> tuple[str, str]:
    """Log in as admin on a served instance, import `p12` and assign it to admin.

    Returns admin's access token and the certificate's id.
    """
    token: str = http.post(
        "/api/v1/auth/login", json={"username": "admin", "password": password}
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    certificate = http.post(
        "/api/v1/certificates/base64",
        json={
            "pkcs12_base64": base64.b64encode(p12).decode(),
            "password": p12_password,
        },
        headers=headers,
    ).json()
    me = http.get("/api/v1/auth/me", headers=headers).json()
    assigned = http.post(
        f"/api/v1/certificates/{certificate['id']}/assignments",
        json={"user_id": me["id"]},
        headers=headers,
    )
    assert assigned.status_code == 201, assigned.text
    return token, str(certificate["id"])
