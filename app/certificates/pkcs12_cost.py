"""The cost of a PKCS#12 file's key derivations, read from its ASN.1 before any runs.

A PKCS#12 file names its own iteration counts: the MAC's, each encrypted
layer's (PBES2/PBKDF2 or the PKCS#12 PBE) and each shrouded key's. A 2.5 KB
file asking for 2^31 iterations keeps OpenSSL busy for minutes, and a wrong
password costs the same, since the MAC is derived first. So every count is
read and checked here first.

A shrouded key can sit inside an encrypted layer, where its count is not
visible until the layer is opened. Such layers are decrypted here (their own
count checked first), and the bags inside checked in turn, before the file
goes to `cryptography`. A layer that cannot be opened here (an unknown
scheme, public-key privacy mode) is refused rather than handed on unseen.
With a wrong password the first layer fails to decrypt and nothing else runs,
so a wrong password costs one derivation under the cap.
"""

import hashlib
import math
from collections.abc import Iterator

from asn1crypto import cms, keys
from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from app.certificates.errors import (
    NotPkcs12,
    Pkcs12KdfTooCostly,
    Pkcs12UnsupportedProtection,
    WrongPassword,
)

# The file's derivations together may cost this many times the per-count cap:
# a MAC, an encrypted certificate layer and a key or two at the cap.
TOTAL_COST_FACTOR = 4
# Encrypted layers or bags nested inside each other beyond this are refused.
_MAX_DEPTH = 4

_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha1": hashes.SHA1(),  # noqa: S303 (PBKDF2-HMAC-SHA1, still a sound KDF)
    "sha224": hashes.SHA224(),
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}
_PKCS12_KDF_HASHES = {"sha1", "sha224", "sha256", "sha384", "sha512", "md5"}


class _Budget:
    def __init__(self, max_iterations: int) -> None:
        self.max_iterations = max_iterations
        self.left = max_iterations * TOTAL_COST_FACTOR

    def spend(self, iterations: int, what: str) -> None:
        if iterations > self.max_iterations:
            raise Pkcs12KdfTooCostly(
                f"The PKCS#12 file's {what} asks for {iterations} key-derivation iterations; "
                f"the limit is {self.max_iterations} (setting SIGNVAULT_PKCS12_MAX_ITERATIONS)."
            )
        self.left -= iterations
        if self.left < 0:
            raise Pkcs12KdfTooCostly(
                "The PKCS#12 file's key derivations together ask for more than "
                f"{TOTAL_COST_FACTOR * self.max_iterations} iterations "
                "(setting SIGNVAULT_PKCS12_MAX_ITERATIONS)."
            )


def check_kdf_cost(data: bytes, password: str, *, max_iterations: int) -> None:
    """Refuse a PKCS#12 file whose key derivations would cost more than the caps.

    Raises:
        Pkcs12KdfTooCostly: a count over `max_iterations`, or all of them over
            TOTAL_COST_FACTOR times it.
        Pkcs12UnsupportedProtection: a layer whose cost cannot be read.
        WrongPassword: an encrypted layer does not decrypt with `password`.
        NotPkcs12: the structure is not a PKCS#12 one.
    """
    budget = _Budget(max_iterations)
    try:
        pfx = asn1_pkcs12.Pfx.load(data, strict=True)
        mac_data = pfx["mac_data"]
        if mac_data.native is not None:
            algorithm = mac_data["mac"]["digest_algorithm"]["algorithm"].native
            if algorithm not in _PKCS12_KDF_HASHES:
                raise Pkcs12UnsupportedProtection(
                    f"The PKCS#12 file's MAC uses {algorithm}, whose cost cannot be checked."
                )
            budget.spend(mac_data["iterations"].native, "MAC")
        contents = list(pfx.authenticated_safe)
        # Every visible count first: a costly file is refused before any derivation.
        for content_info in contents:
            kind = content_info["content_type"].native
            if kind == "encrypted_data":
                budget.spend(
                    _iterations(_layer_algorithm(content_info)), "encrypted layer"
                )
            elif kind != "data":
                raise Pkcs12UnsupportedProtection(
                    f"The PKCS#12 file holds a {kind} layer, which the vault does not open."
                )
        for content_info in contents:
            if content_info["content_type"].native == "data":
                _check_bags(_safe_contents(content_info["content"].native), budget, 0)
        for content_info in contents:
            if content_info["content_type"].native == "encrypted_data":
                inner = _decrypt_layer(content_info, password)
                _check_bags(_safe_contents(inner), budget, 0)
    except (ValueError, TypeError, KeyError):
        raise NotPkcs12("The file is not a well-formed PKCS#12 archive.") from None


