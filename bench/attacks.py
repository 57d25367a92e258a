"""Does a hostile request freeze the server? /health latency and RSS growth under attack (issue #15).

Starts `signvault serve` (1 worker, SQLite, default limits) and, for each attack,
probes `GET /health` every 20 ms from a second client while the attack runs,
then reports the probes' p99 and max latency and the server's peak RSS growth.
Targets: /health under 100 ms, RSS growth under 50 MB.

  .venv/bin/python bench/attacks.py [--seconds 10]
"""

import argparse
import io
import json
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from bench.sign import memory_kib
from tests.certificates.pki import make_ca, make_signer
from tests.served import serve, signvault_env

ADMIN_PASSWORD = "Bench-Attack-Passw0rd!"


class Prober(threading.Thread):
    """GET /health every 20 ms on its own connection; keeps each latency."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.latencies: list[float] = []
        self.failures = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=120) as client:
            while not self.stopping.is_set():
                started = time.perf_counter()
                try:
                    ok = client.get("/health").status_code == 200
                except httpx.TransportError:
                    ok = False
                self.latencies.append((time.perf_counter() - started) * 1000)
                self.failures += not ok
                self.stopping.wait(0.02)


def attack_for(
    seconds: float, clients: int, one: Callable[[httpx.Client], int]
) -> Counter[int]:
    """Run `one` request after another from `clients` threads for `seconds`; count the statuses."""
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + seconds

    def loop() -> None:
        with httpx.Client(timeout=300) as client:
            while time.monotonic() < deadline:
                try:
                    statuses[one(client)] += 1
                except httpx.TransportError:
                    statuses[0] += 1

    with ThreadPoolExecutor(clients) as pool:
        for _ in range(clients):
            pool.submit(loop)
    return statuses


def measure(
    name: str, pid: int, base: str, run: Callable[[], Counter[int]]
) -> dict[str, object]:
    before = memory_kib(pid, "VmRSS")
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the high-water mark
    prober = Prober(base)
    prober.start()
    statuses = run()
    prober.stopping.set()
    prober.join()
    latencies = sorted(prober.latencies)
    row = {
        "attack": name,
        "answers": dict(sorted(statuses.items())),
        "probes": len(latencies),
        "health p99 ms": latencies[int(len(latencies) * 0.99) - 1],
        "health max ms": latencies[-1],
        "health median ms": statistics.median(latencies),
        "probe failures": prober.failures,
        "RSS growth MB": (memory_kib(pid, "VmHWM") - before) / 1024,
    }
    print(json.dumps(row), flush=True)
    return row


def costly_pkcs12_files() -> list[bytes]:
    """A 10^9-round PBES2 file, and a file whose MAC asks for 2^31 - 1 rounds."""
    signer = make_signer(make_ca(), key_type="p256")
    # Built at 2048 rounds, then the counts are rewritten: making a 10^9 file would take minutes.
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(2048)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(b"secret")
    )
    data = pkcs12.serialize_key_and_certificates(
        b"x",
        signer.key,
        signer.certificate,
        None,
        encryption,  # type: ignore[arg-type]
    )
    huge_mac = asn1_pkcs12.Pfx.load(data)
    huge_mac["mac_data"]["iterations"] = 2**31 - 1
    huge_key = asn1_pkcs12.Pfx.load(data)
    contents = list(huge_key.authenticated_safe)
    for info in contents:
        if info["content_type"].native == "data":
            bags = asn1_pkcs12.SafeContents.load(info["content"].native)
            for bag in bags:
                algorithm = bag["bag_value"]["encryption_algorithm"]
                algorithm["parameters"]["key_derivation_func"]["parameters"][
                    "iteration_count"
                ] = 10**9
            info["content"] = asn1_pkcs12.SafeContents(list(bags)).dump(force=True)  # type: ignore[index]
    huge_key["auth_safe"]["content"] = asn1_pkcs12.AuthenticatedSafe(contents).dump(
        force=True
    )
    return [huge_mac.dump(force=True), huge_key.dump(force=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    seconds = parser.parse_args().seconds
    million_keys = json.dumps({f"k{i}": 0 for i in range(1_000_000)}).encode()
    fitting_keys = json.dumps({f"k{i}": 0 for i in range(80_000)}).encode()
    p12_files = costly_pkcs12_files()

    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        env = signvault_env(
            folder / "data",
            f"sqlite:///{folder / 'data' / 'signvault.db'}",
            SIGNVAULT_ADMIN_PASSWORD=ADMIN_PASSWORD,
            SIGNVAULT_BACKGROUND_IN_PROCESS="false",
            # The production password hash (tests/served.py makes it cheap).
            SIGNVAULT_ARGON2_MEMORY_KIB="19456",
            SIGNVAULT_ARGON2_TIME_COST="2",
            # Every PKCS#12 request reaches the check, not the per-user limit.
            SIGNVAULT_RATE_LIMIT_PER_MINUTE="0",
        )
        with serve(env, folder) as served:
            base = served.base_url
            token = httpx.post(
                f"{base}/api/v1/auth/login",
                json={"username": "admin", "password": ADMIN_PASSWORD},
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            for _ in range(3):  # warm up: imports, first connections
                httpx.get(f"{base}/health")

            def json_body(body: bytes) -> Callable[[httpx.Client], int]:
                def one(client: httpx.Client) -> int:
                    return client.post(
                        f"{base}/api/v1/auth/login",
                        content=body,
                        headers={"Content-Type": "application/json"},
                    ).status_code

                return one

            def inspect(client: httpx.Client) -> int:
                data = p12_files[int(time.monotonic() * 10) % len(p12_files)]
                return client.post(
                    f"{base}/api/v1/certificates/inspect",
                    files={"file": ("a.p12", io.BytesIO(data))},
                    data={"password": "wrong"},
                    headers=headers,
                ).status_code

            def login(client: httpx.Client) -> int:
                return client.post(
                    f"{base}/api/v1/auth/login",
                    json={"username": "admin", "password": "guess"},
                ).status_code

            measure(
                "idle", served.pid, base, lambda: (time.sleep(seconds), Counter())[1]
            )
            measure(
                "PKCS#12 with 2^31-1 MAC / 10^9 PBES2 rounds to /certificates/inspect (4 clients)",
                served.pid,
                base,
                lambda: attack_for(seconds, 4, inspect),
            )
            measure(
                f"JSON of a million keys ({len(million_keys) // 2**20} MiB) to /auth/login, no token (4 clients)",
                served.pid,
                base,
                lambda: attack_for(seconds, 4, json_body(million_keys)),
            )
            time.sleep(
                61
            )  # a new throttle window: the next bodies are read and validated
            measure(
                "JSON of 80,000 keys (1 MiB, under the cap) to /auth/login, no token (4 clients)",
                served.pid,
                base,
                lambda: attack_for(seconds, 4, json_body(fitting_keys)),
            )
            time.sleep(61)
            measure(
                "burst of unauthenticated logins (16 clients)",
                served.pid,
                base,
                lambda: attack_for(seconds, 16, login),
            )


if __name__ == "__main__":
    main()
