"""Settings: one typed object, read from `SIGNVAULT_*` variables and an optional `.env`."""

from datetime import timedelta
from pathlib import Path
from typing import Annotated

from pydantic import (
    AliasChoices,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SIGNVAULT_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        extra="ignore",
        populate_by_name=True,
    )

    data_dir: Path = Field(
        default=Path("data"),
        description="Where the SQLite database, keys and blobs live.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default `sqlite:///<data_dir>/signvault.db`. PostgreSQL: `postgresql+psycopg://user:pw@host/db`.",
    )
    admin_username: str = Field(
        default="admin",
        min_length=1,
        max_length=150,
        description="Username of the bootstrap administrator.",
    )
    admin_password: SecretStr | None = Field(
        default=None,
        description="Password of the bootstrap administrator; generated and printed once when unset.",
    )
    admin_bootstrap: bool = Field(
        default=True,
        description="Create the administrator on first start with an empty database.",
    )
    access_token_ttl_seconds: int = Field(
        default=900, ge=30, le=86_400, description="Access-token lifetime."
    )
    refresh_token_ttl_seconds: int = Field(
        default=604_800, ge=60, le=31_536_000, description="Refresh-token lifetime."
    )
    issuer: str = Field(
        default="signvault", min_length=1, description="JWT `iss` of issued tokens."
    )
    audience: str = Field(
        default="signvault-api", min_length=1, description="JWT `aud` of issued tokens."
    )
    jwt_private_key: SecretStr | None = Field(
        default=None,
        description="PEM EC P-256 private key to sign tokens with: imported into the database (once) as the signing key; default: a key generated in the database on first start (or an older release's `<data_dir>/jwt-signing-key.pem`, imported). `signvault rotate-token-key` replaces it.",
    )
    master_key: SecretStr | None = Field(
        default=None,
        description="Base64 of the 32-byte master key that wraps stored secrets' keys; default: `<data_dir>/master.key`, generated (0600) on first start.",
    )
    master_key_file: Path | None = Field(
        default=None,
        description="A file holding the master key in base64 (a Docker or Kubernetes secret), instead of SIGNVAULT_MASTER_KEY; read only, never written.",
    )
    max_upload_bytes: int = Field(
        default=50 * 1024 * 1024, ge=1024, description="Largest accepted request body."
    )
    max_json_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest JSON or form-urlencoded request body (413 beyond), checked before it is parsed; routes that carry a file in JSON (a base64 PKCS#12 or stamp image) allow that file's size on top.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated origins allowed by CORS; empty: CORS off.",
    )
    metrics_public: bool = Field(
        default=True,
        description="Serve /metrics without a token; false: needs `metrics:read`.",
    )
    metrics_dir: Path | None = Field(
        default=None,
        description="Where `serve --workers N` keeps the shared Prometheus files (mmapped: on a full filesystem a worker would die of SIGBUS); default: a folder under `$XDG_RUNTIME_DIR` or `/dev/shm` (memory filesystems), else `<data_dir>/metrics`.",
    )
    min_free_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=0,
        description="`/ready` answers 503 (`storage: low`) when the blob store's or the SQLite database's filesystem has less free space than this; 0: never.",
    )
    # OWASP's argon2id minimum (19 MiB, 2 passes): a burst of logins holds this
    # memory once per core (PasswordHasher), so it bounds what an anonymous burst costs.
    argon2_time_cost: int = Field(
        default=2, ge=1, le=20, description="argon2id passes."
    )
    argon2_memory_kib: int = Field(
        default=19_456, ge=8, le=4_194_304, description="argon2id memory in KiB."
    )
    tsa_url: str | None = Field(
        default=None,
        description="RFC 3161 timestamp authority for PAdES B-T, B-LT and B-LTA signatures.",
    )
    tsa_timeout_seconds: int = Field(
        default=10,
        ge=1,
        le=120,
        description="How long to wait for the timestamp authority.",
    )
    revocation_cache_seconds: int = Field(
        default=300,
        ge=0,
        le=86_400,
        description="B-LT/B-LTA signing reuses fetched OCSP responses and CRLs for up to this long (never past their nextUpdate); 0: fetched for every signature.",
    )
    trust_roots_file: Path | None = Field(
        default=None,
        description="PEM bundle of the root certificates signatures are validated against (`/verify`).",
    )
    validation_online: bool = Field(
        default=True,
        description="Fetch OCSP responses and CRLs while validating; false: use only what the PDF holds.",
    )
    rate_limit_per_minute: int = Field(
        default=100,
        ge=0,
        description="Requests per minute per user or API client (429 beyond); 0: off. The `security` settings section overrides it.",
    )
    login_rate_limit_per_minute: int = Field(
        default=20,
        ge=0,
        description="Requests per minute per client IP to the routes that need no token (login, token, refresh, revoke), counted before their bodies are read (429 beyond); 0: off. The `security` settings section overrides it.",
    )
    pkcs12_max_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest PKCS#12 file the vault imports (422 `pkcs12_too_large` beyond).",
    )
    pkcs12_max_iterations: int = Field(
        default=2_000_000,
        ge=1,
        description="Highest key-derivation iteration count (MAC, each encrypted layer and key) a PKCS#12 file may ask for, read before any derivation runs (422 `pkcs12_kdf_too_costly` beyond).",
    )
    signer_cache_ttl_seconds: float = Field(
        default=300,
        ge=0,
        description="How long a process keeps a decrypted signing key in memory; 0: never.",
    )
    signer_cache_size: int = Field(
        default=64, ge=0, description="Decrypted signing keys a process keeps at most."
    )
    pkcs11_module: Path | None = Field(
        default=None,
        description="Path of the PKCS#11 module for HSM keys (e.g. `/usr/lib/softhsm/libsofthsm2.so`).",
    )
    pkcs11_pin: SecretStr | None = Field(
        default=None, description="User PIN of the PKCS#11 token(s)."
    )
    request_concurrency: int = Field(
        default=8,
        ge=1,
        le=1000,
        description="Requests one server process works on at once (each holds a database connection and a thread); more wait their turn, queued in order. Keep it under SIGNVAULT_DATABASE_POOL_SIZE.",
    )
    database_pool_size: int = Field(
        default=15,
        ge=1,
        le=1000,
        description="PostgreSQL connections each server or worker process keeps open once a load has needed them; up to 10 more are opened for a burst and closed after it.",
    )
    sqlite_busy_timeout_seconds: float = Field(
        default=30.0, gt=0, description="How long a SQLite writer waits for the lock."
    )
    license_public_key: str | None = Field(
        default=None,
        description="Ed25519 public key (base64 of its 32 bytes, or PEM) that licence files must be signed with; default: SignVault's issuer key.",
    )
    batch_sync_max: int = Field(
        default=10,
        ge=0,
        le=1000,
        description="Batches of at most this many documents are signed during the request (201); larger ones are answered 202 and signed in the background.",
    )
    batch_max_upload_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=1024,
        description="Largest `POST /batches` body: its uploaded files together (each file is still held to `SIGNVAULT_MAX_UPLOAD_BYTES`).",
    )
    background_in_process: bool = Field(
        default=True,
        # The variable's name before notifications joined batches in the background loop.
        validation_alias=AliasChoices(
            "background_in_process",
            "SIGNVAULT_BACKGROUND_IN_PROCESS",
            "SIGNVAULT_BATCH_IN_PROCESS",
        ),
        description="Run the background work (batches, notification delivery, daily jobs) in each server process; false when `signvault worker` processes run it.",
    )
    orphan_blob_grace_seconds: int = Field(
        default=3600,
        ge=0,
        description="The blob sweeper removes a blob that no document version refers to only once it is this old: a request that has written its blob commits within seconds.",
    )
    blob_store: str | None = Field(
        default=None,
        pattern=r"^s3://[^/]+(/.*)?$",
        description="Where document content is kept: `s3://bucket/prefix` for S3-compatible object storage (region and credentials from the standard AWS variables and config files); unset: files in `<data_dir>/blobs`. The upload spool stays in `<data_dir>/blobs/.incoming` either way.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="The S3 endpoint of a server other than AWS (MinIO, Ceph, SeaweedFS), e.g. `http://minio:9000`.",
    )
    s3_server_side_encryption: str | None = Field(
        default=None,
        description="`ServerSideEncryption` asked of the object store for every stored object: `AES256` or `aws:kms`; unset: the bucket's default.",
    )
    batch_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often an idle batch processor looks for a pending batch.",
    )
    batch_claim_timeout_seconds: int = Field(
        default=300,
        ge=10,
        description="A running batch whose processor has not reported progress for this long (it crashed) is taken over by another.",
    )

    audit_anchor_every_entries: int = Field(
        default=1000,
        ge=0,
        description="The background worker signs an audit anchor once this many entries were appended since the last one; 0: never for that reason.",
    )
    audit_anchor_every_minutes: float = Field(
        default=60.0,
        ge=0,
        description="The background worker signs an audit anchor once the last one is this old and entries were appended since; 0: never for that reason.",
    )

    notification_poll_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often an idle worker looks for events to dispatch and deliveries due (a commit that emits wakes the workers of every process at once: LISTEN/NOTIFY on PostgreSQL, a wake socket on SQLite).",
    )
    notification_max_attempts: int = Field(
        default=8,
        ge=1,
        le=100,
        description="Attempts per delivery before it is `failed`.",
    )
    notification_retry_base_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Wait before the first retry; doubled after each failure, plus up to 25 % jitter.",
    )
    notification_retry_max_seconds: float = Field(
        default=3600.0, gt=0, description="Longest wait between two attempts."
    )
    notification_lease_seconds: int = Field(
        default=300,
        ge=5,
        description="A delivery claimed this long ago without an outcome (its worker died) is attempted again.",
    )
    webhook_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="How long a webhook receiver may take to answer.",
    )
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated host names, IPs or CIDRs webhooks may reach although they are private, loopback or link-local.",
    )
    smtp_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated host names, IPs or CIDRs the SMTP server may be although they are private, loopback or link-local (a relay on the local network).",
    )

    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated addresses or CIDRs of the reverse proxies whose X-Forwarded-For, X-Forwarded-Proto and Forwarded headers are believed; empty: none.",
    )

    @field_validator(
        "cors_origins",
        "webhook_allowed_hosts",
        "smtp_allowed_hosts",
        "trusted_proxies",
        mode="before",
    )
    @classmethod
    def split_comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("master_key_file")
    @classmethod
    def one_master_key_source(
        cls, value: Path | None, info: ValidationInfo
    ) -> Path | None:
        if value is not None and info.data.get("master_key") is not None:
            raise ValueError(
                "SIGNVAULT_MASTER_KEY and SIGNVAULT_MASTER_KEY_FILE are both set; set one"
            )
        return value

    @field_validator("license_public_key")
    @classmethod
    def check_license_key(cls, value: str | None) -> str | None:
        if value:
            from app.license.verifier import load_public_key

            load_public_key(value)
        return value

    @property
    def refresh_ttl(self) -> timedelta:
        return timedelta(seconds=self.refresh_token_ttl_seconds)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'signvault.db'}"


class SettingsError(Exception):
    """A setting is invalid; the message is one line naming it."""


def load_settings() -> Settings:
    """Read settings from the environment, turning a validation error into one clear line.

    Raises:
        SettingsError: a variable has a value that does not fit.
    """
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = "__".join(str(part) for part in error["loc"]).upper()
            name = name if name.startswith("SIGNVAULT_") else f"SIGNVAULT_{name}"
            problems.append(f"{name}: {error['msg']}")
        raise SettingsError("invalid setting " + "; ".join(problems)) from None
