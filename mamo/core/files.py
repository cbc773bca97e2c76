"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every writer in the project goes through here, so there is one temp-naming scheme:
``.<name>.tmp-<pid>`` beside the target (same filesystem, so ``os.replace`` is atomic; the pid
keeps two processes from sharing a temp file; the leading dot keeps globs from matching it).
"""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


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
