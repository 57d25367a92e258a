"""The blob store backends, and the one the settings choose."""

from app.core.blobstores.filesystem import FilesystemBlobStore
from app.core.blobstores.s3 import S3BlobStore, make_client, parse_location
from app.core.config import Settings
from app.core.storage import BlobStore

__all__ = ["FilesystemBlobStore", "S3BlobStore", "blob_store_for"]


def blob_store_for(settings: Settings) -> BlobStore:
    """`SIGNVAULT_BLOB_STORE=s3://bucket/prefix`, else files in `<data_dir>/blobs`.

    The spool stays on the local disk either way, in `<data_dir>/blobs/.incoming`.
    """
    local = settings.data_dir / "blobs"
    if not settings.blob_store:
        return FilesystemBlobStore(local)
    bucket, prefix = parse_location(settings.blob_store)
    return S3BlobStore(
        make_client(endpoint_url=settings.s3_endpoint_url),
        bucket=bucket,
        prefix=prefix,
        spool_folder=local / ".incoming",
        server_side_encryption=settings.s3_server_side_encryption,
    )
