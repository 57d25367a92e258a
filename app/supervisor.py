"""The process supervisor of `signvault serve --workers N`: uvicorn's, with quick replacement.

uvicorn pings each worker in turn over a pipe and waits up to
`timeout_worker_healthcheck` for the answer. A worker killed while a ping is
outstanding never answers, and the pipe never reports its end either (the
supervisor holds both ends), so the replacement started only once that wait
ran out: ~59 s with our 60 s. Here a dead worker is found without a ping,
every round (0.5 s), before any live one is pinged, and a ping stops waiting
as soon as its worker is gone. The long timeout stays for a live worker that
is slow to answer (starting up, or busy on a small host).

Spawned workers re-import the `signvault` script: keep this module light.
"""

import logging
import pickle
import time

from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

logger = logging.getLogger("uvicorn.error")

# How often an outstanding ping checks that its worker still exists.
PING_SLICE_SECONDS = 0.1


class Supervisor(Multiprocess):
    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        failed = [p for p in self.processes if not p.process.is_alive()]
        failed += [
            p
            for p in self.processes
            if p not in failed
            and not answers_ping(p, self.config.timeout_worker_healthcheck)
        ]
        for process in failed:
            if self.should_exit.is_set():
                return
            self._replace(process)

    def _replace(self, process: Process) -> None:
        """uvicorn's replacement of a dead or hung worker."""
        process.kill()
        process.join()
        if process.exitcode == STARTUP_FAILURE:
            # Failed before serving: the app, TLS or socket is broken for every restart.
            logger.error(
                f"Child process [{process.pid}] failed to start, stopping the parent process."
            )
            self.should_exit.set()
            return
        logger.info(f"Child process [{process.pid}] died")
        replacement = Process(self.config, self.sockets)
        replacement.start()
        self.processes[self.processes.index(process)] = replacement


def answers_ping(process: Process, timeout: float) -> bool:
    """True when the worker answers a health check within `timeout`; False at once if it dies."""
    deadline = time.monotonic() + timeout
    try:
        process.parent_conn.send(b"ping")
        while process.process.is_alive():
            if process.parent_conn.poll(PING_SLICE_SECONDS):
                process.parent_conn.recv()
                return True
            if time.monotonic() > deadline:
                return False
    except (OSError, EOFError, pickle.UnpicklingError):
        return False
    return False
