"""A private SoftHSM2 token for the test session (SOFTHSM2_CONF in a temporary folder)."""

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.certificates.pki import Issued

MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)
TOKEN_LABEL = "signvault-tests"
USER_PIN = "1234"
SO_PIN = "123456"


@dataclass(frozen=True)
class SoftHsm:
    module: Path
    token_label: str
    pin: str


def find_module() -> Path | None:
    for candidate in MODULE_CANDIDATES:
        if Path(candidate).exists():
            return Path(candidate)
    return None


def missing_reason() -> str | None:
    if find_module() is None:
        return "libsofthsm2.so is not installed (apt-get install softhsm2 opensc)"
    for tool in ("softhsm2-util", "pkcs11-tool"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install softhsm2 opensc)"
    return None


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=60)  # noqa: S603


def create_token(workdir: Path, keys: dict[str, tuple[Issued, bool]]) -> SoftHsm:
    """Initialise a token and put each labelled key in it (with its certificate if asked).

    Sets SOFTHSM2_CONF for this process: the module reads it when first loaded.
    """
    module = find_module()
    assert module is not None
    tokens = workdir / "tokens"
    tokens.mkdir(parents=True)
    conf = workdir / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    _run(
        "softhsm2-util",
        "--init-token",
        "--free",
        "--label",
        TOKEN_LABEL,
        "--pin",
        USER_PIN,
        "--so-pin",
        SO_PIN,
    )
    for index, (label, (issued, with_certificate)) in enumerate(keys.items(), 1):
        key_file = workdir / f"{label}.key.pem"
        key_file.write_bytes(issued.key_pem())
        object_id = f"{index:02x}"
        _run(
            "softhsm2-util",
            "--import",
            str(key_file),
            "--token",
            TOKEN_LABEL,
            "--label",
            label,
            "--id",
            object_id,
            "--pin",
            USER_PIN,
        )
        key_file.unlink()
        if with_certificate:
            cert_file = workdir / f"{label}.cert.der"
            cert_file.write_bytes(issued.certificate_der())
            _run(
                "pkcs11-tool",
                "--module",
                str(module),
                "--token-label",
                TOKEN_LABEL,
                "--login",
                "--pin",
                USER_PIN,
                "--write-object",
                str(cert_file),
                "--type",
                "cert",
                "--label",
                label,
                "--id",
                object_id,
            )
    return SoftHsm(module, TOKEN_LABEL, USER_PIN)
