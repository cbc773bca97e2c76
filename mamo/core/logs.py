"""Logging set-up: once per process, rank-aware, one line per message.

Stages log through ``logging.getLogger(__name__)``; the CLIs call :func:`setup_logging` once.
Under torchrun only rank 0 logs at INFO; other ranks log warnings and errors, prefixed with
their rank, so eight processes do not print every line eight times.
"""
from __future__ import annotations

import logging
import os
import sys

_CONFIGURED = False


def process_rank() -> int:
    """This process's rank under torchrun (``RANK``), 0 otherwise."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def setup_logging(level: int | str = logging.INFO, rank: int | None = None) -> None:
    """Configure the root handler once (later calls only adjust the level)."""
    global _CONFIGURED
    rank = process_rank() if rank is None else rank
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    if rank != 0:
        level = max(int(level), logging.WARNING)
    root = logging.getLogger()
    if not _CONFIGURED:
        handler = logging.StreamHandler(sys.stderr)
        prefix = f"[rank {rank}] " if rank != 0 else ""
        handler.setFormatter(logging.Formatter(prefix + "[%(name)s] %(message)s"))
        # our handler replaces earlier ones (e.g. a library's basicConfig) so lines are not doubled
        for h in list(root.handlers):
            if getattr(h, "_mamo", False):
                root.removeHandler(h)
        handler._mamo = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        _CONFIGURED = True
    root.setLevel(level)
    for name in ("ingest", "concepts", "mamo", "flows", "kernels"):
        logging.getLogger(name).setLevel(level)
