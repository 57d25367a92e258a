"""README.md's curl walk-through ("First steps", "Sign your first PDF"), run as written against `signvault serve`.

The shell blocks run one after another in one bash, as a reader pastes them;
only the first block, the reader's own values, is replaced by this test's: the
server's address, the password it printed, a new password and a local TSA.
"""

import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from app.signing.engine import validate_pdf
from tests.independent import missing_tools
from tests.pki import running_pki
from tests.served import serve, signvault_env

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("## First steps with curl", "## Sign your first PDF")
VALUES = ("BASE", "ADMIN_PASSWORD", "NEW_PASSWORD", "TSA_URL")
NEW_PASSWORD = "Readme-Passw0rd!"


def readme_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks: list[str] = []
    for heading in SECTIONS:
        start = text.index(f"\n{heading}\n")
        end = text.find("\n## ", start + 1)
        section = text[start : end if end != -1 else len(text)]
        blocks += re.findall(r"^```sh\n(.*?)^```$", section, flags=re.M | re.S)
    return blocks


def assigned_names(block: str) -> list[str]:
    return re.findall(r"^([A-Z_]+)=", block, flags=re.M)


def test_the_values_block_is_the_readers_and_only_sets_values() -> None:
    values, *rest = readme_blocks()
    assert assigned_names(values) == list(VALUES)
    assert rest, "the walk-through has no commands"


@pytest.mark.skipif(
    bool(missing_tools()) or shutil.which("curl") is None,
    reason="needs curl, openssl, pdfsig and certutil",
)
def test_the_readme_walk_through_signs_and_verifies(
    tmp_path: Path, database_url: str
) -> None:
    _values, *commands = readme_blocks()
    work = tmp_path / "reader"
    work.mkdir()
    # The walk-through makes its PDF with the installation's Python, as `.venv/bin/python`.
    (work / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    env = signvault_env(tmp_path / "data", database_url)
    with running_pki(tmp_path / "pki") as pki, serve(env, tmp_path) as served:
        [printed] = re.findall(
            r"created administrator 'admin' with password: (\S+)", served.log
        )
        ours = "\n".join(
            f"{name}={quoted}"
            for name, quoted in zip(
                VALUES,
                (served.base_url, f"'{printed}'", f"'{NEW_PASSWORD}'", pki.tsa_url),
                strict=True,
            )
        )
        script = "set -euo pipefail\n" + "\n".join([ours, *commands])
        (work / "walk-through.sh").write_text(script)
        run = subprocess.run(
            ["bash", "walk-through.sh"],  # noqa: S607 (bash from PATH, as a reader runs it)
            cwd=work,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output

    # /verify's report, printed by step 7.
    reports = [
        json.loads(line)
        for line in run.stdout.splitlines()
        if line.startswith("{") and '"all_valid"' in line
    ]
    assert [r["all_valid"] for r in reports] == [True]
    # pdfsig, twice: the administrator's signature and the client's.
    assert output.count("Signature Validation: Signature is Valid.") == 2, output
    assert output.count("Certificate Validation: Certificate is Trusted.") == 2, output
    # The client's signature names it.
    signatures = [
        json.loads(line)
        for line in run.stdout.splitlines()
        if line.startswith("[") and '"signer_kind"' in line
    ]
    assert [(s["signer_kind"], s["signer_name"]) for s in signatures[-1]] == [
        ("client", "erp")
    ]

    ca = asn1_x509.Certificate.load(
        x509.load_pem_x509_certificate((work / "ca.pem").read_bytes()).public_bytes(
            Encoding.DER
        )
    )
    levels = {}
    for name in ("signed", "stamped", "timestamped", "erp"):
        [report] = validate_pdf(
            io.BytesIO((work / f"invoice-{name}.pdf").read_bytes()),
            trust_roots=[ca, pki.root],
            allow_fetching=False,
        )
        assert (report.intact, report.valid, report.trusted) == (True, True, True)
        levels[name] = report.pades_level
    assert levels == {
        "signed": "B-B",
        "stamped": "B-B",
        "timestamped": "B-T",
        "erp": "B-B",
    }
