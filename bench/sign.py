"""Signing throughput and memory: raw RSA, pyHanko stock and tuned, the engine (B-B to B-LT), the HTTP path.

    python bench/sign.py [--seconds 3] [--http-seconds 10] [--clients 8] [--sizes 10,100] [--blob-store s3]

Same 20 KB one-page PDF and RSA-2048 key everywhere; PAdES B-B; bytes in, bytes out.
Every variant's first output is validated with pyHanko before it is timed.
The HTTP part starts `signvault serve` (1, then 2 workers) on loopback with a
fresh SQLite data dir and an unlimited test licence, and posts the PDF to
`POST /api/v1/sign` (one shot: upload, sign, download) from N client threads with `Connection: close`
(keep-alive would pin each client to one worker).

The long-term rows run the engine at B-B, B-T and B-LT against a certomancer PKI
served on loopback (tests/pki.py: TSA, OCSP, CRLs), B-LT with and without the
revocation cache. certomancer re-parses its RSA key for every token and OCSP
response (OpenSSL's key check, ~50 ms); a real TSA keeps its key loaded, so the
bench gives certomancer a key cache (`--stock-certomancer` to measure without).

The memory rows upload a 10 MB and a 100 MB PDF (one page drawing an image of
random bytes, so nothing compresses) to a served process (`POST /documents`,
multipart), sign it (`POST /documents/{id}/sign`) and download it
(`GET /documents/{id}/content`), reading the server's peak RSS for each step
from /proc (high-water mark reset before each step with `clear_refs`).
"""

import argparse
import asyncio
import base64
import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from asn1crypto import algos
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from certomancer.crypto_utils import PycaCryptographyBackend
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleCertificateStore
from reportlab.pdfgen import canvas

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.license.verifier import Limits, new_payload, sign_license  # noqa: E402
from app.signing.engine import (  # noqa: E402
    CachedKeySigner,
    PadesLevel,
    RevocationCache,
    SignOptions,
    revocation_fetching,
    sign_pdf,
    timestamper_for,
    validate_pdf,
)
from app.signing.engine import _run as engine_run  # noqa: E402


def make_pki() -> tuple[
    x509.Certificate, rsa.RSAPrivateKey, x509.Certificate, rsa.RSAPrivateKey
]:
    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = datetime.now(UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = (
        x509.CertificateBuilder().subject_name(name("Bench CA")).issuer_name(name("Bench CA")).public_key(ca_key.public_key())
        .serial_number(1).not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder().subject_name(name("Bench Signer")).issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(2).not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=365))
        .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    return ca, ca_key, cert, key


