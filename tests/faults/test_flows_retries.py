"""Flaky and failing tasks in real Prefect flow runs (test server, real img2dataset, real
loopback HTTP server, real Dask cluster). The fault is a real one on the file system: a
chunk's download directory blocked by a file, a shard gone from its place; a transient one
is cleared at the moment Prefect logs that it will retry the task (a logging handler, so no
timing), a permanent one stays. Transient: the task is retried and the flow run completes.
Permanent: the flow run fails with the reason, nothing looks complete, and the rerun after
the fix completes with exact accounting, redoing only the failed part."""
import logging
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from concepts.store import read_latest
from flows.concepts_flow import concepts_flow
from flows.ingest_flow import ingest_flow  # (imported first: importing reconfigures logging)
from ingest.http_server import RequestLog, serve_directory
from ingest.manifest import load_manifest
from ingest.synthetic import SyntheticConfig
from ingest.synthetic_version import url_table_for, write_synthetic_url_source, write_synthetic_version
from ingest.verify import verify_version

pytestmark = pytest.mark.slow


@contextmanager
def on_retry(task_name: str, fix):
    """Call ``fix`` when Prefect logs that it will retry a run of ``task_name``."""
    seen: list[str] = []

    class Handler(logging.Handler):
        def emit(self, record):
            msg = record.getMessage()
            if "will start" in msg and str(getattr(record, "task_run_name", "")).startswith(task_name):
                seen.append(msg)
                fix()

    h = Handler()
    logger = logging.getLogger("prefect")
    level = logger.level
    logger.setLevel(logging.INFO)  # the retry notice is INFO; the quiet test env logs WARNING
    logger.addHandler(h)
    try:
        yield seen
    finally:
        logger.removeHandler(h)
        logger.setLevel(level)


def _ingest(tmp_path, base, table):
    return ingest_flow(overrides=[
        f"out={tmp_path / 'out'}", "dataset=web", "version=v1", "source.kind=urls",
        f"source.path={table}", "samples_per_shard=6", "download.allow_private=true",
        "download.image_size=32", "download.processes=1", "download.threads=4",
        "download.retries=0", "download.timeout=5"], return_state=True)


@pytest.fixture
def site(tmp_path):
    src = write_synthetic_url_source(tmp_path / "src", SyntheticConfig(n=12, seed=5, image_size=40),
                                     progress=False)
    requests = RequestLog()

    with serve_directory(src, on_request=requests) as base:
        yield base, url_table_for(src, base), requests


def _block_chunk(tmp_path, chunk: int) -> Path:
    """A file where img2dataset's output directory of ``chunk`` goes (kept by the plan step)."""
    blocker = tmp_path / "out" / "web" / "v1" / "_work" / "dl" / f"{chunk:05d}"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a directory")
    return blocker


def test_ingest_chunk_fails_once_is_retried_and_the_run_completes(prefect_harness, tmp_path, site):
    base, table, _ = site
    blocker = _block_chunk(tmp_path, 1)
    with on_retry("ingest-download-chunk", blocker.unlink) as retried:
        state = _ingest(tmp_path, base, table)
    assert len(retried) == 1, retried
    assert state.is_completed(), state.message
    out = state.result()
    assert out["counts"] == {"input": 12, "written": 12, "failed": 0, "filtered": 0, "duplicate": 0}
    assert verify_version(out["version_dir"]).ok


def test_ingest_chunk_fails_for_good_then_the_rerun_completes(prefect_harness, tmp_path, site):
    base, table, requests = site
    blocker = _block_chunk(tmp_path, 1)
    state = _ingest(tmp_path, base, table)
    assert state.is_failed()
    assert "FileExistsError" in state.message or "File exists" in str(state.message) or \
        str(blocker) in str(state.message), state.message
    vdir = tmp_path / "out" / "web" / "v1"
    assert not (vdir / "manifest.json").exists(), "a failed run left a version that looks complete"
    fetched_before = set(requests)
    chunk0 = {u[len(base):] for u in pq.read_table(vdir / "_work" / "chunks_in" / "00000.parquet")
              .column("url").to_pylist()}
    assert chunk0 <= fetched_before  # chunk 0 finished in the failed run

    blocker.unlink()  # the fix
    requests.clear()
    state = _ingest(tmp_path, base, table)
    assert state.is_completed(), state.message
    assert not (set(requests) & chunk0), "a finished chunk was downloaded again"
    m = load_manifest(vdir)
    assert m["counts"] == {"input": 12, "written": 12, "failed": 0, "filtered": 0, "duplicate": 0}
    assert sorted(k for s in m["shards"] for k in [s["samples"]]) == [6, 6]


def _concepts(vdir, **kw):
    return concepts_flow(str(vdir), overrides=["dask.n_workers=1", "dask.threads_per_worker=2",
                                               "dask.processes=false"], return_state=True)


@pytest.fixture
def version(tmp_path):
    write_synthetic_version(tmp_path, "synthetic", "v1", SyntheticConfig(n=60, seed=1, image_size=16),
                            samples_per_shard=20, progress=False)
    return tmp_path / "synthetic" / "v1"


def test_concepts_shard_missing_once_is_retried(prefect_harness, version):
    tar = version / "shards" / "00001.tar"
    away = tar.with_name("away.tar")
    tar.rename(away)  # a shared file system that lost a file for a moment
    with on_retry("concepts-shard-texts", lambda: away.rename(tar)) as retried:
        state = _concepts(version)
    assert len(retried) == 1, retried
    assert state.is_completed(), state.message
    assert state.result()["shards"] == 3 and read_latest(version) == state.result()["vocab_id"]


def test_concepts_shard_missing_for_good_fails_the_run(prefect_harness, version):
    tar = version / "shards" / "00001.tar"
    away = tar.with_name("away.tar")
    tar.rename(away)
    state = _concepts(version)
    assert state.is_failed()
    assert "00001.tar" in str(state.message), state.message
    root = version / "concepts"
    assert read_latest(version) is None and not list(root.glob(".*.tmp-*"))
    extracted = sorted(p.name for p in root.glob("_extracted/*/*.jsonl"))
    assert extracted == ["00000.jsonl", "00002.jsonl"]  # the good shards are kept
    away.rename(tar)
    state = _concepts(version)
    assert state.is_completed(), state.message
    assert state.result()["cached_shards"] == 2 and read_latest(version) is not None
