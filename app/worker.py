"""Everything SignVault does outside requests, in one place: `signvault worker`, or inside `serve`.

Two threads: the batch processor (long work, one document at a time), and
the notification loop (dispatch, delivery, and the periodic jobs: the daily
audit retention run and the certificate and licence expiry scans, each
claiming its day in the database so one runs cluster-wide; the audit anchors,
decided under a database lock; and, at start and hourly, the content retention
purge and the blob sweep). All state is in the database: run as many workers as you like.
"""

import functools
import logging
import threading
from collections.abc import Sequence

from asn1crypto import x509 as asn1_x509
from sqlalchemy.orm import Session, sessionmaker

from app.audit import anchors
from app.audit import service as audit_service
from app.batches.worker import BatchProcessorThread
from app.certificates.vault import Vault
from app.core.config import Settings
from app.core.crypto import EnvelopeCipher
from app.core.metrics import Metrics
from app.core.storage import BlobStore
from app.documents import sweeper
from app.documents.retention import purge_expired_content
from app.notifications import scans
from app.notifications.worker import NotificationLoop, PeriodicJob

logger = logging.getLogger(__name__)

# How often a process offers to run the daily jobs (the claim is in the database).
DAILY_JOB_CHECK_SECONDS = 300
# How often documents past their content retention are looked for.
CONTENT_RETENTION_CHECK_SECONDS = 3600


def periodic_jobs(
    blobs: BlobStore,
    *,
    settings: Settings,
    cipher: EnvelopeCipher | None,
    metrics: Metrics | None = None,
) -> list[PeriodicJob]:
    jobs = [
        PeriodicJob(
            "audit retention",
            DAILY_JOB_CHECK_SECONDS,
            audit_service.run_retention_if_due,
        ),
        PeriodicJob("expiry scans", DAILY_JOB_CHECK_SECONDS, scans.run_due_scans),
        # Idempotent and cheap when nothing is due: no cluster-wide claim needed.
        PeriodicJob(
            "content retention",
            CONTENT_RETENTION_CHECK_SECONDS,
            functools.partial(purge_expired_content, blobs=blobs),
        ),
        # What a crash left in the blob store; idempotent, any number may run.
        PeriodicJob(
            "blob sweep",
            sweeper.SWEEP_EVERY_SECONDS,
            functools.partial(
                sweeper.sweep,
                blobs=blobs,
                grace_seconds=settings.orphan_blob_grace_seconds,
                metrics=metrics,
            ),
        ),
    ]
    every_entries = settings.audit_anchor_every_entries
    every_minutes = settings.audit_anchor_every_minutes
    if (every_entries or every_minutes) and cipher is None:
        logger.warning(
            "no master key loaded: the system seal cannot sign audit anchors"
        )
    elif every_entries or every_minutes:
        jobs.append(
            PeriodicJob(
                "audit anchors",
                anchors.check_seconds(every_minutes),
                functools.partial(
                    anchors.anchor_if_due,
                    cipher=cipher,
                    every_entries=every_entries,
                    every_minutes=every_minutes,
                ),
            )
        )
    return jobs


class BackgroundWorker:
    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        settings: Settings,
        cipher: EnvelopeCipher | None,
        vault: Vault,
        blobs: BlobStore,
        trust_roots: Sequence[asn1_x509.Certificate],
        metrics: Metrics | None = None,
    ) -> None:
        self._stop = threading.Event()
        self._batches = BatchProcessorThread(
            factory,
            vault=vault,
            blobs=blobs,
            settings=settings,
            trust_roots=trust_roots,
        )
        self.notifications = NotificationLoop(
            factory,
            cipher=cipher,
            settings=settings,
            periodic_jobs=periodic_jobs(
                blobs, settings=settings, cipher=cipher, metrics=metrics
            ),
        )
        self._notification_thread = threading.Thread(
            target=self.notifications.run,
            args=(self._stop,),
            name="signvault-notifications",
            daemon=True,
        )

    def start(self) -> None:
        self._batches.start()
        self._notification_thread.start()

    def stop(self) -> None:
        """Ask both threads to stop and wait: the batch stops between two documents, a send in flight finishes."""
        self.request_stop()
        self._batches.stop()
        self._notification_thread.join()

    def request_stop(self) -> None:
        """Ask the threads to stop without waiting (safe in a signal handler)."""
        self._stop.set()
        self.notifications.wake.set()

    def wait(self) -> None:
        """Block until a stop has been requested."""
        while not self._stop.wait(1.0):
            pass