def make_pdf(target_size: int = 20_000) -> bytes:
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pageCompression=0)
    for line in range(target_size // 85):
        page.drawString(
            40,
            800 - (line % 60) * 12,
            f"Line {line} of the benchmark document, padding the page to about 20 KB.",
        )
    page.showPage()
    page.save()
    return buffer.getvalue()


# CPU ms per call of each `rate` label, this process's own (in-process variants: what a signature costs).
CPU_MS: dict[str, float] = {}


def rate(
    label: str, seconds: float, work: Callable[[], object], *, cpu: bool = False
) -> float:
    """Calls per second; with `cpu`, also this process's CPU time per call (what waiting on a server does not cost)."""
    work()  # warm-up
    count, started, cpu_started = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        work()
        count += 1
    per_second = count / (time.perf_counter() - started)
    cpu_ms = (time.process_time() - cpu_started) * 1000 / count
    CPU_MS[label] = cpu_ms
    print(
        f"{label:<58} {per_second:9.1f} /s  ({1000 / per_second:6.2f} ms)"
        + (f"  CPU {cpu_ms:6.2f} ms" if cpu else ""),
        flush=True,
    )
    return per_second


def check(pdf: bytes, ca: x509.Certificate) -> None:
    root = asn1_x509.Certificate.load(ca.public_bytes(serialization.Encoding.DER))
    [embedded] = PdfFileReader(io.BytesIO(pdf)).embedded_signatures
    status = validate_pdf_signature(embedded, ValidationContext(trust_roots=[root]))
    assert status.bottom_line, "output does not validate"


def check_file(path: Path, ca: x509.Certificate) -> None:
    root = asn1_x509.Certificate.load(ca.public_bytes(serialization.Encoding.DER))
    with path.open("rb") as f:
        [embedded] = PdfFileReader(f).embedded_signatures
        status = validate_pdf_signature(embedded, ValidationContext(trust_roots=[root]))
    assert status.bottom_line, f"{path.name} does not validate"


class KeptKeySigner(signers.SimpleSigner):
    """pyHanko "tuned" as issue #5 defines it: stock SimpleSigner, but the parsed key kept."""

    kept_key: rsa.RSAPrivateKey

    def sign_raw(self, data: bytes, digest_algorithm: str) -> bytes:
        return self.kept_key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def in_process(
    seconds: float,
    pdf: bytes,
    ca: x509.Certificate,
    cert: x509.Certificate,
    key: rsa.RSAPrivateKey,
) -> dict[str, float]:
    p12 = pkcs12.serialize_key_and_certificates(
        b"b", key, cert, [ca], serialization.BestAvailableEncryption(b"pw")
    )
    meta = signers.PdfSignatureMetadata(
        field_name="Signature1", subfilter=fields.SigSeedSubFilter.PADES
    )

    def stock() -> bytes:
        signer = signers.SimpleSigner.load_pkcs12_data(
            p12, other_certs=[], passphrase=b"pw"
        )
        return (
            signers.PdfSigner(meta, signer=signer)
            .sign_pdf(IncrementalPdfFileWriter(io.BytesIO(pdf)))
            .getvalue()
        )  # type: ignore[union-attr]

    # "Tuned" as issue #5 defines it: the parsed key kept in a SimpleSigner subclass
    # and a fixed bytes_reserved; pyHanko still builds its own signed attributes.
    loaded = KeptKeySigner(
        signing_cert=asn1_x509.Certificate.load(
            cert.public_bytes(serialization.Encoding.DER)
        ),
        signing_key=asn1_keys.PrivateKeyInfo.load(
            key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        ),
        cert_registry=SimpleCertificateStore.from_certs(
            [asn1_x509.Certificate.load(ca.public_bytes(serialization.Encoding.DER))]
        ),
    )
    loaded.kept_key = key

    def tuned() -> bytes:
        out = io.BytesIO()
        signers.PdfSigner(meta, signer=loaded).sign_pdf(
            IncrementalPdfFileWriter(io.BytesIO(pdf)), output=out, bytes_reserved=16384
        )
        return out.getvalue()

    engine_signer = CachedKeySigner(
        certificate=asn1_x509.Certificate.load(
            cert.public_bytes(serialization.Encoding.DER)
        ),
        private_key=key,
        chain=[asn1_x509.Certificate.load(ca.public_bytes(serialization.Encoding.DER))],
    )

    def engine() -> bytes:
        out = io.BytesIO()
        sign_pdf(
            io.BytesIO(pdf),
            out,
            engine_signer,
            SignOptions(),
            signing_time=datetime.now(UTC),
        )
        return out.getvalue()

    for variant in (stock, tuned, engine):
        check(variant(), ca)
    digest = b"x" * 32
    return {
        "raw RSA-2048 (cryptography)": rate(
            "raw RSA-2048 sign (cryptography)",
            seconds,
            lambda: key.sign(digest, padding.PKCS1v15(), hashes.SHA256()),
        ),
        "pyHanko stock": rate(
            "pyHanko the obvious way (load_pkcs12_data per signature)",
            min(seconds, 3),
            stock,
        ),
        "pyHanko tuned": rate(
            "pyHanko tuned (key loaded once, bytes_reserved)", seconds, tuned
        ),
        "engine": rate("SignVault engine in-process", seconds, engine),
    }


@dataclass
class Server:
    base: str
    pid: int
    headers: dict[str, str]
    certificate_id: str
    database_url: str | None = None  # the bench database it serves (PostgreSQL)


@contextmanager
def served(
    workers: int,
    p12: bytes,
    licence: bytes,
    public_key: str,
    database_url: str | None,
    **settings: str,
) -> Iterator[Server]:
    """`signvault serve` on loopback with a fresh database, a licence and a signing certificate for admin."""
    with tempfile.TemporaryDirectory() as work:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNVAULT_")}
        env.update(
            SIGNVAULT_DATA_DIR=work,
            SIGNVAULT_ADMIN_PASSWORD="Bench-Passw0rd!",
            SIGNVAULT_LICENSE_PUBLIC_KEY=public_key,
            SIGNVAULT_RATE_LIMIT_PER_MINUTE="0",  # measure signing, not the throttle
            **settings,
        )
        if database_url:
            env["SIGNVAULT_DATABASE_URL"] = fresh_postgres_database(database_url)
        port = 8600 + workers
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "signvault"), "serve", "--port", str(port), "--workers", str(workers)],
            env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            headers, certificate_id = admin_with_signer(
                base, "Bench-Passw0rd!", p12, licence
            )
            yield Server(
                base,
                server.pid,
                headers,
                certificate_id,
                env.get("SIGNVAULT_DATABASE_URL"),
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
            if database_url:
                drop_postgres_database(env["SIGNVAULT_DATABASE_URL"])


def admin_with_signer(
    base: str, password: str, p12: bytes, licence: bytes
) -> tuple[dict[str, str], str]:
    """Log in as admin, install the licence, import `p12` (password `pw`) and let admin sign with it.

    Returns admin's headers and the certificate's id.
    """
    token = httpx.post(
        f"{base}/api/v1/auth/login",
        json={"username": "admin", "password": password},
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    httpx.post(
        f"{base}/api/v1/license",
        content=licence,
        headers={**headers, "Content-Type": "application/octet-stream"},
    ).raise_for_status()
    certificate = httpx.post(
        f"{base}/api/v1/certificates/base64",
        json={"pkcs12_base64": base64.b64encode(p12).decode(), "password": "pw"},
        headers=headers,
    ).json()
    me = httpx.get(f"{base}/api/v1/auth/me", headers=headers).json()
    httpx.post(
        f"{base}/api/v1/certificates/{certificate['id']}/assignments",
        json={"user_id": me["id"]},
        headers=headers,
    ).raise_for_status()
    return headers, certificate["id"]


def unlimited_licence() -> tuple[bytes, str]:
    """A licence without limits (features batch, ltv, pkcs11) valid for 30 days, and
    the base64 public key of its issuer (for SIGNVAULT_LICENSE_PUBLIC_KEY)."""
    issuer = Ed25519PrivateKey.generate()
    public_key = base64.b64encode(
        issuer.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    ).decode()
    now = datetime.now(UTC)
    payload = new_payload(
        licensee="bench", license_id=None, issued_at=now, valid_from=now - timedelta(days=1), valid_until=now + timedelta(days=30),
        limits=Limits(users=None, certificates=None, signatures_per_month=None, signatures_total=None), features=("batch", "ltv", "pkcs11"),
    )  # fmt: skip
    return sign_license(payload, issuer).encode(), public_key


def sign_request(base: str, token: str, options: str, pdf: bytes) -> bytes:
    """The raw bytes of one one-shot `POST /api/v1/sign` (multipart: file + options)."""
    boundary = "bench-" + os.urandom(8).hex()
    body = b"".join(
        [
            f'--{boundary}\r\nContent-Disposition: form-data; name="options"\r\n\r\n{options}\r\n'.encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="in.pdf"\r\n'
            "Content-Type: application/pdf\r\n\r\n".encode(),
            pdf,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    host = base.removeprefix("http://")
    head = (
        f"POST /api/v1/sign HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def _drive(
    base: str,
    request: bytes,
    clients: int,
    seconds: float,
    latencies: list[float] | None = None,
) -> int:
    host, port = base.removeprefix("http://").split(":")
    stop = time.perf_counter() + seconds
    done = 0

    async def client() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            sent = time.perf_counter()
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(request)
            response = await reader.read(-1)  # the server closes after answering
            writer.close()
            if latencies is not None:
                latencies.append((time.perf_counter() - sent) * 1000)
            status = response[9:12]
            if status != b"200" or b"\r\n\r\n%PDF-" not in response:
                raise RuntimeError(f"sign failed: {response[:400]!r}")
            done += 1

    await asyncio.gather(*(client() for _ in range(clients)))
    return done


def drive(base: str, request: bytes, clients: int, seconds: float) -> float:
    """Requests per second from `clients` concurrent connections, one request each, `Connection: close`.

    Raw asyncio sockets on one thread, so the client takes little of the CPU the
    server needs (httpx from 8 threads took about a third of a core at 30 requests/s).
    """
    started = time.perf_counter()
    done = asyncio.run(_drive(base, request, clients, seconds))
    return done / (time.perf_counter() - started)


def http_path(
    server: Server, workers: int, seconds: float, clients: int, pdf: bytes
) -> float:
    """One-shot `POST /api/v1/sign` from `clients` connections; a fresh document each time."""
    token = server.headers["Authorization"].removeprefix("Bearer ")
    options = json.dumps({"certificate_id": server.certificate_id})
    request = sign_request(server.base, token, options, pdf)
    # Warm-up: lazy imports, the signer cache, the first pages of the database.
    drive(server.base, request, clients, min(seconds, 2))
    per_second = drive(server.base, request, clients, seconds)
    print(
        f"{'HTTP POST /api/v1/sign, ' + str(workers) + ' worker(s), ' + str(clients) + ' clients':<58} {per_second:9.1f} /s",
        flush=True,
    )
    return per_second


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and every live descendant (uvicorn's workers are children)."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            total += cpu_seconds(current)
            children = Path(f"/proc/{current}/task/{current}/children").read_text()
        except FileNotFoundError:
            continue
        pending.extend(int(child) for child in children.split())
    return total


def backend_cpu_seconds(database_url: str | None) -> dict[int, float]:
    """CPU time of each PostgreSQL backend serving the bench database (none on SQLite)."""
    if not database_url:
        return {}
    from sqlalchemy import create_engine, make_url, text
    from sqlalchemy.pool import NullPool

    url = make_url(database_url)
    engine = create_engine(url.set(database="postgres"), poolclass=NullPool)
    with engine.connect() as connection:
        pids = connection.scalars(
            text("SELECT pid FROM pg_stat_activity WHERE datname = :name"),
            {"name": url.database},
        ).all()
    engine.dispose()
    spent = {}
    for pid in pids:
        with contextlib.suppress(FileNotFoundError):  # a backend that ended since
            spent[pid] = cpu_seconds(pid)
    return spent


@dataclass
class PathRun:
    per_second: float
    cpu_ms: float  # the server's process tree, per request
    database_cpu_ms: float  # PostgreSQL's backends for the bench database, per request
    p50_ms: float
    p99_ms: float


def measure_path(
    server: Server,
    request: bytes,
    clients: int,
    seconds: float,
) -> PathRun:
    """Drive `clients` connections for `seconds`; the server's CPU and the latencies per request."""
    database_url = server.database_url
    latencies: list[float] = []
    backends_before = backend_cpu_seconds(database_url)
    before, started = tree_cpu_seconds(server.pid), time.perf_counter()
    done = asyncio.run(_drive(server.base, request, clients, seconds, latencies))
    elapsed = time.perf_counter() - started
    spent = tree_cpu_seconds(server.pid) - before
    # A backend that ended during the run (a pool overflow connection) is not counted.
    backends = sum(
        spent - backends_before.get(pid, 0.0)
        for pid, spent in backend_cpu_seconds(database_url).items()
    )
    latencies.sort()
    return PathRun(
        per_second=done / elapsed,
        cpu_ms=spent * 1000 / done,
        database_cpu_ms=max(backends, 0.0) * 1000 / done,
        p50_ms=latencies[len(latencies) // 2],
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    )


def request_path_targets(
    results: dict[str, float],
    ca: x509.Certificate,
    p12: bytes,
    pdf: bytes,
    licence: bytes,
    public_key: str,
    *,
    seconds: float,
    clients: int,
    database_url: str | None,
) -> bool:
    """Issue #19's targets for one-shot `POST /api/v1/sign`, B-B, one worker; True when all are met.

    CPU per request is the server's whole process tree (the supervisor and its
    worker), divided by the requests answered; on PostgreSQL the backends' CPU is
    shown beside it. "tuned" and the engine are measured in this process, in the
    same run.
    """
    tuned_ms = CPU_MS["pyHanko tuned (key loaded once, bytes_reserved)"]
    engine_ms = CPU_MS["SignVault engine in-process"]
    # What the stack costs before the product's own work: the targets' reference.
    for app in FLOORS:
        http_floor(
            p12, pdf, ca, seconds=seconds, clients=clients, app=app,
            database_url=database_url,
        )  # fmt: skip
    with served(1, p12, licence, public_key, database_url) as server:
        token = server.headers["Authorization"].removeprefix("Bearer ")
        options = json.dumps({"certificate_id": server.certificate_id})
        request = sign_request(server.base, token, options, pdf)
        drive(server.base, request, clients, min(seconds, 3))  # warm-up
        alone = measure_path(server, request, 1, seconds)
        together = measure_path(server, request, clients, seconds)
    database = "PostgreSQL" if database_url else "SQLite"
    for label, run in (("1 client", alone), (f"{clients} clients", together)):
        print(
            f"{'HTTP /sign 1 worker, ' + database + ', ' + label:<58} {run.per_second:9.1f} /s"
            f"  p50 {run.p50_ms:6.1f} ms  p99 {run.p99_ms:6.1f} ms"
            f"  server CPU {run.cpu_ms:5.1f} ms/request"
            + (
                f" (+ PostgreSQL {run.database_cpu_ms:4.1f} ms)" if database_url else ""
            ),
            flush=True,
        )
    verdicts = [
        (
            f"CPU per request at {clients} clients <= 0.5x tuned pyHanko ({0.5 * tuned_ms:.1f} ms)",
            together.cpu_ms <= 0.5 * tuned_ms,
            f"{together.cpu_ms:.1f} ms = {together.cpu_ms / tuned_ms:.2f}x tuned {tuned_ms:.1f} ms, "
            f"{together.cpu_ms / engine_ms:.1f}x the engine's {engine_ms:.1f} ms",
        ),
        (
            f"CPU per request at {clients} clients <= 1.15x at 1 client",
            together.cpu_ms <= 1.15 * alone.cpu_ms,
            f"{together.cpu_ms:.1f} / {alone.cpu_ms:.1f} ms = {together.cpu_ms / alone.cpu_ms:.2f}x",
        ),
        ("1 client p50 <= 10 ms", alone.p50_ms <= 10, f"{alone.p50_ms:.1f} ms"),
        ("1 client p99 <= 25 ms", alone.p99_ms <= 25, f"{alone.p99_ms:.1f} ms"),
    ]
    print(f"Issue #19 targets on {database}:")
    for target, met, figures in verdicts:
        print(f"  {'met   ' if met else 'MISSED'} {target}: {figures}", flush=True)
    return all(met for _, met, _ in verdicts)


FLOORS = {
    "floor_app:app": "HTTP floor: uvicorn + FastAPI + engine only, 1 worker",
    "floor_app:persisting_app": "HTTP floor + ORM session, blobs, 5 rows, 1 worker",
}


def http_floor(
    p12: bytes,
    pdf: bytes,
    ca: x509.Certificate,
    *,
    seconds: float,
    clients: int,
    app: str = "floor_app:app",
    database_url: str | None = None,
) -> float:
    """The same requests against an app of `floor_app.py` (see there what each does)."""
    with tempfile.TemporaryDirectory() as work:
        key_file = Path(work) / "signer.p12"
        key_file.write_bytes(p12)
        data = Path(work) / "data"
        data.mkdir()
        token = "bench-floor-token"
        port = 8650
        base = f"http://127.0.0.1:{port}"
        floor_database = fresh_postgres_database(database_url) if database_url else None
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "bench"), app,
             "--port", str(port), "--log-level", "error"],
            env={**os.environ, "BENCH_FLOOR_P12": str(key_file), "PYTHONPATH": str(ROOT),
                 "BENCH_FLOOR_DATA": str(data), "BENCH_FLOOR_TOKEN": token,
                 "BENCH_FLOOR_DATABASE_URL": floor_database or ""},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            for _ in range(300):
                try:
                    httpx.get(f"{base}/docs", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.2)
            answer = httpx.post(
                f"{base}/api/v1/sign",
                files={"file": ("in.pdf", pdf, "application/pdf")},
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            )
            answer.raise_for_status()
            check(answer.content, ca)
            request = sign_request(base, token, "{}", pdf)
            drive(base, request, clients, min(seconds, 2))  # warm-up
            floor = Server(base, server.pid, {}, "", floor_database)
            alone = measure_path(floor, request, 1, seconds)
            together = measure_path(floor, request, clients, seconds)
        finally:
            server.terminate()
            server.wait(timeout=30)
            if floor_database:
                drop_postgres_database(floor_database)
    for label, run in (("1 client", alone), (f"{clients} clients", together)):
        print(
            f"{FLOORS[app] + ', ' + label:<58} {run.per_second:9.1f} /s"
            f"  p50 {run.p50_ms:6.1f} ms  server CPU {run.cpu_ms:5.1f} ms/request"
            + (
                f" (+ PostgreSQL {run.database_cpu_ms:4.1f} ms)" if database_url else ""
            ),
            flush=True,
        )
    return together.per_second


def fresh_postgres_database(url: str) -> str:
    from sqlalchemy import create_engine, make_url, text

    name = f"sv_bench_{os.getpid()}_{time.monotonic_ns()}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(url: str) -> None:
    from sqlalchemy import create_engine, make_url, text

    database = make_url(url).database
    admin = create_engine(
        make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    admin.dispose()


class KeyCachingCryptoBackend(PycaCryptographyBackend):
    """certomancer's crypto backend, keeping each parsed RSA key (as a real TSA or OCSP responder would)."""

    def __init__(self) -> None:
        self._keys: dict[bytes, Any] = {}
        self._lock = threading.Lock()

    def generic_sign(
        self,
        private_key: asn1_keys.PrivateKeyInfo,
        tbs_bytes: bytes,
        sd_algo: algos.SignedDigestAlgorithm,
    ) -> bytes:
        if sd_algo.signature_algo != "rsassa_pkcs1v15":
            return super().generic_sign(private_key, tbs_bytes, sd_algo)  # type: ignore[no-any-return]
        der = private_key.dump()
        with self._lock:
            key = self._keys.get(der)
            if key is None:
                key = self._keys[der] = serialization.load_der_private_key(
                    der, password=None
                )
        digest = getattr(hashes, sd_algo.hash_algo.upper())()
        return key.sign(tbs_bytes, padding.PKCS1v15(), digest)  # type: ignore[no-any-return]


@contextmanager
def pki_in_a_process(*, stock_certomancer: bool) -> Iterator[Any]:
    """The test PKI (tests/pki.py) issued here and served by a child process, as a remote TSA would be."""
    from tests.pki import issue_pki

    with tempfile.TemporaryDirectory() as work:
        pki = issue_pki(Path(work))
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve-pki", work, *(["--stock-certomancer"] if stock_certomancer else [])],
            stdin=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            for _ in range(300):
                try:
                    httpx.get(pki.url, timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            pki.process_id = child.pid  # for the CPU it spends
            yield pki
        finally:
            assert child.stdin is not None
            child.stdin.close()
            child.wait(timeout=30)


def serve_pki(workdir: str, *, stock_certomancer: bool) -> None:
    """Child process: serve an issued PKI until the parent closes our stdin."""
    import certomancer.crypto_utils

    from tests.pki import open_pki

    if not stock_certomancer:
        certomancer.crypto_utils.CRYPTO_BACKEND = KeyCachingCryptoBackend()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    pki = open_pki(Path(workdir))
    pki.serve()
    sys.stdin.read()
    pki.stop()


def long_term(seconds: float, *, stock_certomancer: bool) -> dict[str, float]:
    """The engine at B-B, B-T and B-LT (revocation cache on and off) against a certomancer PKI on loopback."""
    pdf = make_pdf()
    with pki_in_a_process(stock_certomancer=stock_certomancer) as pki:
        signer = CachedKeySigner(
            certificate=pki.cert("alice"),
            private_key=pki.private_key("alice"),
            chain=[pki.interm, pki.root],
        )
        timestamper = timestamper_for(pki.tsa_url)
        cache = RevocationCache()

        def sign_at(
            level: PadesLevel, max_age: timedelta = timedelta(minutes=5)
        ) -> bytes:
            out = io.BytesIO()
            sign_pdf(
                io.BytesIO(pdf),
                out,
                signer,
                SignOptions(level=level),
                signing_time=datetime.now(UTC),
                timestamper=None if level == PadesLevel.B_B else timestamper,
                revocation=revocation_fetching(
                    [pki.root], [pki.interm], cache=cache, max_age=max_age
                )
                if level == PadesLevel.B_LT
                else None,
            )
            return out.getvalue()

        variants: dict[str, tuple[str, Callable[[], bytes]]] = {
            "B-B": ("engine B-B (certomancer signer)", lambda: sign_at(PadesLevel.B_B)),
            "B-T": ("engine B-T (TSA on loopback)", lambda: sign_at(PadesLevel.B_T)),
            "B-LT cached": (
                "engine B-LT, revocation data cached",
                lambda: sign_at(PadesLevel.B_LT),
            ),
            "B-LT uncached": (
                "engine B-LT, OCSP/CRL fetched per signature",
                lambda: sign_at(PadesLevel.B_LT, timedelta(0)),
            ),
        }
        for name, (_label, work_fn) in variants.items():
            [report] = validate_pdf(
                io.BytesIO(work_fn()), trust_roots=[pki.root], allow_fetching=False
            )
            assert report.bottom_line, f"{name}: output does not validate"
            assert report.pades_level == name.split()[0], (name, report.pades_level)

        def stamp() -> object:
            return engine_run(timestamper.async_timestamp(b"\0" * 32, "sha256"))

        results = {
            "TSA": rate(
                "TSA round trip alone (HTTPTimeStamper)", seconds, stamp, cpu=True
            )
        }
        for name, (label, work_fn) in variants.items():
            hits, misses = cache.hits, cache.misses
            results[name] = rate(label, seconds, work_fn, cpu=True)
            if name == "B-LT cached":
                print(
                    f"{'':<58}   revocation cache: {cache.hits - hits} hits, {cache.misses - misses} misses"
                )
    print(
        f"B-LT cached / B-B: {results['B-LT cached'] / results['B-B']:.2f}x; "
        f"B-LT cached / B-T: {results['B-LT cached'] / results['B-T']:.2f}x; "
        f"B-LT cached / uncached: {results['B-LT cached'] / results['B-LT uncached']:.2f}x"
    )
    return results


def http_long_term(
    licence: bytes,
    public_key: str,
    database_url: str | None,
    *,
    seconds: float,
    clients: int,
    stock_certomancer: bool,
) -> dict[str, float]:
    """One-shot `POST /api/v1/sign` at B-B, then B-LT, against one worker, with the PKI's TSA and responders.

    The server's revocation cache serves every B-LT signature after the first;
    each B-LT signature still waits for its own timestamp, which the concurrent
    clients overlap. One B-LT answer is validated offline from its DSS.
    """
    pdf = make_pdf()
    results: dict[str, float] = {}
    with pki_in_a_process(stock_certomancer=stock_certomancer) as pki:
        p12 = pki.pkcs12("alice", b"pw")
        with served(
            1, p12, licence, public_key, database_url, SIGNVAULT_TSA_URL=pki.tsa_url
        ) as server:
            token = server.headers["Authorization"].removeprefix("Bearer ")
            for level in ("B-B", "B-LT"):
                options = json.dumps(
                    {"certificate_id": server.certificate_id, "level": level}
                )
                answer = httpx.post(
                    f"{server.base}/api/v1/sign",
                    files={"file": ("in.pdf", pdf, "application/pdf")},
                    data={"options": options},
                    headers=server.headers,
                    timeout=60,
                )
                answer.raise_for_status()
                [report] = validate_pdf(
                    io.BytesIO(answer.content),
                    trust_roots=[pki.root],
                    allow_fetching=False,
                )
                assert report.bottom_line, f"HTTP {level}: output does not validate"
                assert report.pades_level == level, (level, report.pades_level)
                request = sign_request(server.base, token, options, pdf)
                drive(server.base, request, clients, min(seconds, 2))  # warm-up
                before = cpu_seconds(server.pid), cpu_seconds(pki.process_id)
                started = time.perf_counter()
                results[level] = drive(server.base, request, clients, seconds)
                done = results[level] * (time.perf_counter() - started)
                server_ms, pki_ms = (
                    (cpu_seconds(pid) - spent) * 1000 / done
                    for pid, spent in zip(
                        (server.pid, pki.process_id), before, strict=True
                    )
                )
                print(
                    f"{'HTTP POST /api/v1/sign ' + level + ', 1 worker, ' + str(clients) + ' clients':<58} {results[level]:9.1f} /s"
                    f"  server CPU {server_ms:5.1f} ms, TSA/OCSP process CPU {pki_ms:5.1f} ms",
                    flush=True,
                )
    print(f"HTTP B-LT cached / B-B: {results['B-LT'] / results['B-B']:.2f}x")
    return results


def write_large_pdf(path: Path, size: int) -> None:
    """A one-page PDF drawing an RGB image of random bytes: about `size` bytes that do not compress."""
    side = int((size / 3) ** 0.5)
    image_bytes = side * side * 3
    content = b"q 512 0 0 512 50 140 cm /Im0 Do Q"
    offsets = []
    with path.open("wb") as out:
        out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
        for body in (
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /XObject << /Im0 4 0 R >> >> /Contents 5 0 R >>",
            None,  # the image, streamed below
            b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        ):
            offsets.append(out.tell())
            out.write(b"%d 0 obj\n" % len(offsets))
            if body is None:
                out.write(
                    b"<< /Type /XObject /Subtype /Image /Width %d /Height %d "
                    b"/ColorSpace /DeviceRGB /BitsPerComponent 8 /Length %d >>\nstream\n"
                    % (side, side, image_bytes)
                )
                for left in range(image_bytes, 0, -(1 << 20)):
                    out.write(os.urandom(min(left, 1 << 20)))
                out.write(b"\nendstream")
            else:
                out.write(body)
            out.write(b"\nendobj\n")
        xref = out.tell()
        out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(offsets) + 1))
        for offset in offsets:
            out.write(b"%010d 00000 n \n" % offset)
        out.write(
            b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
            % (len(offsets) + 1, xref)
        )


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


@contextmanager
def peak_growth(pid: int, into: dict[str, float], step: str) -> Iterator[None]:
    """Time a step and the server's peak RSS growth during it (high-water mark reset first)."""
    baseline = memory_kib(pid, "VmRSS")
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    started = time.perf_counter()
    yield
    into[f"{step} s"] = time.perf_counter() - started
    into[f"{step} MB"] = (memory_kib(pid, "VmHWM") - baseline) / 1024


def large_documents(server: Server, sizes_mb: list[int], ca: x509.Certificate) -> None:
    """Upload, sign and download big PDFs through the API; the server's time and peak memory growth per step."""
    # Warm-up: the first signature loads the key from the vault and imports what
    # signing needs; the first large upload grows the parser's and allocator's
    # buffers (2-4 MB, once, whatever the size).
    with tempfile.TemporaryDirectory() as work:
        small = Path(work) / "small.pdf"
        write_large_pdf(small, 10 * 1024 * 1024)
        with small.open("rb") as f:
            document = httpx.post(
                f"{server.base}/api/v1/documents",
                files={"file": ("small.pdf", f, "application/pdf")},
                headers=server.headers,
            ).json()
        httpx.post(
            f"{server.base}/api/v1/documents/{document['id']}/sign",
            json={"certificate_id": server.certificate_id},
            headers=server.headers,
        ).raise_for_status()
        httpx.get(
            f"{server.base}/api/v1/documents/{document['id']}/content",
            headers=server.headers,
        ).raise_for_status()
    print(
        f"{'size':>8} {'upload s':>9} {'+MB':>7} {'sign s':>8} {'+MB':>7} {'download s':>11} {'+MB':>7} {'peak/size':>10}"
    )
    for size_mb in sizes_mb:
        with tempfile.TemporaryDirectory() as work:
            source = Path(work) / "large.pdf"
            write_large_pdf(source, size_mb * 1024 * 1024)
            size = source.stat().st_size
            steps: dict[str, float] = {}
            with httpx.Client(timeout=600, headers=server.headers) as http:
                with peak_growth(server.pid, steps, "upload"), source.open("rb") as f:
                    document = http.post(
                        f"{server.base}/api/v1/documents",
                        files={"file": ("large.pdf", f, "application/pdf")},
                    )
                document.raise_for_status()
                document_id = document.json()["id"]
                with peak_growth(server.pid, steps, "sign"):
                    http.post(
                        f"{server.base}/api/v1/documents/{document_id}/sign",
                        json={"certificate_id": server.certificate_id},
                    ).raise_for_status()
                signed = Path(work) / "signed.pdf"
                with (
                    peak_growth(server.pid, steps, "download"),
                    signed.open("wb") as out,
                    http.stream(
                        "GET", f"{server.base}/api/v1/documents/{document_id}/content"
                    ) as response,
                ):
                    response.raise_for_status()
                    for chunk in response.iter_bytes(1 << 20):
                        out.write(chunk)
            check_file(signed, ca)
            peak = max(steps["upload MB"], steps["sign MB"], steps["download MB"])
            print(
                f"{size / 1e6:6.0f} MB {steps['upload s']:9.2f} {steps['upload MB']:7.1f} "
                f"{steps['sign s']:8.2f} {steps['sign MB']:7.1f} {steps['download s']:11.2f} "
                f"{steps['download MB']:7.1f} {peak * 1024 * 1024 / size:10.3f}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--http-seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument(
        "--request-path-only",
        action="store_true",
        help="only the in-process rows and issue #19's request-path targets",
    )
    parser.add_argument("--skip-long-term", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--sizes", default="10,100", help="PDF sizes (MB) for the memory rows"
    )
    parser.add_argument(
        "--blob-store",
        choices=("filesystem", "s3"),
        default="filesystem",
        help="where the memory rows' server keeps documents: s3 starts SeaweedFS on loopback",
    )
    parser.add_argument("--serve-pki", help=argparse.SUPPRESS)
    parser.add_argument(
        "--stock-certomancer",
        action="store_true",
        help="leave certomancer re-parsing its keys for every token and OCSP answer",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL server to create bench databases on (default: SQLite)",
    )
    args = parser.parse_args()
    if args.serve_pki:
        serve_pki(args.serve_pki, stock_certomancer=args.stock_certomancer)
        return
    ca, _ca_key, cert, key = make_pki()
    pdf = make_pdf()
    print(
        f"PDF {len(pdf)} bytes, RSA-2048, PAdES B-B, python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    results = in_process(args.seconds, pdf, ca, cert, key)
    licence, public_key = unlimited_licence()
    p12 = pkcs12.serialize_key_and_certificates(
        b"b", key, cert, [ca], serialization.BestAvailableEncryption(b"pw")
    )
    request_path_targets(
        results, ca, p12, pdf, licence, public_key,
        seconds=args.http_seconds, clients=args.clients, database_url=args.database_url,
    )  # fmt: skip
    if args.request_path_only:
        return
    if not args.skip_long_term:
        long_term(args.seconds, stock_certomancer=args.stock_certomancer)
    if not args.skip_http:
        rates = {}
        for workers in (1, 2):
            with served(workers, p12, licence, public_key, args.database_url) as server:
                rates[workers] = http_path(
                    server, workers, args.http_seconds, args.clients, pdf
                )
        one, two = rates[1], rates[2]
        print(
            f"HTTP 1 worker / tuned pyHanko: {one / results['pyHanko tuned']:.2f}x; 2 workers / 1 worker: {two / one:.2f}x"
        )
    if not (args.skip_http or args.skip_long_term):
        http_long_term(
            licence,
            public_key,
            args.database_url,
            seconds=args.http_seconds,
            clients=args.clients,
            stock_certomancer=args.stock_certomancer,
        )
    if not args.skip_memory:
        sizes = [int(size) for size in args.sizes.split(",")]
        with (
            blob_store(args.blob_store) as store_settings,
            served(
                1,
                p12,
                licence,
                public_key,
                args.database_url,
                SIGNVAULT_MAX_UPLOAD_BYTES=str(2 * max(sizes) * 1024 * 1024),
                **store_settings,
            ) as server,
        ):
            print(f"memory rows: documents on {args.blob_store}")
            large_documents(server, sizes, ca)


@contextmanager
def blob_store(kind: str) -> Iterator[dict[str, str]]:
    """The server's blob store settings; for s3, a SeaweedFS (tests/s3server.py) and a bucket."""
    if kind == "filesystem":
        yield {}
        return
    from tests.s3server import SeaweedServer

    with tempfile.TemporaryDirectory() as work:
        s3 = SeaweedServer(Path(work))
        try:
            yield {
                "SIGNVAULT_BLOB_STORE": f"s3://{s3.new_bucket()}/bench",
                "SIGNVAULT_S3_ENDPOINT_URL": s3.endpoint_url,
                **s3.aws_environment(),
            }
        finally:
            s3.stop()


if __name__ == "__main__":
    main()
