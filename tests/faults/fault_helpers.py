"""Helpers of the fault tests (a uniquely named module: test dirs are not packages)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


def remount_ro(d: Path) -> None:
    r = subprocess.run(["mount", "-o", "remount,ro", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot remount {d} read-only: {r.stderr.strip()}")


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def flip_byte(path: Path, where: float = 0.6) -> None:
    """Flip one bit well inside the file (size unchanged: only a digest can tell)."""
    data = bytearray(path.read_bytes())
    i = int(len(data) * where)
    data[i] ^= 0x01
    path.write_bytes(bytes(data))
