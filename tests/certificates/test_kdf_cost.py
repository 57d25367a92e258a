"""A PKCS#12 file cannot make the server run a costly key derivation.

The cap is lowered to 50,000 iterations here, so that files over it are cheap to
make; on the code before the check each of them was opened at its full cost.
"""

import base64
import hashlib
import hmac
import os

import httpx2
import pytest
from asn1crypto import algos, cms, core, keys
from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.serialization import pkcs12
from fastapi.testclient import TestClient

from app.certificates.pkcs12_cost import pkcs12_kdf
from app.core.config import Settings
from tests.certificates.conftest import P12_PASSWORD
from tests.certificates.pki import Issued, make_pkcs12, make_rc2_pkcs12
from tests.factories import assert_problem

CAP = 50_000
BASE = "/api/v1/certificates"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"pkcs12_max_iterations": CAP})


def pbes2_file(signer: Issued, rounds: int, *, key_only: bool = False) -> bytes:
    """As `cryptography` exports: the key and the certificate layer at `rounds`."""
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(rounds)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(P12_PASSWORD.encode())
    )
    return pkcs12.serialize_key_and_certificates(
        b"test",
        signer.key,  # type: ignore[arg-type]
        None if key_only else signer.certificate,
        None,
        encryption,
    )


def _bmp(password: str) -> bytes:
    return password.encode("utf-16-be") + b"\x00\x00"


def assemble(contents: list[cms.ContentInfo], *, mac_iterations: int = 2048) -> bytes:
    """A PFX around these layers, with a true SHA-256 MAC."""
    auth_safe = asn1_pkcs12.AuthenticatedSafe(contents).dump()
    salt = os.urandom(8)
    mac_key = pkcs12_kdf("sha256", _bmp(P12_PASSWORD), salt, mac_iterations, 32, 3)
    return asn1_pkcs12.Pfx(
        {
            "version": "v3",
            "auth_safe": {"content_type": "data", "content": auth_safe},
            "mac_data": {
                "mac": {
                    "digest_algorithm": {"algorithm": "sha256"},
                    "digest": hmac.digest(mac_key, auth_safe, hashlib.sha256),
                },
                "mac_salt": salt,
                "iterations": mac_iterations,
            },
        }
    ).dump()


