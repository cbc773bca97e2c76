"""Prefect flow ``ingest``: every step is a function of ``ingest.download`` / ``ingest.pipeline``.

URL sources: plan (one task), download one task per chunk (retried; img2dataset resumes a
retried chunk), then post-process + manifest (one task). Other sources (synthetic, COCO,
Karpathy, folder) are one task. The run's accounting is published as a markdown artifact.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from ingest.config import IngestConfig
from mamo.core.config import load_config


def load_ingest_config(config_path: str | None = None,
                       overrides: list[str] | None = None) -> IngestConfig:
    cfg = load_config(IngestConfig, config_path, overrides or [])
    cfg.progress = False  # Prefect logs task states; bars would interleave
    return cfg


@task(name="ingest-plan", retries=1, retry_delay_seconds=2)
def plan_task(cfg: IngestConfig) -> tuple[str, Any]:
    from ingest.download import plan_download

    vdir, plan = plan_download(cfg)
    return str(vdir), plan


@task(name="ingest-download-chunk", retries=2, retry_delay_seconds=5)
def download_chunk_task(cfg: IngestConfig, vdir: str, chunk: int) -> int:
    from ingest.download import download_chunk

    download_chunk(cfg, Path(vdir), chunk)
    return chunk


@task(name="ingest-finalize", retries=1, retry_delay_seconds=2)
def finalize_task(cfg: IngestConfig, vdir: str, plan: Any) -> dict[str, Any]:
    from ingest.download import finalize

    return finalize(cfg, Path(vdir), plan)


@task(name="ingest-local")
def local_task(cfg: IngestConfig) -> dict[str, Any]:
    from ingest.pipeline import run_ingest

    return run_ingest(cfg)


def stats_markdown(manifest: dict[str, Any], version_dir: str) -> str:
    """The accounting of one ingest run as a markdown table (the Prefect artifact)."""
    c = manifest["counts"]
    lines = [f"# Ingest `{manifest['dataset']}/{manifest['version']}`", "",
             f"Version directory: `{version_dir}`; source: `{manifest['source'].get('kind')}`; "
             f"{len(manifest['shards'])} shards.", "", "| outcome | rows |", "|---|---|"]
    retry = manifest.get("retry_of")
    if retry:
        lines[2:2] = [f"Retry of the transiently failed rows of `{retry['version_dir']}` "
                      f"({len(retry.get('rows', []))} rows).", ""]
    lines += [f"| {k} | {c[k]} |" for k in ("input", "written", "failed", "filtered", "duplicate")]
    reasons = manifest.get("reasons", {})
    rows = [(s, r, n) for s, d in reasons.items() for r, n in d.items()]
    if rows:
        lines += ["", "| status | reason | rows |", "|---|---|---|"]
        lines += [f"| {s} | {r} | {n} |" for s, r, n in rows]
    return "\n".join(lines) + "\n"


@flow(name="ingest", task_runner=ThreadPoolTaskRunner(max_workers=2))
def ingest_flow(config_path: str | None = None, overrides: list[str] | None = None,
                retry_failed: str | None = None) -> dict[str, Any]:
    """Ingest the source of the config into a new dataset version; returns a summary.
    ``retry_failed``: an earlier URL version whose transiently failed rows are the input."""
    if retry_failed:
        from ingest.retry import retry_overrides

        overrides = retry_overrides(retry_failed) + list(overrides or [])
    cfg = load_ingest_config(config_path, overrides)
    from ingest.version import version_dir

    vdir = str(version_dir(cfg.out, cfg.dataset, cfg.version).resolve())
    if cfg.source.kind == "urls":
        from ingest.version import lock_version

        with lock_version(cfg.out, cfg.dataset, cfg.version):  # one writer, as in the CLI
            vdir, plan = plan_task(cfg)
            futures = [download_chunk_task.submit(cfg, vdir, i) for i in range(plan.n_chunks)]
            for f in futures:
                f.result()  # raises if a chunk failed after its retries
            manifest = finalize_task(cfg, vdir, plan)
    else:  # (the writer of a local source takes the lock itself)
        manifest = local_task(cfg)
    create_markdown_artifact(markdown=stats_markdown(manifest, vdir), key="ingest-stats",
                             description=f"ingest {cfg.dataset}/{cfg.version}")
    return {"version_dir": vdir, "counts": manifest["counts"],
            "reasons": manifest.get("reasons", {}), "shards": len(manifest["shards"])}
