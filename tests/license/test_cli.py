"""`signvault license keygen|issue`, and an organisation running on licences of its own."""

import json
import re
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from tests.served import serve, signvault_env
from tests.test_cli import login, run


def keygen(env: dict[str, str], tmp_path: Path) -> tuple[Path, str]:
    key_path = tmp_path / "issuer.pem"
    result = run(env, tmp_path, "license", "keygen", "--private-key", str(key_path))
    assert result.returncode == 0, result.stderr
    match = re.fullmatch(r"SIGNVAULT_LICENSE_PUBLIC_KEY=(\S+)\n", result.stdout)
    assert match, result.stdout
    return key_path, match.group(1)


def test_keygen_writes_a_private_key_file_only_once(tmp_path: Path) -> None:
    env = signvault_env(tmp_path, "sqlite://")
    key_path, public_key = keygen(env, tmp_path)
    assert key_path.stat().st_mode & 0o777 == 0o600
    assert key_path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    again = run(env, tmp_path, "license", "keygen", "--private-key", str(key_path))
    assert again.returncode != 0
    assert "not overwritten" in again.stderr
    assert len(public_key) == 44


def test_organisation_issues_and_installs_its_own_licence(
    tmp_path: Path, database_url: str
) -> None:
    env = signvault_env(tmp_path, "sqlite://")
    key_path, public_key = keygen(env, tmp_path)
    licence_path = tmp_path / "acme.license"
    issued = run(
        env,
        tmp_path,
        "license",
        "issue",
        "--private-key",
        str(key_path),
        "--licensee",
        "Acme Ltd",
        "--valid-until",
        "2099-12-31",
        "--max-users",
        "1",
        "--max-signatures-per-month",
        "1000",
        "--features",
        "batch,ltv",
        "--license-id",
        "acme-2099",
        "--output",
        str(licence_path),
    )
    assert issued.returncode == 0, issued.stderr
    document = json.loads(licence_path.read_text())
    assert document["payload"]["valid_until"] == "2099-12-31T23:59:59Z"
    assert document["payload"]["features"] == ["batch", "ltv"]

    server_env = signvault_env(
        tmp_path / "data",
        database_url,
        SIGNVAULT_ADMIN_PASSWORD="Chosen-Passw0rd",
        SIGNVAULT_LICENSE_PUBLIC_KEY=public_key,
    )
    with serve(server_env, tmp_path) as served:
        assert "licence evaluation" in served.log
        token = login(served.base_url, "admin", "Chosen-Passw0rd").json()[
            "access_token"
        ]
        response = httpx.post(
            f"{served.base_url}/api/v1/license",
            content=licence_path.read_bytes(),
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/octet-stream",
            },
            timeout=10,
        )
        assert response.status_code == 200, response.text
        status = response.json()
        assert (status["state"], status["license_id"]) == ("valid", "acme-2099")
        assert status["limits"]["users"] == 1
    # The operator's own tools obey the licence too: the only seat is taken.
    refused = run(
        server_env,
        tmp_path,
        "create-admin",
        "--username",
        "second",
        "--password",
        "Second-Passw0rd",
    )
    assert refused.returncode == 2
    assert "allows 1 users" in refused.stderr


def test_issue_refuses_impossible_licences_clearly(tmp_path: Path) -> None:
    env = signvault_env(tmp_path, "sqlite://")
    key_path, _public = keygen(env, tmp_path)
    base = ["license", "issue", "--private-key", str(key_path), "--licensee", "A"]
    unknown = run(
        env, tmp_path, *base, "--valid-until", "2099-01-01", "--features", "x"
    )
    assert unknown.returncode == 2
    assert "unknown x" in unknown.stderr
    backwards = run(
        env,
        tmp_path,
        *base,
        "--valid-from",
        "2099-01-02",
        "--valid-until",
        "2099-01-01",
    )
    assert backwards.returncode != 0
    assert "valid_until must be after valid_from" in backwards.stderr
    bad_date = run(env, tmp_path, *base, "--valid-until", "next year")
    assert bad_date.returncode == 2
    assert "YYYY-MM-DD" in bad_date.stderr
    ec_key = tmp_path / "ec.pem"
    ec_key.write_bytes(
        generate_private_key(SECP256R1()).private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        )
    )
    wrong_kind = run(
        env,
        tmp_path,
        "license",
        "issue",
        "--private-key",
        str(ec_key),
        "--licensee",
        "A",
        "--valid-until",
        "2099-01-01",
    )
    assert wrong_kind.returncode != 0
    assert "not an Ed25519 key" in wrong_kind.stderr
    assert "Traceback" not in wrong_kind.stderr + bad_date.stderr + backwards.stderr