def encrypted_layer(bags: list[asn1_pkcs12.SafeBag], rounds: int) -> cms.ContentInfo:
    """SafeContents encrypted with PBES2 (PBKDF2-SHA256, AES-256-CBC) at `rounds`."""
    salt, iv = os.urandom(16), os.urandom(16)
    key = PBKDF2HMAC(hashes.SHA256(), 32, salt, rounds).derive(P12_PASSWORD.encode())
    padder = padding.PKCS7(128).padder()
    plain = padder.update(asn1_pkcs12.SafeContents(bags).dump()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    algorithm = keys.EncryptionAlgorithm(
        {
            "algorithm": "pbes2",
            "parameters": {
                "key_derivation_func": {
                    "algorithm": "pbkdf2",
                    "parameters": {
                        "salt": algos.Pbkdf2Salt(
                            name="specified", value=core.OctetString(salt)
                        ),
                        "iteration_count": rounds,
                        "prf": {"algorithm": "sha256"},
                    },
                },
                "encryption_scheme": {"algorithm": "aes256_cbc", "parameters": iv},
            },
        }
    )
    return cms.ContentInfo(
        {
            "content_type": "encrypted_data",
            "content": cms.EncryptedData(
                {
                    "version": "v0",
                    "encrypted_content_info": {
                        "content_type": "data",
                        "content_encryption_algorithm": algorithm,
                        "encrypted_content": encryptor.update(plain)
                        + encryptor.finalize(),
                    },
                }
            ),
        }
    )


def plain_bags(data: bytes) -> list[asn1_pkcs12.SafeBag]:
    """The bags of a file's unencrypted layers."""
    pfx = asn1_pkcs12.Pfx.load(data)
    return [
        bag
        for info in pfx.authenticated_safe
        if info["content_type"].native == "data"
        for bag in asn1_pkcs12.SafeContents.load(info["content"].native)
    ]


def cert_bag(signer: Issued) -> asn1_pkcs12.SafeBag:
    return asn1_pkcs12.SafeBag(
        {
            "bag_id": "cert_bag",
            "bag_value": asn1_pkcs12.CertBag(
                {
                    "cert_id": "x509",
                    "cert_value": core.ParsableOctetString(signer.certificate_der()),
                }
            ),
        }
    )


def inspect(
    client: TestClient,
    headers: dict[str, str],
    data: bytes,
    password: str = P12_PASSWORD,
) -> httpx2.Response:
    return client.post(
        f"{BASE}/inspect",
        files={"file": ("a.p12", data)},
        data={"password": password},
        headers=headers,
    )


def test_legit_counts_under_the_cap_are_opened(
    client: TestClient, admin_headers: dict[str, str], signer: Issued
) -> None:
    for data in (
        make_pkcs12(signer, P12_PASSWORD),
        make_pkcs12(signer, P12_PASSWORD, encryption="3des"),
        pbes2_file(signer, CAP),
    ):
        response = inspect(client, admin_headers, data)
        assert response.status_code == 200, response.text


def test_legacy_rc2_layer_is_opened_and_checked(
    client: TestClient, admin_headers: dict[str, str], signer: Issued
) -> None:
    data = make_rc2_pkcs12(signer, P12_PASSWORD)
    if data is None:
        pytest.skip("the openssl command has no legacy provider")
    assert inspect(client, admin_headers, data).status_code == 200
    wrong = inspect(client, admin_headers, data, "wrong")
    assert_problem(wrong, 422, "pkcs12_wrong_password")


def test_pbes2_count_over_the_cap_is_refused_before_deriving(
    client: TestClient, admin_headers: dict[str, str], signer: Issued
) -> None:
    data = pbes2_file(signer, CAP * 4)
    body = assert_problem(
        inspect(client, admin_headers, data), 422, "pkcs12_kdf_too_costly"
    )
    assert str(CAP * 4) in body["detail"]
    assert "SIGNVAULT_PKCS12_MAX_ITERATIONS" in body["detail"]
    # A wrong password meets the same refusal, before any derivation.
    assert_problem(
        inspect(client, admin_headers, data, "wrong"), 422, "pkcs12_kdf_too_costly"
    )


def test_import_and_base64_routes_refuse_it_too(
    client: TestClient, admin_headers: dict[str, str], signer: Issued
) -> None:
    data = pbes2_file(signer, CAP + 1)
    imported = client.post(
        BASE,
        files={"file": ("a.p12", data)},
        data={"password": P12_PASSWORD},
        headers=admin_headers,
    )
    assert_problem(imported, 422, "pkcs12_kdf_too_costly")
    for path, field in (
        ("/base64", "pkcs12_base64"),
        ("/inspect/base64", "data_base64"),
    ):
        response = client.post(
            f"{BASE}{path}",
            json={field: base64.b64encode(data).decode(), "password": P12_PASSWORD},
            headers=admin_headers,
        )
        assert_problem(response, 422, "pkcs12_kdf_too_costly")


def test_a_huge_mac_count_is_refused(
    client: TestClient, admin_headers: dict[str, str], signer: Issued
) -> None:
    # 2^31 - 1 SHA-256 rounds took minutes; the MAC is derived before anything else.
    pfx = asn1_pkcs12.Pfx.load(make_pkcs12(signer, P12_PASSWORD))
    pfx["mac_data"]["iterations"] = 2**31 - 1
    body = assert_problem(
        inspect(client, admin_headers, pfx.dump(force=True), "wrong"),
        422,
        "pkcs12_kdf_too_costly",
    )
    assert "MAC" in body["detail"]


def test_a_costly_key_hidden_in_an_encrypted_layer_is_refused(
    client: TestClient, admin_headers: dict[str, str], signer: Issued
) -> None:
    # The key's count is visible only once its layer (a cheap one) is decrypted.
    key_bags = plain_bags(pbes2_file(signer, CAP * 4, key_only=True))
    layer = encrypted_layer([cert_bag(signer), *key_bags], rounds=2048)
    body = assert_problem(
        inspect(client, admin_headers, assemble([layer])),
        422,
        "pkcs12_kdf_too_costly",
    )
    assert "private key" in body["detail"]
    # The same layout with a key under the cap opens: the check reads, it does not forbid.
    cheap_bags = plain_bags(pbes2_file(signer, 2048, key_only=True))
    cheap = assemble([encrypted_layer([cert_bag(signer), *cheap_bags], rounds=2048)])
    assert inspect(client, admin_headers, cheap).status_code == 200


def test_many_layers_under_the_cap_are_refused_together(
    client: TestClient, admin_headers: dict[str, str], signer: Issued
) -> None:
    layers = [encrypted_layer([cert_bag(signer)], rounds=CAP) for _ in range(5)]
    body = assert_problem(
        inspect(client, admin_headers, assemble(layers)),
        422,
        "pkcs12_kdf_too_costly",
    )
    assert "together" in body["detail"]


def test_an_enveloped_layer_is_refused_unopened(
    client: TestClient, admin_headers: dict[str, str], signer: Issued
) -> None:
    enveloped = cms.ContentInfo(
        {
            "content_type": "enveloped_data",
            "content": cms.EnvelopedData(
                {
                    "version": "v0",
                    "recipient_infos": [],
                    "encrypted_content_info": {
                        "content_type": "data",
                        "content_encryption_algorithm": {
                            "algorithm": "aes256_cbc",
                            "parameters": os.urandom(16),
                        },
                        "encrypted_content": os.urandom(32),
                    },
                }
            ),
        }
    )
    response = inspect(client, admin_headers, assemble([enveloped]))
    assert_problem(response, 422, "pkcs12_unsupported_protection")


def test_the_default_cap_is_two_million() -> None:
    assert Settings(_env_file=None).pkcs12_max_iterations == 2_000_000
