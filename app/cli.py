"""The `signvault` command."""

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

import app
from app.access import service as access_service
from app.audit import service as audit_service
from app.audit.chain import ChainBreak
from app.audit.export import ExportFormatError, verify_jsonl
from app.audit.service import SYSTEM, Outcome
from app.auth.tokens import TokenKeys
from app.core.config import Settings, SettingsError, load_settings
from app.core.db import make_engine, make_sessionmaker
from app.core.errors import AppError
from app.core.metrics import MULTIPROC_ENV
from app.core.migrations import head_revision, upgrade_to_head
from app.core.security import PasswordHasher


def _fail(message: str) -> None:
    click.echo(f"signvault: {message}", err=True)
    sys.exit(2)


def _settings() -> Settings:
    try:
        settings = load_settings()
    except SettingsError as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings


@contextmanager
def _engine(settings: Settings) -> Iterator[Engine]:
    try:
        engine = make_engine(
            settings.effective_database_url,
            sqlite_busy_timeout=settings.sqlite_busy_timeout_seconds,
        )
    except (ArgumentError, ImportError, ValueError) as exc:
        _fail(f"invalid setting SIGNVAULT_DATABASE_URL: {exc}")
        raise
    try:
        yield engine
    except OperationalError as exc:
        _fail(
            f"cannot reach the database ({settings.effective_database_url.split('@')[-1]}): {str(exc.orig).strip().splitlines()[0]}"
        )
    finally:
        engine.dispose()


def _migrate(engine: Engine) -> None:
    upgrade_to_head(engine)
    click.echo(f"signvault: database schema at {head_revision()}", err=True)


@click.group()
def main() -> None:
    """SignVault: a self-hosted PAdES signing server."""


@main.command()
def version() -> None:
    """Print the version."""
    click.echo(app.__version__)


@main.command()
def migrate() -> None:
    """Apply pending database migrations."""
    settings = _settings()
    with _engine(settings) as engine:
        _migrate(engine)


@main.command("create-admin")
@click.option("--username", required=True)
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    envvar="SIGNVAULT_NEW_ADMIN_PASSWORD",
)
@click.option("--email", default=None)
def create_admin(username: str, password: str, email: str | None) -> None:
    """Create a user with the administrator role."""
    settings = _settings()
    hasher = PasswordHasher(
        time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib
    )
    with _engine(settings) as engine:
        _migrate(engine)
        try:
            with make_sessionmaker(engine).begin() as session:
                role = access_service.get_role_by_name(
                    session, access_service.ADMINISTRATOR_ROLE
                )
                user = access_service.create_user(
                    session,
                    hasher,
                    actor=SYSTEM,
                    username=username,
                    password=password,
                    roles=[role],
                    email=email,
                )
        except AppError as exc:
            _fail(exc.detail)
    click.echo(f"signvault: administrator '{user.username}' created")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes.",
)
def serve(host: str, port: int, workers: int) -> None:
    """Migrate the database, create the first administrator if needed, and serve the API."""
    import uvicorn

    settings = _settings()
    with _engine(settings) as engine:
        _migrate(engine)
        _bootstrap(settings, engine)
    try:
        TokenKeys.from_settings(
            settings
        )  # created once here, before workers race for it
    except ValueError as exc:
        _fail(f"invalid setting SIGNVAULT_JWT_PRIVATE_KEY: {exc}")
    if workers > 1:
        metrics_dir = settings.data_dir / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ[MULTIPROC_ENV] = str(metrics_dir.resolve())
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
    )


def _bootstrap(settings: Settings, engine: Engine) -> None:
    if not settings.admin_bootstrap:
        return
    hasher = PasswordHasher(
        time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib
    )
    password = (
        settings.admin_password.get_secret_value() if settings.admin_password else None
    )
    try:
        with make_sessionmaker(engine).begin() as session:
            created = access_service.bootstrap_admin(
                session, hasher, username=settings.admin_username, password=password
            )
    except SQLAlchemyError as exc:
        _fail(f"could not create the administrator: {exc}")
        return
    if created is None:
        return
    user, generated = created
    if generated:
        # Printed once, to the terminal only: it is stored nowhere in clear.
        click.echo(
            f"signvault: created administrator '{user.username}' with password: {generated}",
            err=True,
        )
        click.echo(
            "signvault: this password is shown only now; log in and change it.",
            err=True,
        )
    else:
        click.echo(
            f"signvault: created administrator '{user.username}' (password from SIGNVAULT_ADMIN_PASSWORD)",
            err=True,
        )


@main.group()
def audit() -> None:
    """Audit log: verify the chain, apply retention."""


@audit.command("verify")
@click.option(
    "--file",
    "export_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Verify a JSON Lines export offline instead of the database.",
)
def audit_verify(export_file: Path | None) -> None:
    """Recompute the audit hash chain; exit 1 naming the first bad entry."""
    if export_file is not None:
        _verify_export_file(export_file)
        return
    settings = _settings()
    with _engine(settings) as engine, make_sessionmaker(engine).begin() as session:
        report = audit_service.verify(session)
        audit_service.record(
            session,
            actor=SYSTEM,
            action="audit.verified",
            resource_type="audit_log",
            outcome=Outcome.SUCCESS if report.intact else Outcome.FAILURE,
            details={
                "via": "cli",
                "intact": report.intact,
                "checked": report.checked,
                "head_seq": report.head_seq,
                "broken_seq": report.broken.seq if report.broken else None,
            },
        )
    start = (
        f"from checkpoint {report.checkpoint.through_seq}"
        if report.checkpoint
        else "from genesis"
    )
    if report.broken is None:
        click.echo(
            f"audit chain intact: {report.checked} entries {start}, head at {report.head_seq}"
        )
        return
    _broken(report.broken)


def _broken(broken: ChainBreak) -> None:
    entry = f" ({broken.event_id})" if broken.event_id else ""
    click.echo(f"audit chain BROKEN at seq {broken.seq}{entry}: {broken.reason}")
    sys.exit(1)


def _verify_export_file(path: Path) -> None:
    with path.open(encoding="utf-8") as handle:
        try:
            result = verify_jsonl(handle)
        except ExportFormatError as exc:
            _fail(f"{path}: {exc}")
            return
    if result.broken is not None:
        _broken(result.broken)
    click.echo(
        f"export intact: {result.entries} entries (seq {result.first_seq} to {result.last_seq}), "
        f"{result.links_checked} links checked"
    )
    if result.gaps:
        click.echo(
            f"note: {len(result.gaps)} gaps (a filtered export): each entry's content "
            "was checked, the links across gaps cannot be"
        )


@audit.command("purge")
@click.option(
    "--batch-size",
    default=5000,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Entries deleted per transaction.",
)
def audit_purge(batch_size: int) -> None:
    """Delete entries older than the retention (oldest first), leaving a verifiable checkpoint."""
    settings = _settings()
    with _engine(settings) as engine:
        result = audit_service.purge_expired(
            make_sessionmaker(engine), batch_size=batch_size
        )
    if result.cutoff is None:
        click.echo("retention is off (retention_days is null): nothing purged")
    else:
        click.echo(
            f"purged {result.purged} entries older than {result.cutoff.isoformat()} "
            f"in {result.batches} batches"
            + (
                f", checkpoint at seq {result.through_seq}"
                if result.through_seq
                else ""
            )
        )
