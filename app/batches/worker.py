"""The batch processor thread (part of `app.worker.BackgroundWorker`)."""

import logging
import threading
from collections.abc import Sequence

from asn1crypto import x509 as asn1_x509
from sqlalchemy.orm import Session, sessionmaker

from app.batches import service as batches_service
from app.certificates.vault import Vault
from app.core.config import Settings
from app.core.errors import STORAGE_RETRY_AFTER_SECONDS, is_storage_full
from app.core.storage import (
    BLOB_STORE_RETRY_AFTER_SECONDS,
    BlobStore,
    BlobStoreUnavailable,
)

logger = logging.getLogger(__name__)


class BatchProcessorThread:
    """Runs `process_next_batch` until stopped; idle, it polls every `batch_poll_seconds`.

    All state is in the database, so any number of these (threads, processes,
    hosts) share the work. Stopping releases an unfinished batch between two
    documents for the next processor.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        vault: Vault,
        blobs: BlobStore,
        settings: Settings,
        trust_roots: Sequence[asn1_x509.Certificate],
    ) -> None:
        self._factory = factory
        self._vault = vault
        self._blobs = blobs
        self._settings = settings
        self._trust_roots = trust_roots
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="signvault-batches", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                worked = (
                    batches_service.process_next_batch(
                        self._factory,
                        vault=self._vault,
                        blobs=self._blobs,
                        settings=self._settings,
                        trust_roots=self._trust_roots,
                        should_stop=self._stop.is_set,
                    )
                    is not None
                )
            except Exception as exc:
                if is_storage_full(exc):
                    logger.warning(
                        "batch processing paused for %s s: the disk is full",
                        STORAGE_RETRY_AFTER_SECONDS,
                    )
                    self._stop.wait(STORAGE_RETRY_AFTER_SECONDS)
                    continue
                if isinstance(exc, BlobStoreUnavailable):
                    logger.warning(
                        "batch processing paused for %s s: the blob store is unavailable",
                        BLOB_STORE_RETRY_AFTER_SECONDS,
                    )
                    self._stop.wait(BLOB_STORE_RETRY_AFTER_SECONDS)
                    continue
                # The database may be briefly unreachable: log, wait, try again.
                logger.exception("batch processing failed")
                worked = False
            if not worked:
                self._stop.wait(self._settings.batch_poll_seconds)
