"""``run_ingest(cfg)``: one entry point for every source kind."""
from __future__ import annotations

from typing import Any

from .config import IngestConfig


def run_ingest(cfg: IngestConfig) -> dict[str, Any]:
    """Ingest ``cfg.source`` into ``<cfg.out>/<cfg.dataset>/<cfg.version>``; returns the
    manifest. Rerunning an interrupted URL ingest resumes it."""
    kind = cfg.source.kind
    if kind == "synthetic":
        from .synthetic_version import write_synthetic_version

        return write_synthetic_version(cfg.out, cfg.dataset, cfg.version, cfg.synthetic,
                                       cfg.samples_per_shard, cfg.overwrite, cfg.progress)
    if kind == "urls":
        from .download import ingest_urls
        from .version import lock_version

        with lock_version(cfg.out, cfg.dataset, cfg.version):
            return ingest_urls(cfg)
    from .local_sources import ingest_local

    return ingest_local(cfg)