def _safe_contents(der: bytes) -> asn1_pkcs12.SafeContents:
    contents = asn1_pkcs12.SafeContents.load(der, strict=True)
    contents.native  # noqa: B018 (parse it all now: a malformed bag is NotPkcs12 here)
    return contents


def _check_bags(
    contents: asn1_pkcs12.SafeContents, budget: _Budget, depth: int
) -> None:
    if depth > _MAX_DEPTH:
        raise Pkcs12UnsupportedProtection("The PKCS#12 file nests its bags too deeply.")
    for bag in _bags(contents):
        kind = bag["bag_id"].native
        if kind == "pkcs8_shrouded_key_bag":
            algorithm = bag["bag_value"]["encryption_algorithm"]
            budget.spend(_iterations(algorithm), "private key")
        elif kind == "safe_contents":
            _check_bags(bag["bag_value"], budget, depth + 1)


def _bags(contents: asn1_pkcs12.SafeContents) -> Iterator[asn1_pkcs12.SafeBag]:
    yield from contents


def _layer_algorithm(content_info: cms.ContentInfo) -> keys.EncryptionAlgorithm:
    encrypted: cms.EncryptedData = content_info["content"]
    algorithm: keys.EncryptionAlgorithm = encrypted["encrypted_content_info"][
        "content_encryption_algorithm"
    ]
    return algorithm


def _iterations(algorithm: keys.EncryptionAlgorithm) -> int:
    try:
        kdf = algorithm.kdf
        iterations: int = algorithm.kdf_iterations
    except ValueError:
        raise Pkcs12UnsupportedProtection(
            f"The PKCS#12 file is encrypted with {algorithm['algorithm'].native}, "
            "whose cost cannot be checked."
        ) from None
    if kdf not in ("pbkdf2", "pkcs12_kdf"):
        raise Pkcs12UnsupportedProtection(
            f"The PKCS#12 file derives its keys with {kdf}, which the vault does not open."
        )
    return iterations


def _decrypt_layer(content_info: cms.ContentInfo, password: str) -> bytes:
    """The SafeContents inside an encrypted layer, its count already checked."""
    algorithm = _layer_algorithm(content_info)
    ciphertext = content_info["content"]["encrypted_content_info"][
        "encrypted_content"
    ].native
    if ciphertext is None:
        raise NotPkcs12("An encrypted PKCS#12 layer holds no data.")
    key, iv, cipher_name = _key_and_iv(algorithm, password)
    try:
        if cipher_name == "rc2":
            # cryptography's RC2 takes only 128-bit keys; PKCS#12's RC2-40 needs 40.
            padded = rc2_cbc_decrypt(key, len(key) * 8, iv, ciphertext)
        else:
            decryptor = _cipher(cipher_name, key, iv).decryptor()
            padded = decryptor.update(ciphertext) + decryptor.finalize()
        unpadder = padding.PKCS7(len(iv) * 8).unpadder()
        plain: bytes = unpadder.update(padded) + unpadder.finalize()
        asn1_pkcs12.SafeContents.load(plain, strict=True).native  # noqa: B018
    except ValueError:
        raise WrongPassword("The password does not open this PKCS#12 file.") from None
    return plain


def _key_and_iv(
    algorithm: keys.EncryptionAlgorithm, password: str
) -> tuple[bytes, bytes, str]:
    cipher_name = algorithm.encryption_cipher
    key_length = algorithm.key_length
    if algorithm.kdf == "pbkdf2":
        hmac = algorithm.kdf_hmac
        if hmac not in _HASHES:
            raise Pkcs12UnsupportedProtection(
                f"The PKCS#12 file derives its keys with HMAC-{hmac}, which the vault does not open."
            )
        key = PBKDF2HMAC(
            algorithm=_HASHES[hmac],
            length=key_length,
            salt=algorithm.kdf_salt,
            iterations=algorithm.kdf_iterations,
        ).derive(password.encode())
        return key, algorithm.encryption_iv, cipher_name
    # The PKCS#12 PBE (RFC 7292 appendix B): password as BMPString with a trailing zero.
    secret = password.encode("utf-16-be") + b"\x00\x00" if password else b""
    hash_name = algorithm.kdf_hmac
    salt, iterations = algorithm.kdf_salt, algorithm.kdf_iterations
    key = pkcs12_kdf(hash_name, secret, salt, iterations, key_length, 1)
    iv = pkcs12_kdf(
        hash_name, secret, salt, iterations, algorithm.encryption_block_size, 2
    )
    return key, iv, cipher_name


def _cipher(name: str, key: bytes, iv: bytes) -> Cipher[modes.CBC]:
    if name == "aes":
        return Cipher(algorithms.AES(key), modes.CBC(iv))
    if name == "tripledes":
        return Cipher(TripleDES(key), modes.CBC(iv))
    raise Pkcs12UnsupportedProtection(
        f"The PKCS#12 file is encrypted with {name}, which the vault does not open."
    )


