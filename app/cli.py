"""The `signvault` command."""

import atexit
import os
import signal
import ssl
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import click
from pydantic import ValidationError
from sqlalchemy import inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    IntegrityError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker

import app
from app.access import service as access_service
from app.access.errors import PasswordRejected
from app.access.schemas import UserCreate
from app.audit import anchors
from app.audit import service as audit_service
from app.audit.chain import ChainBreak
from app.audit.errors import AuditAnchorInvalid
from app.audit.export import ExportFormatError, verify_jsonl
from app.audit.service import SYSTEM
from app.auth import signing_keys
from app.core import crypto
from app.core.config import Settings, SettingsError, load_settings
from app.core.db import make_engine, make_sessionmaker, unit_of_work
from app.core.errors import AppError
from app.core.metrics import (
    MULTIPROC_ENV,
    clear_multiprocess_dir,
    multiprocess_dir,
    prepare_multiprocess_dir,
)
from app.core.migrations import head_revision, upgrade_to_head
from app.core.security import PasswordHasher
from app.core.storage import make_private_dir
from app.license import service as license_service
from app.license.cli import license_group
from app.settings import service as settings_service


def _fail(message: str) -> None:
    click.echo(f"signvault: {message}", err=True)
    sys.exit(2)


def _settings(*, create: bool = True) -> Settings:
    """The settings; with `create`, the data dir is made (commands that set up a database)."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits
    if create:
        make_private_dir(settings.data_dir)
    return settings


@contextmanager
def _engine(settings: Settings) -> Iterator[Engine]:
    try:
        engine = make_engine(
            settings.effective_database_url,
            sqlite_busy_timeout=settings.sqlite_busy_timeout_seconds,
            pool_size=settings.database_pool_size,
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


@contextmanager
def _existing_database(settings: Settings) -> Iterator[Engine]:
    """The engine of a SignVault database that exists: nothing is created.

    Run from the wrong directory, the default SQLite file would be created empty
    beside it, and the command would fail on a missing table.
    """
    try:
        url = make_url(settings.effective_database_url)
    except ArgumentError as exc:
        _fail(f"invalid setting SIGNVAULT_DATABASE_URL: {exc}")
        raise
    where = url.render_as_string(hide_password=True)
    hint = (
        f"data dir {settings.data_dir.resolve()}; run the command where SignVault runs, "
        "set SIGNVAULT_DATA_DIR or SIGNVAULT_DATABASE_URL, or create one with `signvault migrate`"
    )
    if url.get_backend_name() == "sqlite" and url.database not in (
        None,
        "",
        ":memory:",
    ):
        database = Path(url.database)
        if not database.is_file():
            _fail(f"no database at {database.resolve()} ({hint})")
    with _engine(settings) as engine:
        if not inspect(engine).has_table("alembic_version"):
            _fail(f"no SignVault schema in the database {where} ({hint})")
        yield engine


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
    """Create a user with the administrator role; checked as POST /users checks a user."""
    try:
        checked = UserCreate.model_validate(
            {"username": username, "password": password, "email": email}
        )
    except ValidationError as exc:
        _fail(
            "; ".join(
                f"--{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
                for error in exc.errors()
            )
        )
        return
    settings = _settings()
    hasher = PasswordHasher(
        time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib
    )
    with _engine(settings) as engine:
        _migrate(engine)
        factory = make_sessionmaker(engine)
        license_service.bind_issuer_key(factory, settings)
        try:
            with factory.begin() as session:
                role = access_service.get_role_by_name(
                    session, access_service.ADMINISTRATOR_ROLE
                )
                user = access_service.create_user(
                    session,
                    hasher,
                    actor=SYSTEM,
                    username=checked.username,
                    password=checked.password.get_secret_value(),
                    roles=[role],
                    email=checked.email,
                    policy=settings_service.password_policy(session),
                )
        except AppError as exc:
            _fail(exc.detail)
    click.echo(f"signvault: administrator '{user.username}' created")


@main.command("rotate-master-key")
def rotate_master_key() -> None:
    """Re-wrap every data key under a new master key, in one transaction.

    With a key file, the new key is written beside the old one before anything
    is wrapped by it, and replaces it only after the commit; the old key stays
    as a retired file. Running processes follow without a restart. With
    SIGNVAULT_MASTER_KEY or SIGNVAULT_MASTER_KEY_FILE (a secret, never written
    here), the new key is printed once: put it there and restart.
    """
    # Imported here, not at the top: uvicorn's spawned workers re-import this
    # module before answering health checks, and the vault pulls in pyHanko.
    from app.certificates import service as vault_service

    settings = _settings(create=False)
    from_env = settings.master_key is not None or settings.master_key_file is not None
    key_file = crypto.data_dir_key_file(settings)
    with _existing_database(settings) as engine:
        factory = make_sessionmaker(engine)
        with factory() as session:
            old = _current_master_key(settings, key_file, session)
        if not from_env and crypto.pending_key_file(key_file).exists():
            _settle_pending_key(key_file, old)
            old = crypto.read_master_key_file(key_file) or old
        new = crypto.MasterKey.generate()
        if from_env:
            # Printed before the commit: if it cannot be shown, nothing is re-wrapped.
            click.echo(new.to_base64())
            sys.stdout.flush()
        else:
            crypto.stage_key_file(key_file, new)
        try:
            with factory.begin() as session:
                count = crypto.rotate_master_key(session, old=old, new=new)
                vault_service.invalidate_signers(session)
                audit_service.record(
                    session,
                    actor=SYSTEM,
                    action="master_key.rotated",
                    details={
                        "old_master_key_id": old.id,
                        "new_master_key_id": new.id,
                        "data_keys": count,
                    },
                )
        except crypto.MasterKeyError as exc:
            crypto.pending_key_file(key_file).unlink(missing_ok=True)
            _fail(f"rotation failed, nothing changed: {exc}")
            return
        except SQLAlchemyError as exc:
            # The commit may have reached the database: keep the new key. The next
            # run promotes it if it wraps the data keys, and discards it otherwise.
            _fail(
                f"rotation failed ({type(exc).__name__}); run the command again: "
                + (
                    "if the database committed, the key printed above is the master key"
                    if from_env
                    else f"it finishes or discards {crypto.pending_key_file(key_file)}"
                )
            )
            return
    if from_env:
        target = (
            f"the secret SIGNVAULT_MASTER_KEY_FILE names ({settings.master_key_file})"
            if settings.master_key_file is not None
            else "SIGNVAULT_MASTER_KEY"
        )
        click.echo(
            f"signvault: re-wrapped {count} data keys under master key {new.id}; "
            f"the new key is printed above, once: set {target} to it and restart every process",
            err=True,
        )
        return
    retired = crypto.promote_key_file(key_file)
    click.echo(
        f"signvault: re-wrapped {count} data keys under master key {new.id}; "
        f"{key_file} holds the new key"
        + (f", the old one is kept as {retired}" if retired else ""),
        err=True,
    )


def _current_master_key(
    settings: Settings, key_file: Path, session: Session
) -> crypto.MasterKey:
    """The master key that opens the database's secrets; exits with one line saying why not.

    Generated into the key file when nothing is sealed yet (a first start).
    """
    configured = _configured_master_key(settings)
    where = (
        f"SIGNVAULT_MASTER_KEY_FILE {settings.master_key_file}"
        if settings.master_key_file is not None
        else "SIGNVAULT_MASTER_KEY"
        if configured is not None
        else f"{key_file.resolve()}; SIGNVAULT_MASTER_KEY is not set"
    )
    try:
        current = crypto.load_master_key(configured, key_file, session)
    except crypto.MasterKeyError as exc:
        _fail(f"the master key is not usable: {exc} (read from {where})")
        raise
    except OSError as exc:
        _fail(f"the master key is not usable: cannot read {key_file.resolve()}: {exc}")
        raise
    if current is None:
        sealed = crypto.sealed_secrets(session)
        count = sum(sealed.values())
        _fail(
            f"the master key is missing: the database holds {count} secret{'s' * (count != 1)} "
            f"sealed under master key {', '.join(sorted(sealed))}, but SIGNVAULT_MASTER_KEY is not set "
            f"and {key_file.resolve()} does not exist; set the variable or restore that file"
        )
        raise AssertionError  # unreachable: _fail exits
    problem = crypto.master_key_status(session, current)
    if problem:
        _fail(f"the master key is not usable: {problem} (read from {where})")
    return current


def _configured_master_key(settings: Settings) -> crypto.MasterKey | None:
    """SIGNVAULT_MASTER_KEY's or SIGNVAULT_MASTER_KEY_FILE's key; exits with one line if unusable."""
    try:
        return crypto.configured_master_key(settings)
    except crypto.MasterKeyError as exc:
        _fail(f"the master key is not usable: {exc}")
        raise


def _require_master_key(settings: Settings, engine: Engine) -> None:
    """Refuse to start without the master key of the database's secrets (not a 503 for ever).

    Checked before migrating: a database this host cannot serve is left as it is.
    """
    _configured_master_key(settings)
    if not inspect(engine).has_table(crypto.DataKey.__tablename__):
        return  # a new database: nothing is sealed yet
    with make_sessionmaker(engine)() as session:
        _current_master_key(settings, crypto.data_dir_key_file(settings), session)


def _cipher(
    settings: Settings, factory: sessionmaker[Session]
) -> crypto.EnvelopeCipher:
    """The envelope cipher under the database's master key; exits with one line if there is none."""
    with factory() as session:
        master_key = _current_master_key(
            settings, crypto.data_dir_key_file(settings), session
        )
    return crypto.EnvelopeCipher(
        master_key, key_file=crypto.rereadable_key_file(settings)
    )


