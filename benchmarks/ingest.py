"""Ingest throughput: our download path vs bare img2dataset, same input, same settings, same run.

    python -m benchmarks.ingest [--n 2000] [--image-size 96] [--processes 2]
    python -m benchmarks.ingest --smoke

Both download the same synthetic PNGs from one loopback HTTP server. The baseline is
``img2dataset.download`` alone (webdataset output); ours is plan (URL checks, caption
normalisation, dedup by URL) + the same img2dataset call + post-processing (decode check,
dedup by bytes, our shards, DALI indexes, manifest). Reports images/s of both and the ratio.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import harness
from benchmarks.harness import Report

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def main(argv: list[str] | None = None) -> int:
    ap = harness.parser(__doc__)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--image-size", type=int, default=96, help="output size")
    ap.add_argument("--source-size", type=int, default=128, help="served image size")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--samples-per-shard", type=int, default=1000)
    ap.add_argument("--workdir", default=None)
    a = harness.parse(ap, argv)
    if a.smoke:
        a.n, a.image_size, a.source_size, a.processes, a.threads = 8, 32, 32, 1, 2

    from ingest.config import IngestConfig
    from ingest.download import download_chunks, finalize, plan_download
    from ingest.http_server import serve_directory
    from ingest.img2dataset_runner import img2dataset_params, run_img2dataset
    from ingest.synthetic import SyntheticConfig
    from ingest.synthetic_version import url_table_for, write_synthetic_url_source
    from mamo.core.config import load_config

    import img2dataset  # noqa: F401 - imported once up front, outside both timings

    work = Path(a.workdir or tempfile.mkdtemp(prefix="mamo-ingest-bench-"))
    src = write_synthetic_url_source(work / "src", SyntheticConfig(n=a.n, seed=0, image_size=a.source_size),
                                     progress=False)
    with serve_directory(src) as base:
        table = url_table_for(src, base)
        # baseline: bare img2dataset, run before and after ours (the machine is shared)
        def bare() -> float:
            bare_out = work / "bare"
            shutil.rmtree(bare_out, ignore_errors=True)
            params = img2dataset_params(table, bare_out, a.image_size, "border", 95,
                                        a.processes, a.threads, 0, 10, "multiprocessing",
                                        a.samples_per_shard, 0, float("inf"), float("inf"))
            params["save_additional_columns"] = None
            t0 = time.perf_counter()
            run_img2dataset(params)
            return time.perf_counter() - t0

        t_bare_runs = [bare()]
        # ours
        cfg = load_config(IngestConfig, None, [
            f"out={work / 'out'}", "dataset=bench", "version=v1", "overwrite=true",
            "source.kind=urls", f"source.path={table}", "download.allow_private=true",
            f"download.image_size={a.image_size}", f"download.processes={a.processes}",
            f"download.threads={a.threads}", "download.retries=0",
            f"samples_per_shard={a.samples_per_shard}", "filters.min_image_size=1"])
        t0 = time.perf_counter()
        vdir, plan = plan_download(cfg)
        t1 = time.perf_counter()
        download_chunks(cfg, vdir, plan)
        t2 = time.perf_counter()
        m = finalize(cfg, vdir, plan)
        t3 = time.perf_counter()
        if not a.smoke:  # img2dataset takes ~10 s to start: the smoke run times it once
            t_bare_runs.append(bare())
    t_bare = sum(t_bare_runs) / len(t_bare_runs)
    t_ours = t3 - t0
    assert m["counts"]["written"] == a.n, m["counts"]
    rep = Report(f"ingest: ours vs bare img2dataset, {a.n} images", {
        "image_size": a.image_size, "processes": a.processes, "threads": a.threads}, a.out)
    rep.row("download throughput", f"{a.n} images", "ours (plan + img2dataset + post-process)", a.n / t_ours,
            "bare img2dataset (mean of runs before and after ours)", a.n / t_bare, "img/s",
            plan_s=round(t1 - t0, 1), img2dataset_s=round(t2 - t1, 1), post_process_s=round(t3 - t2, 1),
            bare_runs_s=[round(t, 1) for t in t_bare_runs])
    if not a.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
