"""Ingest throughput: our download path vs bare img2dataset, same input, same settings, same run.

    .venv/bin/python benchmarks/ingest.py [--n 2000] [--image-size 96] [--processes 2]

Both download the same synthetic PNGs from one loopback HTTP server. The baseline is
``img2dataset.download`` alone (webdataset output); ours is plan (URL checks, caption
normalisation, dedup by URL) + the same img2dataset call + post-processing (decode check,
dedup by bytes, our shards, DALI indexes, manifest). Prints images/s of both and the ratio.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# run as a script, this file's folder comes first on sys.path and its name would shadow the
# `ingest` package: put the repository root there instead
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--image-size", type=int, default=96, help="output size")
    ap.add_argument("--source-size", type=int, default=128, help="served image size")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--samples-per-shard", type=int, default=1000)
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()

    from ingest.config import IngestConfig
    from ingest.download import download_chunks, finalize, plan_download
    from ingest.http_server import serve_directory
    from ingest.img2dataset_runner import img2dataset_params, run_img2dataset
    from ingest.synthetic import SyntheticConfig
    from ingest.synthetic_version import url_table_for, write_synthetic_url_source
    from mamo.core.config import load_config

    import img2dataset  # noqa: F401 - imported once up front, outside both timings

    work = Path(a.workdir or tempfile.mkdtemp(prefix="mamo-ingest-bench-"))
    src = write_synthetic_url_source(work / "src", SyntheticConfig(n=a.n, seed=0,
                                                                   image_size=a.source_size))
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
        t_bare_runs.append(bare())
    t_bare = sum(t_bare_runs) / len(t_bare_runs)
    t_ours = t3 - t0
    assert m["counts"]["written"] == a.n, m["counts"]
    print(f"images: {a.n}, output {a.image_size}px, processes {a.processes}, threads {a.threads}")
    print(f"bare img2dataset : {t_bare:7.1f} s  {a.n / t_bare:7.1f} img/s  (mean of runs "
          f"before and after ours: {', '.join(f'{t:.1f} s' for t in t_bare_runs)})")
    print(f"ours (total)     : {t_ours:7.1f} s  {a.n / t_ours:7.1f} img/s  "
          f"(plan {t1 - t0:.1f} s, img2dataset {t2 - t1:.1f} s, post-process {t3 - t2:.1f} s)")
    print(f"ratio ours/bare throughput: {t_bare / t_ours:.2f}")
    if not a.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
