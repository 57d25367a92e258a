"""The in-process background loop: batches, and the daily audit retention run."""

import logging
import threading
import time
from collections.abc import Sequence

from asn1crypto import x509 as asn1_x509
from sqlalchemy.orm import Session, sessionmaker

from app.audit import service as audit_service
from app.batches import service as batches_service
from app.certificates.vault import Vault
from app.core.config import Settings
from app.core.storage import BlobStore

logger = logging.getLogger(__name__)

# How often a process offers to run the daily retention job (the claim is in the database).
RETENTION_CHECK_SECONDS = 300


class BatchProcessorThread:
    """Runs `process_next_batch` until stopped; idle, it polls every `batch_poll_seconds`.

    Every few minutes it also offers to run the daily audit retention purge
    (`audit_service.run_retention_if_due`: one claimer a day, cluster-wide).

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
        next_retention_check = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_retention_check:
                next_retention_check = time.monotonic() + RETENTION_CHECK_SECONDS
                try:
                    audit_service.run_retention_if_due(self._factory)
                except Exception:
                    logger.exception("audit retention run failed")
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
            except Exception:
                # The database may be briefly unreachable: log, wait, try again.
                logger.exception("batch processing failed")
                worked = False
            if not worked:
                self._stop.wait(self._settings.batch_poll_seconds)
