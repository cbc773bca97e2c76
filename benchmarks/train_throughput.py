"""Training throughput of ``python -m mamo.train`` itself: samples/s and data-wait share, for
the tiny and small presets, eager against compiled blocks and the compiled whole step, side by
side.

    python -m benchmarks.train_throughput [--presets tiny small] [--modes eager blocks step]
        [--steps 12] [--warmup 3] [--batch tiny=16 small=4] [--threads 1] [--out benchmarks/out/train]
    python -m benchmarks.train_throughput --smoke

Each (preset, mode) is one real training run in a fresh process (real shards written by
``python -m ingest synthetic``, real concept annotations from ``python -m concepts build``, the
DALI loader) with checkpoints off; figures come from its metrics.jsonl, skipping the first
``--warmup`` steps (torch.compile compiles there, on the second step: the first one is
FLOP-counted eagerly). samples/s is the median over the measured steps; data-wait share is the
mean share of step time spent waiting for the loader. Modes: ``eager``; ``blocks``
(``train.compile=true``, each transformer block); ``step`` (``train.compile=true
train.compile_scope=step``, ``MAMO.step`` whole). The load average is recorded before and
after: on a shared machine it says how much the figures can be trusted.

:func:`check_resume` (benchmarks/gpu_check.py, section ``train_cli``) runs a short run with a
checkpoint on the device, then ``--resume`` to a later step.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import harness
from benchmarks.harness import ROOT, Report
from mamo.run_dir import RunDir

SOURCE_SIZE = {"tiny": 64, "small": 224, "base": 256}
# gpu_check's run + resume: config, samples, image size, batch, steps, more steps after --resume
RESUME = {"full": ("small.yaml", 1024, 224, 64, 40, 10), "quick": ("small.yaml", 1024, 224, 64, 40, 10),
          "smoke": ("tiny.yaml", 64, 64, 8, 4, 2)}
# the overrides of each --modes choice
MODES = {"eager": ("train.compile=false",),
         "blocks": ("train.compile=true", "train.compile_scope=blocks"),
         "step": ("train.compile=true", "train.compile_scope=step")}
# no spaCy: token MLM instead of concepts; the PyTorch loader (DALI may be missing on a GPU machine)
NO_CONCEPTS = ("data.vocab_id=none", "loss.text_target=mlm", "data.backend=torch", "model.text_init=null")


def train(run_dir: Path, config: str, overrides: list[str], env: dict[str, str],
          resume: bool = False, timeout: float | None = None) -> tuple[int, float, list[dict[str, Any]], str]:
    """``python -m mamo.train`` in a fresh process: (exit status, wall s, metrics rows, stderr
    tail); killed past ``timeout`` s (status -9, the rows it logged are kept)."""
    cmd = ["-m", "mamo.train", "--config", str(ROOT / "configs" / config), "--run-dir", str(run_dir),
           "--no-progress", *overrides, *(["--resume"] if resume else [])]
    t0 = time.perf_counter()
    r = harness.python(cmd, env, timeout)
    wall = time.perf_counter() - t0
    path = RunDir(run_dir).metrics
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []
    return r.returncode, wall, rows, r.stderr.strip()[-2000:]


def run_one(preset: str, mode: str, vdir: Path, work: Path, args, env: dict[str, str]) -> dict[str, Any]:
    run_dir = work / f"{preset}-{mode}"
    shutil.rmtree(run_dir, ignore_errors=True)
    batch = args.batch.get(preset)
    rc, wall, recs, err = train(run_dir, f"{preset}.yaml", [
        f"data.version_dir={vdir}", f"train.steps={args.steps}", "train.ckpt_every=0",
        *MODES[mode], f"train.num_threads={args.threads}",
        "data.num_threads=1", f"train.device={args.device}", "optim.warmup_steps=1",
        *([f"data.batch_size={batch}"] if batch else []), *args.extra], env)
    if rc or not recs:
        raise RuntimeError(f"python -m mamo.train {preset} {mode} failed: {err.splitlines()[-1:]}")
    measured = recs[args.warmup:] or recs
    return {
        "batch": int(round(statistics.median(x["samples_per_s"] * x["step_time_s"] for x in measured))),
        "samples_per_s": statistics.median(x["samples_per_s"] for x in measured),
        "data_wait_share": round(statistics.mean(x["data_wait_share"] for x in measured), 3),
        "step_s": round(statistics.median(x["step_time_s"] for x in measured), 4),
        "first_steps_s": round(sum(x["step_time_s"] for x in recs[: args.warmup]), 2),
        "final_loss": recs[-1]["loss"],
        "wall_s": round(wall, 1),
    }


def check_resume(rep: Report, size: str, device: str, env: dict[str, str]) -> None:
    """``python -m mamo.train`` on ``device`` (its CUDA/bf16 path, GPU checkpoints): a short run
    with a checkpoint on synthetic data, then ``--resume`` to a later step."""
    config, n, image_size, batch, steps, more = RESUME[size]
    root = Path(tempfile.mkdtemp(prefix="bench_train_resume_"))
    vdir = harness.synthetic_version(root, n, image_size)
    run_dir = root / "run"
    common = [f"data.version_dir={vdir}", *NO_CONCEPTS, f"data.image_size={image_size}",
              f"data.batch_size={batch}", f"train.device={device}", f"train.ckpt_every={steps}",
              "optim.warmup_steps=5"]
    result = rep.section("train_cli", {"config": config, "batch_size": batch, "image_size": image_size})
    rc, result["first_s"], _, err = train(run_dir, config, [*common, f"train.steps={steps}"], env)
    rc_resume, result["resume_s"], rows, err_resume = train(
        run_dir, config, [*common, f"train.steps={steps + more}"], env, resume=True)
    result.update(rc_first=rc, rc_resume=rc_resume, stderr_tail=(err + err_resume)[-1000:] if rc or rc_resume else "")
    got = [r["step"] for r in rows]
    late = [r["samples_per_s"] for r in rows[len(rows) // 2:]]
    ckpts = RunDir(run_dir).checkpoints
    result.update(steps_logged=len(rows), last_step=got[-1] if got else None,
                  samples_per_s_median=round(statistics.median(late), 1) if late else None,
                  final_loss=rows[-1].get("loss") if rows else None,
                  checkpoints=sorted(p.name for p in ckpts.iterdir() if not p.name.startswith("."))
                  if ckpts.is_dir() else [])
    ok = (rc == 0 and rc_resume == 0 and got == list(range(1, steps + more + 1))
          and all(r.get("loss") is not None and r["loss"] == r["loss"] for r in rows))
    rep.check("mamo.train", f"{config} {device}: {steps} steps, resume to {steps + more}", ok,
              precision="bf16 autocast" if device == "cuda" else "fp32")
    shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = harness.parser(__doc__)
    ap.add_argument("--presets", nargs="+", default=["tiny", "small"])
    ap.add_argument("--modes", nargs="+", default=["eager", "blocks"], choices=list(MODES))
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3, help="first steps left out of the figures")
    ap.add_argument("--batch", nargs="*", default=["tiny=16", "small=4"], help="per-preset batch size")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (train.num_threads)")
    ap.add_argument("--n", type=int, default=96, help="samples in the benchmark dataset")
    ap.add_argument("--root", help="keep data and runs here (default: a temp dir)")
    ap.add_argument("extra", nargs="*", help="extra dotted overrides for every run")
    args = harness.parse(ap, argv)
    if args.smoke:  # one eager tiny run against itself: the code path, not a figure
        args.presets, args.modes, args.steps, args.warmup, args.n = ["tiny"], ["eager"], 2, 1, 16
        args.batch, args.extra = ["tiny=4"], [*args.extra, *NO_CONCEPTS]
    args.batch = {k: int(v) for k, v in (it.split("=") for it in args.batch)}
    env = harness.subprocess_env(OMP_NUM_THREADS=str(args.threads))
    root = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="mamo-train-bench-"))
    rep = Report("python -m mamo.train throughput", {"device": args.device, "threads": args.threads,
                                                     "load_average": os.getloadavg()[0]}, args.out)
    for preset in args.presets:
        vdir = harness.synthetic_version(root, args.n, SOURCE_SIZE[preset], concepts=not args.smoke)
        results = {}
        for mode in args.modes:
            try:
                results[mode] = run_one(preset, mode, vdir, root / "runs", args, env)
            except RuntimeError as e:
                rep.error(f"{preset} {mode}", e)
        base = results.get(args.modes[0])
        for mode, r in results.items():
            extra = {k: v for k, v in r.items() if k != "samples_per_s"}
            rep.row("train throughput", preset, mode, r["samples_per_s"], args.modes[0],
                    base["samples_per_s"] if base else None, "samples/s", **extra)
    rep.section("load_average_end", os.getloadavg()[0])
    if not args.root:
        shutil.rmtree(root, ignore_errors=True)
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
