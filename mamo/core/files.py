"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Also: a write that fails because of the disk (full, read-only, forbidden) becomes
``OutputError``, one line naming the stage and the path (``disk_errors``).

Every writer in the project goes through here, so there is one temp-naming scheme:
``.<name>.tmp-<pid>`` beside the target (same filesystem, so ``os.replace`` is atomic; the pid
keeps two processes from sharing a temp file; the leading dot keeps globs from matching it).
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mamo.core.cli import OUTPUT_ERRNOS, UserError


def temp_path(path: str | Path) -> Path:
    """The temp file that :func:`atomic_path` writes before renaming it onto ``path``."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path: str | Path, fsync: bool = False) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces ``path``, on error it is removed.

    For writers that want a file name (tarfile, safetensors, pyarrow, savefig).
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(e, OSError) and not e.filename:
            # a failed write (a full disk) names no file: name the one being written
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def write_bytes(path: str | Path, data: bytes, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    path = Path(path)
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return path


def write_text(path: str | Path, text: str, fsync: bool = False) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (whatever the locale says)."""
    return write_bytes(path, text.encode("utf-8"), fsync=fsync)


def write_json(path: str | Path, obj: Any, indent: int | None = 2, sort_keys: bool = False,
               fsync: bool = False) -> Path:
    """Write ``obj`` as JSON (UTF-8, trailing newline) to ``path`` atomically."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, ensure_ascii=False)
    return write_text(path, text + "\n", fsync=fsync)


# ---------------------------------------------------------------- outputs that cannot be written

# Errors of the disk rather than of the program: the CLI runner's output faults (full,
# read-only, no permission, quota), plus I/O errors, which a failing disk gives mid-write.
DISK_ERRNOS = OUTPUT_ERRNOS | {errno.EIO}


class OutputError(UserError):
    """An output could not be written (disk full, read-only, no permission); one line naming
    the path and the stage; writers leave nothing half-written looking complete."""

    def __init__(self, message: str, stage: str | None = None):
        super().__init__(message)
        self.stage = stage


def disk_error(e: BaseException) -> OSError | None:
    """The OSError of a full/read-only/forbidden disk behind ``e`` (libraries wrap it (torch,
    safetensors) in their own exceptions, or only say it in words), else None."""
    for x in (e, e.__cause__, e.__context__):
        if isinstance(x, OSError) and x.errno in DISK_ERRNOS:
            return x
    text = str(e)
    for code in DISK_ERRNOS:
        if os.strerror(code) in text:
            return OSError(code, os.strerror(code))
    return None


def _filesystem_state(path: Path) -> OSError | None:
    """torch.save on a full disk says only "unexpected pos ...": ask the filesystem instead."""
    for p in [path, *path.parents]:
        try:
            st = os.statvfs(p)
        except OSError:
            continue
        if st.f_flag & os.ST_RDONLY:
            return OSError(errno.EROFS, os.strerror(errno.EROFS))
        if st.f_bavail == 0:
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return None
    return None


def output_error(path: str | Path, e: BaseException) -> OutputError | None:
    """``OutputError("cannot write <path>: <reason>")`` when ``e`` comes from the disk (full,
    read-only, forbidden), else None (a bug, which should raise as it is)."""
    d = disk_error(e) or _filesystem_state(Path(path))
    if d is None:
        return None
    return OutputError(f"cannot write {d.filename or path}: {d.strerror or os.strerror(d.errno)}")


@contextlib.contextmanager
def disk_errors(stage: str, path: str | Path) -> Iterator[None]:
    """A full, read-only or forbidden output becomes one line naming the stage and the path
    (exit 2 through ``mamo.core.cli.run``); ``path`` is named when the error does not name a file."""
    try:
        yield
    except OutputError as e:
        if e.stage:  # an inner stage named it already
            raise
        raise OutputError(f"{stage}: {e}", stage) from e
    except OSError as e:
        err = output_error(path, e)
        if err is None:
            raise
        raise OutputError(f"{stage}: {err}", stage) from e
