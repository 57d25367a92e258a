"""The wake sockets of notification loops on one SQLite file (see test_workers for processes)."""

import logging
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import make_url

from app.notifications import sqlite_wake


def test_the_folder_sits_beside_an_sqlite_file_only(tmp_path: Path) -> None:
    database = tmp_path / "signvault.db"
    assert sqlite_wake.wake_folder(make_url(f"sqlite:///{database}")) == (
        tmp_path / "signvault.db.wake"
    )
    assert sqlite_wake.wake_folder(make_url("sqlite://")) is None
    assert sqlite_wake.wake_folder(make_url("sqlite:///:memory:")) is None
    assert (
        sqlite_wake.wake_folder(make_url("postgresql+psycopg://u@localhost/db")) is None
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    made = tmp_path / "w.wake"
    made.mkdir()
    return made


@dataclass
class Listening:
    socket: sqlite_wake.WakeSocket
    wake: threading.Event
    stop: threading.Event
    thread: threading.Thread


@pytest.fixture
def listening(folder: Path) -> Iterator[Listening]:
    """A loop's wake socket listening in a thread (stopped after the test)."""
    wake_socket = sqlite_wake.WakeSocket(folder)
    wake, stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=wake_socket.listen, args=(wake, stop), daemon=True)
    thread.start()
    assert wake.wait(5)  # set once listening, for what was committed before
    wake.clear()
    yield Listening(wake_socket, wake, stop, thread)
    stop.set()
    wake_socket.interrupt()
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_a_listener_is_woken_by_a_datagram(folder: Path, listening: Listening) -> None:
    [own] = list(folder.iterdir())
    assert own == listening.socket.path
    assert own.name.startswith(f"{os.getpid()}-")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.sendto(b"!", str(own))
    assert listening.wake.wait(5)


def test_an_interrupted_listener_stops_at_once_and_removes_its_socket(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its own next look at the stop flag is a minute away: only the interrupt ends it.
    monkeypatch.setattr(sqlite_wake, "STOP_CHECK_SECONDS", 60)
    wake_socket = sqlite_wake.WakeSocket(folder)
    wake, stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=wake_socket.listen, args=(wake, stop))
    thread.start()
    assert wake.wait(5)
    assert list(folder.iterdir()) == [wake_socket.path]
    stop.set()
    wake_socket.interrupt()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert list(folder.iterdir()) == []


def test_wake_listeners_skips_this_process_and_removes_dead_sockets(
    folder: Path, listening: Listening
) -> None:
    # Another process's live listener, and one whose process died (its file stayed).
    alive = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    alive.bind(str(folder / "1-alive"))
    alive.settimeout(5)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(str(folder / "2-dead"))
    dead.close()
    try:
        sqlite_wake.wake_listeners(folder)
        assert alive.recv(64) == b"!"
    finally:
        alive.close()
    assert not (folder / "2-dead").exists()
    assert not listening.wake.is_set()  # this process's loops are woken in memory


def test_wake_listeners_without_a_folder_does_nothing(tmp_path: Path) -> None:
    sqlite_wake.wake_listeners(tmp_path / "nobody-listened.wake")


def test_a_path_too_long_for_a_socket_keeps_the_loop_polling(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / ("x" * 120 + ".wake")
    wake, stop = threading.Event(), threading.Event()
    with caplog.at_level(logging.WARNING, logger=sqlite_wake.__name__):
        sqlite_wake.WakeSocket(folder).listen(wake, stop)  # returns at once
    assert "too long" in caplog.text
    assert not folder.exists()
    assert not wake.is_set()
