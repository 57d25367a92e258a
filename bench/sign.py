"""Signing throughput: raw RSA, pyHanko stock and tuned, the engine, and the full HTTP path.

    python bench/sign.py [--seconds 3] [--http-seconds 10] [--clients 8]

Same 20 KB one-page PDF and RSA-2048 key everywhere; PAdES B-B; bytes in, bytes out.
Every variant's first output is validated with pyHanko before it is timed.
The HTTP part starts `signvault serve` (1, then 2 workers) on loopback with a
fresh SQLite data dir and an unlimited test licence, and posts the PDF to
`POST /api/v1/sign` (one shot: upload, sign, download) from N client threads with `Connection: close`
(keep-alive would pin each client to one worker).
"""

import argparse
import asyncio
import base64
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from asn1crypto import x509 as asn1_x509
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
from reportlab.pdfgen import canvas

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.license.verifier import Limits, new_payload, sign_license  # noqa: E402
from app.signing.engine import CachedKeySigner, SignOptions, sign_pdf  # noqa: E402


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


def rate(label: str, seconds: float, work: Callable[[], object]) -> float:
    work()  # warm-up
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        work()
        count += 1
    per_second = count / (time.perf_counter() - started)
    print(
        f"{label:<58} {per_second:9.1f} /s  ({1000 / per_second:6.2f} ms)", flush=True
    )
    return per_second


def check(pdf: bytes, ca: x509.Certificate) -> None:
    root = asn1_x509.Certificate.load(ca.public_bytes(serialization.Encoding.DER))
    [embedded] = PdfFileReader(io.BytesIO(pdf)).embedded_signatures
    status = validate_pdf_signature(embedded, ValidationContext(trust_roots=[root]))
    assert status.bottom_line, "output does not validate"


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
    loaded = CachedKeySigner(
        certificate=asn1_x509.Certificate.load(
            cert.public_bytes(serialization.Encoding.DER)
        ),
        private_key=key,
        chain=[asn1_x509.Certificate.load(ca.public_bytes(serialization.Encoding.DER))],
    )
    loaded.signed_attr_prov_spec = None

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


@contextmanager
def served(
    workers: int, licence: bytes, public_key: str, database_url: str | None
) -> Iterator[str]:
    """`signvault serve` on loopback with a fresh data dir (and database); yields its base URL."""
    with tempfile.TemporaryDirectory() as work:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNVAULT_")}
        env.update(
            SIGNVAULT_DATA_DIR=work,
            SIGNVAULT_ADMIN_PASSWORD="Bench-Passw0rd!",
            SIGNVAULT_LICENSE_PUBLIC_KEY=public_key,
            SIGNVAULT_RATE_LIMIT_PER_MINUTE="0",  # measure signing, not the throttle
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
            wait_ready(base)
            yield base
        finally:
            server.terminate()
            server.wait(timeout=30)


def wait_ready(base: str) -> None:
    for _ in range(300):
        try:
            if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{base} did not become ready")


def prepare(base: str, licence: bytes, p12: bytes) -> tuple[str, str]:
    """Install the licence, import the key and assign it to the admin: (token, options JSON)."""
    token = httpx.post(
        f"{base}/api/v1/auth/login",
        json={"username": "admin", "password": "Bench-Passw0rd!"},
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
    return token, json.dumps({"certificate_id": certificate["id"]})


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


async def _drive(base: str, request: bytes, clients: int, seconds: float) -> int:
    host, port = base.removeprefix("http://").split(":")
    stop = time.perf_counter() + seconds
    done = 0

    async def client() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(request)
            response = await reader.read(-1)  # the server closes after answering
            writer.close()
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
    workers: int,
    seconds: float,
    clients: int,
    pdf: bytes,
    p12: bytes,
    licence: bytes,
    public_key: str,
    database_url: str | None,
) -> float:
    with served(workers, licence, public_key, database_url) as base:
        token, options = prepare(base, licence, p12)
        request = sign_request(base, token, options, pdf)
        # Warm-up: lazy imports, the signer cache, the first pages of the database.
        drive(base, request, clients, min(seconds, 2))
        per_second = drive(base, request, clients, seconds)
        print(
            f"{'HTTP POST /api/v1/sign, ' + str(workers) + ' worker(s), ' + str(clients) + ' clients':<58} {per_second:9.1f} /s",
            flush=True,
        )
        return per_second


def http_inputs(
    ca: x509.Certificate, cert: x509.Certificate, key: rsa.RSAPrivateKey
) -> tuple[bytes, str, bytes]:
    """An unlimited licence, the issuer's public key (base64) and the signer as PKCS#12."""
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
    licence = sign_license(payload, issuer).encode()
    p12 = pkcs12.serialize_key_and_certificates(
        b"b", key, cert, [ca], serialization.BestAvailableEncryption(b"pw")
    )
    return licence, public_key, p12


def fresh_postgres_database(url: str) -> str:
    from sqlalchemy import create_engine, make_url, text

    name = f"sv_bench_{os.getpid()}_{time.monotonic_ns()}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--http-seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL server to create bench databases on (default: SQLite)",
    )
    args = parser.parse_args()
    ca, _ca_key, cert, key = make_pki()
    pdf = make_pdf()
    print(
        f"PDF {len(pdf)} bytes, RSA-2048, PAdES B-B, python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    results = in_process(args.seconds, pdf, ca, cert, key)
    if not args.skip_http:
        licence, public_key, p12 = http_inputs(ca, cert, key)
        one = http_path(
            1,
            args.http_seconds,
            args.clients,
            pdf,
            p12,
            licence,
            public_key,
            args.database_url,
        )
        two = http_path(
            2,
            args.http_seconds,
            args.clients,
            pdf,
            p12,
            licence,
            public_key,
            args.database_url,
        )
        print(
            f"HTTP 1 worker / tuned pyHanko: {one / results['pyHanko tuned']:.2f}x; 2 workers / 1 worker: {two / one:.2f}x"
        )


if __name__ == "__main__":
    main()
