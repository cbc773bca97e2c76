"""Training throughput: samples/s and data-wait share of `python -m mamo.train`, for the tiny
and small presets, eager vs torch.compile, side by side.

    .venv/bin/python benchmarks/train_throughput.py [--presets tiny small] [--modes eager compile]
        [--steps 12] [--warmup 3] [--batch tiny=16 small=4] [--threads 1] [--out benchmarks/out/train.json]

Each (preset, mode) is one real training run in a fresh process (real shards written by
`python -m ingest synthetic`, real concept annotations from `python -m concepts build`, the DALI
loader) with checkpoints off; figures come from its metrics.jsonl, skipping the first
``--warmup`` steps (torch.compile compiles there). samples/s is the median over the measured
steps; data-wait share is the mean share of step time spent waiting for the loader.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE_SIZE = {"tiny": 64, "small": 224, "base": 256}


def sh(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True)


def make_data(root: Path, size: int, n: int, env: dict[str, str]) -> Path:
    vdir = root / "bench" / f"s{size}"
    if not (vdir / "manifest.json").is_file():
        r = sh(["-m", "ingest", "synthetic", "--out", str(root), "--dataset", "bench", "--version", f"s{size}",
                "--n", str(n), "--seed", "0", "--image-size", str(size)], env)
        if r.returncode:
            sys.exit(r.stderr)
        r = sh(["-m", "concepts", "build", str(vdir), "--quiet"], env)
        if r.returncode:
            sys.exit(r.stderr)
    return vdir


def run_one(preset: str, mode: str, vdir: Path, work: Path, args, env) -> dict:
    run_dir = work / f"{preset}-{mode}"
    shutil.rmtree(run_dir, ignore_errors=True)
    batch = args.batch.get(preset)
    cmd = ["-m", "mamo.train", "--config", f"configs/{preset}.yaml", "--run-dir", str(run_dir), "--no-progress",
           f"data.version_dir={vdir}", f"train.steps={args.steps}", "train.ckpt_every=0",
           f"train.compile={'true' if mode == 'compile' else 'false'}", f"train.num_threads={args.threads}",
           "data.num_threads=1", f"train.device={args.device}", "optim.warmup_steps=1",
           *([f"data.batch_size={batch}"] if batch else []), *args.extra]
    t0 = time.perf_counter()
    r = sh(cmd, env)
    wall = time.perf_counter() - t0
    if r.returncode:
        return {"preset": preset, "mode": mode, "error": r.stderr.strip().splitlines()[-1:]}
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    measured = recs[args.warmup:] or recs
    return {
        "preset": preset,
        "mode": mode,
        "batch": int(round(statistics.median(x["samples_per_s"] * x["step_time_s"] for x in measured))),
        "samples_per_s": statistics.median(x["samples_per_s"] for x in measured),
        "data_wait_share": statistics.mean(x["data_wait_share"] for x in measured),
        "step_s": statistics.median(x["step_time_s"] for x in measured),
        "first_steps_s": round(sum(x["step_time_s"] for x in recs[: args.warmup]), 2),
        "final_loss": recs[-1]["loss"],
        "wall_s": round(wall, 1),
    }


def parse_batch(items: list[str]) -> dict[str, int]:
    out = {}
    for it in items:
        k, v = it.split("=")
        out[k] = int(v)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=["tiny", "small"])
    ap.add_argument("--modes", nargs="+", default=["eager", "compile"], choices=["eager", "compile"])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3, help="first steps left out of the figures")
    ap.add_argument("--batch", nargs="*", default=["tiny=16", "small=4"], help="per-preset batch size")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (train.num_threads)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    ap.add_argument("--n", type=int, default=96, help="samples in the benchmark dataset")
    ap.add_argument("--root", help="keep data and runs here (default: a temp dir)")
    ap.add_argument("--out", help="also write the results as JSON here")
    ap.add_argument("extra", nargs="*", help="extra dotted overrides for every run")
    args = ap.parse_args()
    args.batch = parse_batch(args.batch)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="false")
    root = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="mamo-train-bench-"))
    results = []
    for preset in args.presets:
        vdir = make_data(root, SOURCE_SIZE[preset], args.n, env)
        for mode in args.modes:
            res = run_one(preset, mode, vdir, root / "runs", args, env)
            results.append(res)
            print(json.dumps(res), flush=True)
    load = os.getloadavg()[0]
    print(f"\n{args.device}, {args.threads} torch thread(s), load average {load:.1f}, {os.cpu_count()} cores\n")
    print("| preset | mode | batch | samples/s | step (s) | data-wait share | first steps (s) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['preset']} | {r['mode']} | - | error: {r['error']} | | | |")
            continue
        print(f"| {r['preset']} | {r['mode']} | {r['batch']} | {r['samples_per_s']:.2f} | {r['step_s']:.3f} | "
              f"{r['data_wait_share']:.1%} | {r['first_steps_s']} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"load_average": load, "device": args.device, "results": results}, indent=2))
    if not args.root:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
