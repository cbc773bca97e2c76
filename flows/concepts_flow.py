"""Prefect flows of the concepts stage; every step is a function of ``concepts.build``.

``concepts_flow``: a shared first pass on a Dask cluster (each shard's distinct captions in
parallel, then every distinct caption of the build through spaCy once, in parallel chunks,
then each shard's extraction file), build the vocabulary, annotate each shard (parallel),
commit the version and point LATEST at it.
``rebuild_concepts_flow``: the same, unless the LATEST vocabulary was built from the same
data (manifest sha256) with the same settings, in which case it does nothing.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect_dask import DaskTaskRunner

from concepts import build as steps
from concepts.config import ConceptsConfig, DaskConfig
from concepts.store import ConceptStore
from mamo.core.config import load_config


def load_concepts_config(config_path: str | None = None,
                         overrides: list[str] | None = None) -> ConceptsConfig:
    cfg = load_config(ConceptsConfig, config_path, overrides or [])
    cfg.show_progress = False  # Prefect logs task states; bars would interleave
    return cfg


def dask_task_runner(d: DaskConfig) -> DaskTaskRunner:
    """A runner on an existing scheduler (``dask.address``) or on a local cluster per run."""
    # distributed logs every worker start/stop at INFO; the flow's own logs are what matter
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if d.address:
        return DaskTaskRunner(address=d.address)
    return DaskTaskRunner(cluster_kwargs={
        "n_workers": d.n_workers, "threads_per_worker": d.threads_per_worker,
        "processes": d.processes, "dashboard_address": None,
        "silence_logs": logging.WARNING})


@task(name="concepts-shard-texts", retries=1)
def texts_task(tar: str, cfg: ConceptsConfig) -> list[str]:
    return steps.texts_step(tar, cfg)


@task(name="concepts-parse", retries=1)
def parse_task(texts: list[str], cfg: ConceptsConfig) -> dict[str, tuple[list, int]]:
    return steps.parse_step(texts, cfg)


@task(name="concepts-extract-shard", retries=1)
def extract_shard_task(plan: steps.BuildPlan, stem: str, tar: str, cfg: ConceptsConfig,
                       known: dict[str, tuple[list, int]]) -> dict[str, Any]:
    return steps.extract_step(plan, stem, tar, cfg, known)


def _extract_shared(plan: steps.BuildPlan, cfg: ConceptsConfig) -> int:
    """The shared first pass: each distinct caption of the build through spaCy once (in
    parallel chunks), then each shard's extraction file from those results. Returns the
    number of shards whose extraction was already cached."""
    pending, per_shard, failure = [], [], None
    queued = steps.pending_shards(plan)
    for shard, f in zip(queued, [texts_task.submit(tar, cfg) for _, tar in queued]):
        try:
            per_shard.append(f.result())
            pending.append(shard)
        except Exception as exc:  # noqa: BLE001 - the good shards are still extracted, then it is raised
            failure = failure or exc
    texts = steps.shared_texts(per_shard)
    chunks = steps.split_texts(texts, cfg.dask.n_workers * cfg.dask.threads_per_worker,
                               cfg.extract.batch_size)
    known: dict[str, tuple[list, int]] = {}
    for f in [parse_task.submit(chunk, cfg) for chunk in chunks]:
        known.update(f.result())  # raises if a chunk failed twice
    # each shard task gets only its own texts' results, not the whole table
    written = [extract_shard_task.submit(plan, stem, tar, cfg, {t: known[t] for t in mine})
               for (stem, tar), mine in zip(pending, per_shard)]
    for f in written:
        f.result()
    if failure is not None:  # after the good shards' files are kept, so a rerun redoes only it
        raise failure
    return len(plan.shards) - len(queued)


@task(name="concepts-build-vocab")
def vocab_task(plan: steps.BuildPlan, cfg: ConceptsConfig) -> tuple[str, str, dict[str, int]]:
    vocab_id, staging, ids = steps.vocab_step(plan, cfg)
    return vocab_id, str(staging), ids


@task(name="concepts-annotate-shard", retries=1)
def annotate_shard_task(plan: steps.BuildPlan, stem: str, staging: str,
                        concept_to_id: dict[str, int], vocab_id: str) -> dict[str, int]:
    return steps.annotate_step(plan, stem, staging, concept_to_id, vocab_id)


@task(name="concepts-commit")
def commit_task(plan: steps.BuildPlan, staging: str, vocab_id: str) -> str:
    return str(steps.commit_step(plan, staging, vocab_id))


@flow(name="concepts-build")
def _build_version(version_dir: str, cfg: ConceptsConfig) -> dict[str, Any]:
    plan = steps.plan_build(version_dir, cfg)
    cached = _extract_shared(plan, cfg)
    vocab_id, staging, ids = vocab_task(plan, cfg)
    try:
        annotated = [annotate_shard_task.submit(plan, stem, staging, ids, vocab_id)
                     for stem, _ in plan.shards]
        for f in annotated:
            f.result()
        path = commit_task(plan, staging, vocab_id)
    finally:
        steps.discard_staging(staging)
    return {"vocab_id": vocab_id, "path": path, "num_concepts": len(ids), "rebuilt": True,
            "shards": len(plan.shards), "cached_shards": cached}


def _run_build(version_dir: str, cfg: ConceptsConfig) -> dict[str, Any]:
    runner = dask_task_runner(cfg.dask)
    with steps.lock_build(version_dir):  # one build per dataset version, as in the CLI
        return _build_version.with_options(task_runner=runner)(str(Path(version_dir).resolve()),
                                                               cfg)


@flow(name="concepts")
def concepts_flow(version_dir: str, config_path: str | None = None,
                  overrides: list[str] | None = None) -> dict[str, Any]:
    """Build (always) a concept vocabulary version of ``version_dir`` and annotate its shards."""
    return _run_build(version_dir, load_concepts_config(config_path, overrides))


@flow(name="rebuild-concepts")
def rebuild_concepts_flow(version_dir: str, config_path: str | None = None,
                          overrides: list[str] | None = None) -> dict[str, Any]:
    """No-op when LATEST matches the data and settings; else a new version (old ones kept)."""
    cfg = load_concepts_config(config_path, overrides)
    current = steps.up_to_date(version_dir, cfg)
    if current is not None:
        store = ConceptStore(version_dir, current)
        return {"vocab_id": current, "path": str(store.dir), "num_concepts": store.num_concepts,
                "rebuilt": False}
    return _run_build(version_dir, cfg)