def _ensure_token_key(settings: Settings, engine: Engine) -> None:
    factory = make_sessionmaker(engine)
    try:
        signing_keys.ensure_signing_key(factory, _cipher(settings, factory), settings)
    except ValueError as exc:
        _fail(f"invalid setting SIGNVAULT_JWT_PRIVATE_KEY: {exc}")


@main.command("rotate-token-key")
@click.option(
    "--retire-previous",
    is_flag=True,
    help="The previous key stops verifying at once (it leaked): every token it signed is refused.",
)
def rotate_token_key(retire_previous: bool) -> None:
    """Make a new key sign access tokens, on every host within a second.

    The previous key's private half is destroyed; its public half keeps
    verifying the tokens it signed until they have expired (the access-token
    lifetime, plus a few seconds), unless --retire-previous.
    """
    settings = _settings(create=False)
    with _existing_database(settings) as engine:
        factory = make_sessionmaker(engine)
        cipher = _cipher(settings, factory)
        try:
            with factory.begin() as session:
                rotation = signing_keys.rotate(
                    session, cipher, settings, retire_previous=retire_previous
                )
        except IntegrityError:
            _fail("another rotation committed at the same time; nothing changed here")
            return
    retired = (
        "stopped verifying now"
        if retire_previous
        else f"verifies until {rotation.previous_retire_at:%Y-%m-%dT%H:%M:%SZ}"
    )
    click.echo(
        f"signvault: token key {rotation.kid} signs new access tokens"
        + (
            f"; the previous key {rotation.previous_kid} {retired}"
            if rotation.previous_kid
            else ""
        ),
        err=True,
    )


