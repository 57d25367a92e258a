"""Waking the notification loops of other processes on one SQLite database at once.

PostgreSQL carries this over LISTEN/NOTIFY (`worker.listen_for_events`). SQLite has
no such channel, but every process on one SQLite database runs on one host (a
`signvault worker` beside `signvault serve`, or a second serving process): each
notification loop binds a datagram socket in a folder beside the database file, and
a commit that emitted sends every other process's socket one byte.
"""

import contextlib
import functools
import logging
import os
import socket
import threading
import uuid
from pathlib import Path

from sqlalchemy.engine import URL

logger = logging.getLogger(__name__)

# The folder beside the database file holding one socket per listening loop.
FOLDER_SUFFIX = ".wake"
# A listener not interrupted checks this often whether it should stop.
STOP_CHECK_SECONDS = 1.0
# Longest socket path Linux accepts (sun_path holds 108 bytes with the final NUL).
_MAX_SOCKET_PATH = 107


@functools.lru_cache(maxsize=16)
def wake_folder(url: URL) -> Path | None:
    """Where the loops on this database listen, if it is an SQLite file."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database).resolve()
    return path.with_name(path.name + FOLDER_SUFFIX)


def wake_listeners(folder: Path) -> None:
    """Send each loop of another process listening in `folder` a wake-up; never raises.

    A socket nobody listens on any more (its process died) is removed. A listener
    whose queue is full has a wake-up pending already.
    """
    own = f"{os.getpid()}-"
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return  # no loop has listened here yet
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.setblocking(False)
        for entry in entries:
            if entry.name.startswith(own):
                continue  # this process's loops are woken in memory
            try:
                sender.sendto(b"!", entry.path)
            except ConnectionRefusedError:
                Path(entry.path).unlink(missing_ok=True)
            except (BlockingIOError, FileNotFoundError):
                pass
            except OSError:
                logger.debug("could not wake the loop at %s", entry.path, exc_info=True)


class WakeSocket:
    """One loop's socket in `folder`: `listen` sets a flag for each wake-up until stopped."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def listen(self, wake: threading.Event, stop: threading.Event) -> None:
        """Set `wake` whenever another process commits an emitted event, until `stop`.

        Its socket is removed when it returns. If the socket cannot be made (a
        database path too long for a socket, a read-only folder), the loop keeps
        to its poll and says so once.
        """
        if len(os.fsencode(self.path)) > _MAX_SOCKET_PATH:
            logger.warning(
                "the database path is too long for a wake-up socket (%s): a separate "
                "worker sees new events at its next poll",
                self.path,
            )
            return
        try:
            self.folder.mkdir(mode=0o700, exist_ok=True)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            listener.bind(os.fsdecode(self.path))
        except OSError:
            logger.warning(
                "could not listen for wake-ups at %s: a separate worker sees new "
                "events at its next poll",
                self.path,
                exc_info=True,
            )
            return
        try:
            listener.settimeout(STOP_CHECK_SECONDS)
            wake.set()  # what was committed before this listened
            while not stop.is_set():
                try:
                    listener.recv(64)
                except TimeoutError:
                    continue
                wake.set()
        finally:
            listener.close()
            self.path.unlink(missing_ok=True)

    def interrupt(self) -> None:
        """Make a waiting `listen` look at its stop flag now, not at its next check."""
        # Not listening (any more) is fine: then there is nothing to interrupt.
        with (
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender,
            contextlib.suppress(OSError),
        ):
            sender.sendto(b"", os.fsdecode(self.path))
