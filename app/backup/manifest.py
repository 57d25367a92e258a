"""The archive's manifest: what it holds, and the SHA-256 of every part."""

import json
import re
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from app.backup.errors import BackupError

FORMAT = "signvault-backup"
FORMAT_VERSION = 1
MANIFEST_MEMBER = "manifest.json"
MASTER_KEY_MEMBER = "master.key"
BLOBS_PREFIX = "blobs/"
DATABASE_MEMBERS = {
    "sqlite": "database/signvault.db",
    "postgresql": "database/signvault.pgdump",
}
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class NamedBlob:
    """A blob a document version names: `namespace` is the document's id."""

    namespace: str
    sha256: str
    size: int

    @property
    def member(self) -> str:
        return f"{BLOBS_PREFIX}{self.namespace}/{self.sha256}"

    @classmethod
    def from_member(cls, name: str, size: int) -> "NamedBlob":
        """The blob an archive member holds; refuses a name that is not a blob's.

        Raises:
            BackupError: the name is not `blobs/<document id>/<sha256>`.
        """
        parts = name.removeprefix(BLOBS_PREFIX).split("/")
        if len(parts) != 2 or not _SHA256.fullmatch(parts[1]) or not _is_uuid(parts[0]):
            raise BackupError(f"the archive holds an unexpected member {name!r}")
        return cls(parts[0], parts[1], size)


@dataclass(frozen=True, slots=True)
class DatabasePart:
    kind: str  # "sqlite" or "postgresql"
    member: str
    sha256: str
    size: int
    alembic_revision: str
    tool: str  # what made the copy: the SQLite backup API, or pg_dump and its version
    server_version: str | None = None


@dataclass(frozen=True, slots=True)
class Manifest:
    created_at: str
    signvault_version: str
    database: DatabasePart
    # Rows per table in the snapshot; a restore must find the same.
    table_counts: dict[str, int]
    # Ids (not keys) of the master keys that wrap the snapshot's data keys.
    master_key_ids: list[str]
    master_key_included: bool
    blobs: list[NamedBlob] = field(default_factory=list)

    def to_json(self) -> bytes:
        body: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            **asdict(self),
            "counts": {
                "documents": self.table_counts.get("documents", 0),
                "document_versions": self.table_counts.get("document_versions", 0),
                "blobs": len(self.blobs),
                "blob_bytes": sum(blob.size for blob in self.blobs),
            },
        }
        return json.dumps(body, indent=1).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> "Manifest":
        """Raises: BackupError: not a manifest of a format this version reads."""
        try:
            body = json.loads(data)
            if body.get("format") != FORMAT:
                raise BackupError("the archive's manifest is not a SignVault backup's")
            if body.get("format_version") != FORMAT_VERSION:
                raise BackupError(
                    f"the archive is in backup format {body.get('format_version')}; "
                    f"this SignVault reads format {FORMAT_VERSION}"
                )
            return cls(
                created_at=str(body["created_at"]),
                signvault_version=str(body["signvault_version"]),
                database=DatabasePart(**body["database"]),
                table_counts={str(k): int(v) for k, v in body["table_counts"].items()},
                master_key_ids=[str(i) for i in body["master_key_ids"]],
                master_key_included=bool(body["master_key_included"]),
                blobs=[
                    NamedBlob.from_member(
                        f"{BLOBS_PREFIX}{b['namespace']}/{b['sha256']}", int(b["size"])
                    )
                    for b in body["blobs"]
                ],
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BackupError(f"the archive's manifest is malformed: {exc}") from None


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False