def _settle_pending_key(key_file: Path, current: crypto.MasterKey) -> None:
    """Finish or discard the pending key of an interrupted rotation."""
    pending = crypto.read_master_key_file(crypto.pending_key_file(key_file))
    if pending is not None and pending.id == current.id:
        crypto.promote_key_file(key_file)
        click.echo(
            "signvault: finished an interrupted rotation (promoted the pending key)",
            err=True,
        )
    else:
        # Never used: the data keys are wrapped by the current key.
        crypto.pending_key_file(key_file).unlink()


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
@click.option(
    "--ssl-certfile",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="PEM certificate (chain) to serve HTTPS directly; needs --ssl-keyfile.",
)
@click.option(
    "--ssl-keyfile",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="PEM private key of --ssl-certfile (unencrypted).",
)
def serve(
    host: str,
    port: int,
    workers: int,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
) -> None:
    """Migrate the database, create the first administrator if needed, and serve the API."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    if (ssl_certfile is None) != (ssl_keyfile is None):
        _fail("--ssl-certfile and --ssl-keyfile go together")
    if ssl_certfile is not None:
        try:  # a clear message now, rather than a traceback from every worker
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                ssl_certfile, ssl_keyfile
            )
        except (ssl.SSLError, OSError) as exc:
            _fail(f"cannot use --ssl-certfile/--ssl-keyfile: {exc}")

    settings = _settings()
    with _engine(settings) as engine:
        _require_master_key(settings, engine)
        _migrate(engine)
        _bootstrap(settings, engine)
        _license_check(settings, engine)
        _ensure_token_key(settings, engine)  # once here, before workers race for it
    if workers > 1:
        _share_metrics(settings)
    config = uvicorn.Config(
        "app.main:create_served_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # Forwarded headers are read by the app (core.middleware.ForwardedMiddleware),
        # from SIGNVAULT_TRUSTED_PROXIES only; uvicorn's own reading trusts 127.0.0.1.
        proxy_headers=False,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        # A worker imports pyHanko and the app before it can answer; on a busy
        # host that takes longer than uvicorn's 5 s default, and it would be
        # killed and restarted in a loop. A dead worker is replaced at once
        # whatever this says (app.supervisor).
        timeout_worker_healthcheck=60,
    )
    from app.supervisor import Supervisor

    server = uvicorn.Server(config)
    with suppress(KeyboardInterrupt):
        if workers == 1:
            server.run()
        else:
            Supervisor(config, sockets=[config.bind_socket()]).run()
    if workers == 1 and not server.started:
        sys.exit(STARTUP_FAILURE)


def _share_metrics(settings: Settings) -> None:
    """Give the workers a folder of their own for the shared metric files; cleared at exit."""
    metrics_dir = multiprocess_dir(settings)
    try:
        prepare_multiprocess_dir(metrics_dir)
    except (OSError, ValueError) as exc:
        _fail(f"cannot use the metrics folder (setting SIGNVAULT_METRICS_DIR): {exc}")
    atexit.register(_remove_metrics_dir, metrics_dir)
    os.environ[MULTIPROC_ENV] = str(metrics_dir.resolve())
    if metrics_dir.stat().st_dev == settings.data_dir.stat().st_dev:
        click.echo(
            f"signvault: the metric files ({metrics_dir}) share the data dir's filesystem: "
            "if it fills up, workers die (SIGBUS); set SIGNVAULT_METRICS_DIR to a memory filesystem",
            err=True,
        )


def _remove_metrics_dir(metrics_dir: Path) -> None:
    clear_multiprocess_dir(metrics_dir)
    with suppress(OSError):  # not empty: a folder the operator keeps other files in
        metrics_dir.rmdir()


@main.command()
def worker() -> None:
    """Run the background work until SIGTERM: batches, notification delivery, daily jobs.

    Run any number of these beside `signvault serve` (then with
    SIGNVAULT_BACKGROUND_IN_PROCESS=false); they share the work through the database.
    """
    # Imported here: the app pulls in pyHanko, which this module must not load at import.
    from app.main import background_worker, create_app

    settings = _settings()
    with _engine(settings) as engine:
        _require_master_key(settings, engine)
        _migrate(engine)
    api = create_app(settings)
    background = background_worker(api)

    def _stop(signum: int, _frame: object) -> None:
        click.echo(
            f"signvault: worker stopping ({signal.Signals(signum).name})", err=True
        )
        background.request_stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    background.start()
    click.echo(
        f"signvault: worker {background.notifications.worker_id} running", err=True
    )
    background.wait()
    background.stop()
    api.state.engine.dispose()
    click.echo("signvault: worker stopped", err=True)


def _license_check(settings: Settings, engine: Engine) -> None:
    """Say which licence is in force, and announce an approaching expiry."""
    factory = make_sessionmaker(engine)
    license_service.bind_issuer_key(factory, settings)
    with factory.begin() as session:
        status = license_service.current_status(session)
        license_service.scan_expiry(session)
    click.echo(f"signvault: licence {status.state.value}: {status.detail}", err=True)


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
    except PasswordRejected as exc:
        _fail(
            f"SIGNVAULT_ADMIN_PASSWORD is refused by the password policy: {exc.detail}"
        )
        return
    except (AppError, SQLAlchemyError) as exc:
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
            "signvault: this password is shown only now and must be changed at first login "
            "(POST /api/v1/auth/password)",
            err=True,
        )
    else:
        click.echo(
            f"signvault: created administrator '{user.username}' (password from SIGNVAULT_ADMIN_PASSWORD)",
            err=True,
        )


main.add_command(license_group)


@main.command()
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--include-master-key",
    is_flag=True,
    help="Also write the master key into the archive (then anyone holding it can open every secret).",
)
def backup(out: Path, include_master_key: bool) -> None:
    """Write the database, every document's content and a manifest to the tar archive OUT.

    Runs beside a live server: the database is copied as one snapshot, then the
    blobs it names. The master key stays out of the archive unless asked for.
    """
    from app.backup import service as backup_service
    from app.backup.errors import BackupError

    settings = _settings(create=False)
    key_file = settings.data_dir / crypto.MASTER_KEY_FILE_NAME
    with _existing_database(settings) as engine:
        master_key = None
        if include_master_key:
            with make_sessionmaker(engine)() as session:
                master_key = _current_master_key(settings, key_file, session)
        try:
            result = backup_service.create_backup(
                engine,
                backup_service.blob_store(settings),
                database_url=settings.effective_database_url,
                out=out,
                master_key=master_key,
                note=_note,
            )
        except BackupError as exc:
            _fail(f"backup failed, no archive written: {exc}")
            return
    manifest = result.manifest
    click.echo(
        f"signvault: backup written to {out} ({result.archive_bytes} bytes): "
        f"{manifest.database.kind} database at revision {manifest.database.alembic_revision}, "
        f"{manifest.table_counts.get('documents', 0)} documents, {len(manifest.blobs)} blobs "
        f"({sum(blob.size for blob in manifest.blobs)} bytes)",
        err=True,
    )
    ids = ", ".join(manifest.master_key_ids) or "none: nothing is sealed yet"
    if include_master_key:
        click.echo(
            f"signvault: WARNING: the archive holds the master key ({ids}) in clear: "
            "whoever reads it can open every stored secret; keep it as you keep the key",
            err=True,
        )
    else:
        source = (
            "SIGNVAULT_MASTER_KEY"
            if settings.master_key
            else f"the file {key_file.resolve()}"
        )
        click.echo(
            f"signvault: the master key is NOT in the archive: back up {source} separately "
            f"(master key {ids}); a restore needs it",
            err=True,
        )


@main.command()
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def restore(archive: Path) -> None:
    """Restore an archive of `signvault backup` into an empty data dir and database, then verify it.

    The archive is checked whole before anything is written. The master key
    comes from the archive if it holds one, else from SIGNVAULT_MASTER_KEY or the
    key file put back in the data dir, and must open the restored secrets.
    """
    from app.backup import service as backup_service
    from app.backup.errors import BackupError

    settings = _settings()
    key_file = settings.data_dir / crypto.MASTER_KEY_FILE_NAME
    url = settings.effective_database_url
    try:
        configured = (
            crypto.MasterKey.from_base64(settings.master_key.get_secret_value())
            if settings.master_key
            else crypto.read_master_key_file(key_file)
        )
    except crypto.MasterKeyError as exc:
        _fail(f"restore refused: the master key is not usable: {exc}")
        return
    configured_from = (
        "SIGNVAULT_MASTER_KEY" if settings.master_key else f"the file {key_file}"
    )
    blobs = backup_service.blob_store(settings)
    try:
        with backup_service.open_archive(archive) as (opened, manifest):
            backup_service.check_compatible(manifest, url)
            master_key, write_key = backup_service.choose_master_key(
                opened,
                manifest,
                configured=configured,
                configured_from=configured_from,
            )
            backup_service.check_target(url, blobs, key_file, writes_key=write_key)
            _note(
                f"archive intact: {len(manifest.blobs)} blobs and the database match the manifest"
            )
            backup_service.restore_archive(
                opened,
                manifest,
                database_url=url,
                blobs=blobs,
                key_file=key_file,
                write_key=write_key,
                note=_note,
            )
    except BackupError as exc:
        _fail(f"restore refused: {exc}")
        return
    with _engine(settings) as engine:
        _migrate(engine)
        factory = make_sessionmaker(engine)
        try:
            report = backup_service.verify_restored(
                factory, blobs, manifest, master_key
            )
        except BackupError as exc:
            _fail(f"restored, but the check failed: {exc}")
            return
    click.echo(
        f"restored {archive} (made {manifest.created_at} by SignVault {manifest.signvault_version}): "
        f"{report.rows} rows in {report.tables} tables; master key opens {report.data_keys_opened} data keys; "
        f"audit chain intact ({report.audit.checked} entries, head at {report.audit.head_seq}); "
        f"{report.versions_checked} versions of {report.documents} documents match their SHA-256 "
        f"({report.bytes_checked} bytes)"
    )


def _note(message: str) -> None:
    click.echo(f"signvault: {message}", err=True)


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
@click.option(
    "--anchor",
    "anchor_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="An anchor kept earlier (its JSON, or an export's last line): the chain must still hold the entry it signed.",
)
def audit_verify(export_file: Path | None, anchor_file: Path | None) -> None:
    """Recompute the audit hash chain; exit 1 naming the first bad entry or the missing range."""
    if export_file is not None:
        if anchor_file is not None:
            _fail(
                "--anchor checks the database; an export's own anchor is checked with --file alone"
            )
        _verify_export_file(export_file)
        return
    presented = _read_anchor_file(anchor_file) if anchor_file else None
    settings = _settings(create=False)
    with _existing_database(settings) as engine:
        try:
            with unit_of_work(make_sessionmaker(engine)) as session:
                report, check = anchors.verify_presented(
                    session, actor=SYSTEM, text=presented, details={"via": "cli"}
                )
        except AuditAnchorInvalid as exc:
            _fail(f"{anchor_file}: {exc.detail}")
            return
    start = (
        f"from checkpoint {report.checkpoint.through_seq}"
        if report.checkpoint
        else "from genesis"
    )
    if check is not None and check.intact:
        click.echo(
            f"anchor of {check.anchor.anchored_at} (seq {check.anchor.seq}, "
            f"seal {check.anchor.seal_fingerprint_sha256}): {check.status.value}"
        )
    if report.broken is None:
        click.echo(
            f"audit chain intact: {report.checked} entries {start}, head at {report.head_seq}"
        )
        return
    if check is not None and not check.intact:
        click.echo(
            f"audit chain {check.status.value.upper()} below the anchor of {check.anchor.anchored_at}: "
            f"entries {check.missing_from_seq} to {check.missing_to_seq} missing or replaced"
        )
    _broken(report.broken)


def _read_anchor_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"{path}: cannot read the anchor: {exc}")
        raise


@audit.command("anchor")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write the anchor to this file instead of standard output.",
)
def audit_anchor(output: Path | None) -> None:
    """Sign the chain head now with the system seal; print the anchor (one JSON line)."""
    settings = _settings(create=False)
    anchors.install_log_handler()
    with _existing_database(settings) as engine:
        factory = make_sessionmaker(engine)
        cipher = _cipher(settings, factory)
        try:
            with unit_of_work(factory) as session:
                anchor = anchors.make_anchor(
                    session,
                    cipher,
                    actor=SYSTEM,
                    reason=anchors.AnchorReason.REQUESTED,
                )
        except AppError as exc:
            _fail(exc.detail)
            return
    if output is None:
        click.echo(anchor.line())
        return
    output.write_text(anchor.line() + "\n", encoding="utf-8")
    click.echo(f"signvault: anchor of seq {anchor.seq} written to {output}", err=True)


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
    if result.anchor is None:
        click.echo(
            "note: no anchor line: nothing shows whether entries were cut from the end"
        )
    else:
        click.echo(
            f"anchor of {result.anchor.anchored_at} at seq {result.anchor.seq}: signature valid "
            f"under seal {result.anchor.seal_fingerprint_sha256} (compare it with the seal you trust)"
            + ("; the anchored entry matches" if result.anchor_entry_checked else "")
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
    settings = _settings(create=False)
    with _existing_database(settings) as engine:
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
