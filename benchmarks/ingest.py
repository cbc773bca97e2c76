"""Ingest throughput: our download path vs bare img2dataset, same input, same settings, same run.

    python -m benchmarks.ingest [--n 2000] [--image-size 96] [--processes 2]
    python -m benchmarks.ingest --smoke

Both download the same synthetic PNGs from one loopback HTTP server. The baseline is
``img2dataset.download`` alone (webdataset output); ours is plan (URL checks, caption
normalisation, dedup by URL) + the same img2dataset call + post-processing (decode check,
dedup by bytes, our shards, DALI indexes, manifest). Ours runs twice: with the web checks
of issue 16 on (the defaults: ``ingest.fetch`` in the workers with per-hop address checks,
robots.txt, opt-outs, per-host gate, whole-request timeout; near-duplicate hashes) and off
(``download.safe_fetch=false``, ``filters.near_duplicate_distance=-1``: img2dataset's own
fetch). Reports images/s of each and the ratios to bare img2dataset.
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
        def ours(dataset: str, extra: list[str]) -> tuple[dict, list[float]]:
            cfg = load_config(IngestConfig, None, [
                f"out={work / 'out'}", f"dataset={dataset}", "version=v1", "overwrite=true",
                "source.kind=urls", f"source.path={table}", "download.allow_private=true",
                f"download.image_size={a.image_size}", f"download.processes={a.processes}",
                f"download.threads={a.threads}", "download.retries=0",
                f"samples_per_shard={a.samples_per_shard}", "filters.min_image_size=1", *extra])
            t0 = time.perf_counter()
            vdir, plan = plan_download(cfg)
            t1 = time.perf_counter()
            download_chunks(cfg, vdir, plan)
            t2 = time.perf_counter()
            m = finalize(cfg, vdir, plan)
            t3 = time.perf_counter()
            return m, [t0, t1, t2, t3]

        m_on, t_on = ours("bench-on", [])
        m_off, t_off = ours("bench-off", ["download.safe_fetch=false", "download.robots_txt=false",
                                          "filters.near_duplicate_distance=-1"])
        if not a.smoke:  # img2dataset takes ~10 s to start: the smoke run times it once
            t_bare_runs.append(bare())
    t_bare = sum(t_bare_runs) / len(t_bare_runs)
    assert m_off["counts"]["written"] == a.n, m_off["counts"]
    # (with the checks on, near-identical synthetic scenes are dropped as near_duplicate)
    assert m_on["counts"]["written"] + m_on["counts"]["duplicate"] == a.n, m_on["counts"]
    rep = Report(f"ingest: ours vs bare img2dataset, {a.n} images", {
        "image_size": a.image_size, "processes": a.processes, "threads": a.threads}, a.out)
    for label, m, t in (("web checks on", m_on, t_on), ("web checks off", m_off, t_off)):
        rep.row(f"download throughput, {label}", f"{a.n} images",
                "ours (plan + img2dataset + post-process)", a.n / (t[3] - t[0]),
                "bare img2dataset (mean of runs before and after ours)", a.n / t_bare, "img/s",
                plan_s=round(t[1] - t[0], 1), img2dataset_s=round(t[2] - t[1], 1),
                post_process_s=round(t[3] - t[2], 1), bare_runs_s=[round(x, 1) for x in t_bare_runs],
                near_duplicates=m["reasons"].get("duplicate", {}).get("near_duplicate", 0))
    if not a.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
