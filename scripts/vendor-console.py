"""Refresh or check the web console's vendored third-party files.

Each file comes from its npm package at a pinned version: the tarball is
downloaded from the npm registry, checked against the registry's published
integrity (SHA-512), and the listed files are extracted with the package's
licence. `VENDORED.json` beside them records package, version, file, SHA-256
and licence; `--check` recomputes the SHA-256 of every file on disk and fails
on any difference (no network), which a test runs.

    python scripts/vendor-console.py           # download and write the files
    python scripts/vendor-console.py --check   # verify the files on disk
"""

import argparse
import base64
import hashlib
import io
import json
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = "https://registry.npmjs.org"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    licence: str
    # path inside the tarball (under package/) -> file name on disk
    files: dict[str, str]


# The console's runtime: shipped in the Python package.
CONSOLE = (
    ROOT / "app" / "console" / "vendor",
    (
        Package(
            "preact",
            "10.29.8",
            "MIT",
            {
                "dist/preact.umd.js": "preact.umd.js",
                "hooks/dist/hooks.umd.js": "preact-hooks.umd.js",
                "LICENSE": "LICENSE.preact",
            },
        ),
        Package(
            "htm",
            "3.1.1",
            "Apache-2.0",
            {"dist/htm.umd.js": "htm.umd.js", "LICENSE": "LICENSE.htm"},
        ),
        Package(
            "pdfjs-dist",
            "6.5.438",
            "Apache-2.0",
            {
                "build/pdf.min.mjs": "pdf.min.mjs",
                "build/pdf.worker.min.mjs": "pdf.worker.min.mjs",
                "LICENSE": "LICENSE.pdfjs-dist",
            },
        ),
    ),
)
# The accessibility checker: used by the browser tests only, never shipped.
TESTS = (
    ROOT / "tests" / "console" / "vendor",
    (
        Package(
            "axe-core",
            "4.14.1",
            "MPL-2.0",
            {"axe.min.js": "axe.min.js", "LICENSE": "LICENSE.axe-core"},
        ),
    ),
)
TARGETS = (CONSOLE, TESTS)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_tarball(http: httpx.Client, package: Package) -> bytes:
    meta = http.get(f"{REGISTRY}/{package.name}/{package.version}")
    meta.raise_for_status()
    dist = meta.json()["dist"]
    tarball = http.get(dist["tarball"])
    tarball.raise_for_status()
    algorithm, _, expected = dist["integrity"].partition("-")
    actual = base64.b64encode(hashlib.new(algorithm, tarball.content).digest())
    if actual.decode() != expected:
        raise SystemExit(
            f"{package.name}@{package.version}: tarball integrity mismatch"
        )
    return tarball.content


def refresh() -> None:
    with httpx.Client(timeout=60, follow_redirects=True) as http:
        for directory, packages in TARGETS:
            directory.mkdir(parents=True, exist_ok=True)
            records = []
            for package in packages:
                tarball = fetch_tarball(http, package)
                with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
                    for inside, name in package.files.items():
                        member = archive.extractfile(f"package/{inside}")
                        if member is None:
                            raise SystemExit(f"{package.name}: {inside} is not a file")
                        data = member.read()
                        (directory / name).write_bytes(data)
                        records.append(
                            {
                                "package": package.name,
                                "version": package.version,
                                "source": f"package/{inside}",
                                "file": name,
                                "sha256": sha256(data),
                                "licence": package.licence,
                            }
                        )
                        sys.stdout.write(f"{directory / name}: {sha256(data)}\n")
            (directory / "VENDORED.json").write_text(
                json.dumps(records, indent=2) + "\n"
            )


def check() -> list[str]:
    """The differences between the pinned list, VENDORED.json and the files on disk."""
    problems = []
    for directory, packages in TARGETS:
        recorded = json.loads((directory / "VENDORED.json").read_text())
        pinned = {
            (p.name, p.version, name) for p in packages for name in p.files.values()
        }
        listed = {(r["package"], r["version"], r["file"]) for r in recorded}
        if pinned != listed:
            problems.append(f"{directory}/VENDORED.json does not match the pinned list")
        for record in recorded:
            path = directory / record["file"]
            if not path.is_file():
                problems.append(f"{path}: missing")
            elif sha256(path.read_bytes()) != record["sha256"]:
                problems.append(f"{path}: SHA-256 differs from VENDORED.json")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify, do not download")
    if parser.parse_args().check:
        problems = check()
        for problem in problems:
            sys.stderr.write(problem + "\n")
        if problems:
            raise SystemExit(1)
        sys.stdout.write("vendored files match VENDORED.json\n")
    else:
        refresh()


if __name__ == "__main__":
    main()
