"""Cost of one key load from the vault versus one RSA-2048 signature.

A key load is what a signer-cache miss pays: open the sealed PKCS#8 blob
(data-key unwrap + AES-GCM, one SELECT) and parse the key into a pyHanko
signer. Run:  .venv/bin/python bench/vault.py [--reps N]
"""

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pyhanko.sign.signers import SimpleSigner

from app.certificates import keystores
from app.core.crypto import EnvelopeCipher, MasterKey
from app.core.db import make_engine, make_sessionmaker
from app.core.migrations import upgrade_to_head
from tests.certificates.pki import make_ca, make_signer


def median_ms(action: Callable[[], object], reps: int) -> float:
    action()  # warm-up
    timings = []
    for _ in range(reps):
        start = time.perf_counter()
        action()
        timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=50)
    reps = parser.parse_args().reps

    ca = make_ca()
    issued = make_signer(ca, key_type="rsa2048")
    assert isinstance(issued.key, rsa.RSAPrivateKey)
    pkcs8 = issued.key_pkcs8_der()
    certificate_der = issued.certificate.public_bytes(serialization.Encoding.DER)
    with tempfile.TemporaryDirectory() as work:
        engine = make_engine(f"sqlite:///{Path(work) / 'bench.db'}")
        upgrade_to_head(engine)
        factory = make_sessionmaker(engine)
        cipher = EnvelopeCipher(MasterKey.generate())
        with factory.begin() as session:
            blob = cipher.seal(session, pkcs8, purpose="signing-key")

        with factory() as session:

            def open_blob() -> bytes:
                return cipher.open(session, blob, purpose="signing-key")

            def key_load() -> object:
                return keystores.pkcs12_signer(
                    open_blob(), certificate_der, [ca.certificate]
                )

            def key_load_checked() -> object:
                return serialization.load_der_private_key(open_blob(), password=None)

            signer = keystores.pkcs12_signer(open_blob(), certificate_der, [])
            stock = SimpleSigner(
                signing_cert=signer.signing_cert,
                signing_key=signer.signing_key,
                cert_registry=signer.cert_registry,
            )
            digest = b"\x01" * 32
            rows = [
                (
                    "open sealed blob (unwrap + AES-GCM + SELECT)",
                    median_ms(open_blob, reps),
                ),
                (
                    "key load from the vault (open + parse into a signer)",
                    median_ms(key_load, reps),
                ),
                (
                    "key load with OpenSSL's RSA check (not skipped)",
                    median_ms(key_load_checked, reps),
                ),
                (
                    "RSA-2048 signature, cached key (vault signer)",
                    median_ms(lambda: signer.sign_raw(digest, "sha256"), reps),
                ),
                (
                    "RSA-2048 signature, stock SimpleSigner (re-parses the key)",
                    median_ms(lambda: stock.sign_raw(digest, "sha256"), reps),
                ),
            ]
        engine.dispose()
    print(f"median of {reps} runs, one process")
    for label, value in rows:
        print(f"{label:<62} {value:8.3f} ms")
    print(f"key load / cached signature: {rows[1][1] / rows[3][1]:.1f}x")


if __name__ == "__main__":
    main()
