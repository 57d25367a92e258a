"""`signvault license …`: make issuer keys and licence files (development, own issuers)."""

import base64
import os
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from app.core.types import utcnow
from app.license.service import Feature
from app.license.verifier import Limits, key_id, new_payload, sign_license


def _moment(value: str, *, end_of_day: bool, option: str) -> datetime:
    """ISO date (start or end of that day, UTC) or ISO date-time with a zone."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime.combine(
                day, time(23, 59, 59) if end_of_day else time(0, 0), tzinfo=UTC
            )
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            "expected YYYY-MM-DD or an ISO date-time", param_hint=option
        ) from None
    if moment.tzinfo is None:
        raise click.BadParameter("give a time zone (e.g. Z)", param_hint=option)
    return moment.astimezone(UTC)


def _features(value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    known = {f.value for f in Feature}
    unknown = sorted(set(names) - known)
    if unknown:
        raise click.BadParameter(
            f"unknown {', '.join(unknown)}; known: {', '.join(sorted(known))}",
            param_hint="--features",
        )
    return names


@click.group("license")
def license_group() -> None:
    """Licence files: make an issuer key pair and issue licences with it."""


@license_group.command()
@click.option(
    "--private-key",
    "private_key_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the new private key (PEM, mode 0600); never overwritten.",
)
def keygen(private_key_path: Path) -> None:
    """Make an Ed25519 issuer key pair; prints the public key for SIGNVAULT_LICENSE_PUBLIC_KEY."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        descriptor = os.open(
            private_key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
        )
    except FileExistsError:
        raise click.ClickException(
            f"{private_key_path} exists; not overwritten"
        ) from None
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    click.echo(f"SIGNVAULT_LICENSE_PUBLIC_KEY={base64.b64encode(public).decode()}")
    click.echo(f"key id: {key_id(key.public_key())}", err=True)


@license_group.command()
@click.option(
    "--private-key",
    "private_key_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The issuer's Ed25519 private key (PEM).",
)
@click.option("--licensee", required=True, help="Who the licence is for.")
@click.option(
    "--valid-until",
    required=True,
    help="YYYY-MM-DD (to the end of that day, UTC) or ISO date-time.",
)
@click.option(
    "--valid-from", default=None, help="YYYY-MM-DD or ISO date-time; default: now."
)
@click.option("--license-id", default=None, help="Default: a new UUID.")
@click.option("--issuer", default="SignVault", show_default=True)
@click.option(
    "--max-users", type=click.IntRange(min=0), default=None, help="Default: unlimited."
)
@click.option(
    "--max-certificates",
    type=click.IntRange(min=0),
    default=None,
    help="Default: unlimited.",
)
@click.option(
    "--max-signatures-per-month",
    type=click.IntRange(min=0),
    default=None,
    help="Default: unlimited.",
)
@click.option(
    "--max-signatures-total",
    type=click.IntRange(min=0),
    default=None,
    help="Default: unlimited.",
)
@click.option("--features", default="", help="Comma-separated: pkcs11,batch,ltv.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write; default: standard output.",
)
def issue(
    private_key_path: Path,
    licensee: str,
    valid_until: str,
    valid_from: str | None,
    license_id: str | None,
    issuer: str,
    max_users: int | None,
    max_certificates: int | None,
    max_signatures_per_month: int | None,
    max_signatures_total: int | None,
    features: str,
    output: Path | None,
) -> None:
    """Write a signed licence file."""
    try:
        key = serialization.load_pem_private_key(
            private_key_path.read_bytes(), password=None
        )
    except (ValueError, TypeError) as exc:
        raise click.ClickException(f"cannot read the private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise click.ClickException("the private key is not an Ed25519 key")
    now = utcnow().replace(microsecond=0)
    try:
        payload = new_payload(
            license_id=license_id,
            licensee=licensee,
            issuer=issuer,
            issued_at=now,
            valid_from=_moment(valid_from, end_of_day=False, option="--valid-from")
            if valid_from
            else now,
            valid_until=_moment(valid_until, end_of_day=True, option="--valid-until"),
            limits=Limits(
                users=max_users,
                certificates=max_certificates,
                signatures_per_month=max_signatures_per_month,
                signatures_total=max_signatures_total,
            ),
            features=_features(features),
        )
    except ValidationError as exc:
        reasons = "; ".join(error["msg"] for error in exc.errors())
        raise click.ClickException(f"impossible licence: {reasons}") from None
    text = sign_license(payload, key)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        click.echo(f"licence {payload.license_id} written to {output}", err=True)
