"""Checks of signed PDFs by tools nobody here wrote: poppler's pdfsig, qpdf, openssl.

pdfsig quirks (poppler 22.12): it exits 0 even on "Digest Mismatch" (so its output is
read), `-no-ocsp` breaks trusted chains (not used), it cannot check document timestamps,
and it says "Unknown issue…" for certificates with AIA/CRL pointers (certomancer's).
"""

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

TOOLS = ("pdfsig", "qpdf", "openssl", "certutil")


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (fixed tool names, files made by the tests)
        args, capture_output=True, text=True, cwd=cwd, timeout=60, check=False
    )


@dataclass
class IndependentReport:
    pdfsig_valid: list[bool]
    pdfsig_trusted: list[bool]
    qpdf_ok: bool
    openssl_ok: list[bool]


def check_signed_pdf(
    pdf: Path, ca_pems: list[bytes], workdir: Path
) -> IndependentReport:
    nss = workdir / "nss"
    nss.mkdir(parents=True, exist_ok=True)
    _run("certutil", "-N", "-d", f"sql:{nss}", "--empty-password")
    ca_file = workdir / "cas.pem"
    ca_file.write_bytes(b"".join(ca_pems))
    for number, pem in enumerate(ca_pems):
        one = workdir / f"ca{number}.pem"
        one.write_bytes(pem)
        _run(
            "certutil",
            "-A",
            "-d",
            f"sql:{nss}",
            "-n",
            f"ca{number}",
            "-t",
            "C,C,C",
            "-i",
            str(one),
        )
    listing = _run("pdfsig", "-nssdir", f"sql:{nss}", str(pdf)).stdout
    blocks = [
        b
        for b in re.split(r"^Signature #\d+:", listing, flags=re.M)[1:]
        if "ETSI.RFC3161" not in b
    ]
    valid = ["Signature Validation: Signature is Valid." in b for b in blocks]
    trusted = ["Certificate Validation: Certificate is Trusted." in b for b in blocks]
    qpdf_ok = _run("qpdf", "--check", str(pdf)).returncode == 0
    dump_dir = workdir / "dump"
    dump_dir.mkdir(exist_ok=True)
    _run("pdfsig", "-nssdir", f"sql:{nss}", "-dump", str(pdf), cwd=dump_dir)
    data = pdf.read_bytes()
    ranges = re.findall(rb"/ByteRange ?\[ *(\d+) +(\d+) +(\d+) +(\d+) *\]", data)
    openssl_ok = []
    for number, (a, b, c, d) in enumerate(ranges):
        blob = next(dump_dir.glob(f"*.sig{number}"))
        content = dump_dir / f"content{number}.bin"
        content.write_bytes(
            data[int(a) : int(a) + int(b)] + data[int(c) : int(c) + int(d)]
        )
        printed = _run(
            "openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", str(blob)
        ).stdout
        outer = re.search(r"eContentType: (\S+)", printed)
        if outer and outer.group(1) == "id-smime-ct-TSTInfo":  # a document timestamp
            result = _run(
                "openssl",
                "ts",
                "-verify",
                "-data",
                str(content),
                "-in",
                str(blob),
                "-token_in",
                "-CAfile",
                str(ca_file),
            )
        else:
            result = _run(
                "openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(blob), "-content", str(content),
                "-CAfile", str(ca_file), "-purpose", "any", "-out", "/dev/null",
            )  # fmt: skip
        openssl_ok.append(result.returncode == 0)
    return IndependentReport(valid, trusted, qpdf_ok, openssl_ok)