def pkcs12_kdf(
    hash_name: str, password: bytes, salt: bytes, iterations: int, length: int, id_: int
) -> bytes:
    """RFC 7292 appendix B.2; `password` already a BMPString with its trailing zero."""
    block = hashlib.new(hash_name).block_size
    size = hashlib.new(hash_name).digest_size
    diversifier = bytes([id_]) * block

    def stretch(value: bytes) -> bytes:
        if not value:
            return b""
        return (value * math.ceil(block * math.ceil(len(value) / block) / len(value)))[
            : block * math.ceil(len(value) / block)
        ]

    material = bytearray(stretch(salt) + stretch(password))
    output = b""
    while len(output) < length:
        digest = hashlib.new(hash_name, diversifier + material).digest()
        for _ in range(iterations - 1):
            digest = hashlib.new(hash_name, digest).digest()
        output += digest
        if len(output) >= length:
            break
        addend = int.from_bytes((digest * math.ceil(block / size))[:block], "big") + 1
        for start in range(0, len(material), block):
            chunk = int.from_bytes(material[start : start + block], "big")
            material[start : start + block] = (
                (chunk + addend) % (1 << (8 * block))
            ).to_bytes(block, "big")
    return output[:length]


# RFC 2268's permutation of the bytes, from the digits of pi.
_RC2_PITABLE = bytes.fromhex(
    "d978f9c419ddb5ed28e9fd794aa0d89dc67e37832b76538e624c6488448bfba2"
    "179a59f587b34f1361456d8d09817d32bd8f40eb86b77b0bf09521225c6b4e82"
    "54d66593ce60b21c7356c014a78cf1dc1275ca1f3bbee4d1423dd430a33cb626"
    "6fbf0eda4669075727f21d9bbc944303f811c7f690ef3ee706c3d52fc8661ed7"
    "08e8eade8052eef784aa72ac354d6a2a961ad2715a1549744b9fd05e0418a4ec"
    "c2e0416e0f51cbcc2491af50a1f47039997c3a8523b8b47afc02365b25559731"
    "2d5dfa98e38a92ae05df2910676cbac9d300e6cfe19ea82c6316013f58e289a9"
    "0d38341bab33ffb0bb480c5fb9b1cd2ec5f3db47e5a59c770aa62068fe7fc1ad"
)


def rc2_cbc_decrypt(key: bytes, effective_bits: int, iv: bytes, data: bytes) -> bytes:
    """RC2 (RFC 2268) in CBC mode, for the legacy layers no maintained library opens.

    Pure Python is fast enough: a PKCS#12 layer holds a few kilobytes of certificates.
    """
    if len(data) % 8 or not data:
        raise ValueError("RC2 data is not whole blocks")
    expanded = bytearray(128)
    expanded[: len(key)] = key
    for i in range(len(key), 128):
        expanded[i] = _RC2_PITABLE[(expanded[i - 1] + expanded[i - len(key)]) & 0xFF]
    t8 = (effective_bits + 7) // 8
    expanded[128 - t8] = _RC2_PITABLE[
        expanded[128 - t8] & (0xFF >> (8 * t8 - effective_bits))
    ]
    for i in range(127 - t8, -1, -1):
        expanded[i] = _RC2_PITABLE[expanded[i + 1] ^ expanded[i + t8]]
    k = [expanded[2 * i] | expanded[2 * i + 1] << 8 for i in range(64)]
    shifts = (1, 2, 3, 5)
    out = bytearray()
    previous = iv
    for start in range(0, len(data), 8):
        block = data[start : start + 8]
        r = [block[2 * i] | block[2 * i + 1] << 8 for i in range(4)]
        j = 63
        for round_ in range(16):
            for i in (3, 2, 1, 0):
                x = r[i]
                x = ((x >> shifts[i]) | (x << (16 - shifts[i]))) & 0xFFFF
                x = (
                    x
                    - k[j]
                    - (r[(i - 1) % 4] & r[(i - 2) % 4])
                    - ((~r[(i - 1) % 4]) & r[(i - 3) % 4])
                ) & 0xFFFF
                r[i] = x
                j -= 1
            if round_ in (
                4,
                10,
            ):  # the two mashing rounds, after mixing rounds 5 and 11 (from the end)
                for i in (3, 2, 1, 0):
                    r[i] = (r[i] - k[r[(i - 1) % 4] & 63]) & 0xFFFF
        plain = b"".join(word.to_bytes(2, "little") for word in r)
        out += bytes(a ^ b for a, b in zip(plain, previous, strict=True))
        previous = block
    return bytes(out)
