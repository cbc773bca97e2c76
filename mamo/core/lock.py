"""One writer per output: an advisory lock file on a run dir, a dataset version or a build.

``with exclusive(dir, "training"):`` holds ``<dir>/.lock`` (``fcntl.flock``, so the kernel
frees it when the holder dies, even by SIGKILL) and writes the holder's pid, host and start
time into it, so that a second writer can be told who holds it. A lock file left by a dead
holder is taken over with a warning that names the old pid.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from mamo.core.cli import UserError

LOCK_NAME = ".lock"
log = logging.getLogger(__name__)


class LockHeld(UserError):
    """Another process is writing the same output."""


def _holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096).decode("utf-8") or "{}")
    except (OSError, ValueError):
        return {}


def _refusal(directory: Path, h: dict) -> LockHeld:
    return LockHeld(f"{directory} is in use: {h.get('what', 'another writer')} by pid "
                    f"{h.get('pid', '?')} on {h.get('host', '?')} since {h.get('since', '?')} "
                    f"(lock file {directory / LOCK_NAME})")


def check_free(directory: str | Path) -> None:
    """Raise ``LockHeld`` if a live writer holds ``directory``; creates and changes nothing
    (for checks that run before a writer takes the lock, and for ``--check``)."""
    directory = Path(directory)
    try:
        fd = os.open(directory / LOCK_NAME, os.O_RDONLY)
    except OSError:  # no lock file (or no directory): nobody holds it
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _refusal(directory, _holder(fd)) from None
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive(directory: str | Path, what: str) -> Iterator[Path]:
    """Hold the lock of ``directory`` (created if needed) for ``what`` ("training", ...)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _refusal(directory, _holder(fd)) from None
        old = _holder(fd)
        if old.get("pid") and old.get("pid") != os.getpid():
            log.warning("%s: taking over a stale lock of pid %s on %s (%s), which is gone",
                        directory, old.get("pid"), old.get("host", "?"), old.get("what", "?"))
        info = {"pid": os.getpid(), "host": socket.gethostname(), "what": what,
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(info).encode("utf-8"))
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # a clean release leaves an empty (not stale) lock file
    finally:
        os.close(fd)  # closing the descriptor releases the flock
