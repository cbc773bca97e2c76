"""One prepared run of ``python -m mamo.train`` on a GPU node, inside 8 minutes of GPU time.

    python benchmarks/gpu_node.py --plan                          # what it would run, how long
    python benchmarks/gpu_node.py --out $OUT/gpu_node             # on the GPU node (budget 470 s)
    python benchmarks/gpu_node.py --cpu-smoke --out /tmp/node     # the same code paths on the CPU

On the GPU it
1. builds a synthetic dataset version there (``python -m ingest synthetic``, 256 px JPEGs);
2. measures JPEG decode into batches, DALI nvJPEG ("mixed") against DALI CPU decode, images/s;
3. runs the ``python -m mamo.train`` CLI itself at the base preset for ``--steps`` steps (200)
   in four settings: decode mixed / cpu  x  kernels+compile on / off ("on":
   ``model.attn_impl=auto loss.loss_impl=kernels train.compile=true train.compile_scope=step``,
   Triton only where it measured faster, the whole training step (``MAMO.step``) compiled as
   one graph; "off": SDPA, torch losses, eager), most important first;
4. reports, from each run's metrics.jsonl after its first steps: samples/s, MFU (the trainer's
   FlopCounterMode count over the device's dense bf16 peak), data-wait share, peak memory.

A setting that needs DALI when DALI is not installed is reported as not run (docs/kernels.md
says how to install it without a package index). No run starts when the budget left is less
than its estimate, and a run still going at the end of the budget is killed (its logged steps
are reported); everything done so far is in ``<out>.json``/``<out>.md`` after every run.
Without spaCy or the bundled text weights on the node, runs use token MLM targets and a
randomly initialised text encoder (the FLOPs and the step are the same). ``--vocab vocab.txt``
supplies the tokenizer's vocabulary where its package is missing (as benchmarks/gpu_check.py).

``--cpu-smoke`` rehearses every step at the tiny preset on the CPU, 3 steps, the first two
settings (mixed decode becomes CPU decode there, so the other two would repeat them; compile
stays off unless ``--smoke-compile``, which compiles the whole step: minutes on a CPU): figures
meaningless, code paths real.

Compile time is an estimate, not a GPU measurement: the whole step is a larger graph than one
block (on the CPU its first compile took 2-3x the blocks', docs/training.md); the second
compiled run builds the same graph and finds Inductor's kernels in the on-disk compile cache,
so it is estimated at ``compile_warm_s``.
"""
from __future__ import annotations

import argparse
import importlib.util
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a file: import from the repository root, not benchmarks/
    sys.path[0] = str(ROOT)

from benchmarks import harness, loader, train_throughput  # noqa: E402
from benchmarks.harness import Report  # noqa: E402

# (decode, kernels+compile): the first two are the goal run and its baseline
SETTINGS = (("mixed", True), ("cpu", False), ("mixed", False), ("cpu", True))
KERNELS_ON = ("model.attn_impl=auto", "loss.loss_impl=kernels", "train.compile=true", "train.compile_scope=step")
KERNELS_OFF = ("model.attn_impl=sdpa", "loss.loss_impl=torch", "train.compile=false")
# no spaCy / no bundled weights needed on the node (same FLOPs per step)
PORTABLE = ("data.vocab_id=none", "loss.text_target=mlm", "model.text_init=null")
# config, samples, JPEG side, batch, startup s, compile s (cold; warm: the graph's kernels in the
# compile cache), step s (estimates for --plan / the budget)
GPU = {"config": "base.yaml", "n": 2048, "image_size": 256, "batch": 64, "startup_s": 25.0, "compile_s": 90.0,
       "compile_warm_s": 30.0,
       "step_s": 0.22, "version_s": 30.0, "decode_s": 25.0}
SMOKE = {"config": "tiny.yaml", "n": 32, "image_size": 64, "batch": 4, "startup_s": 8.0, "compile_s": 240.0,
         "compile_warm_s": 60.0,
         "step_s": 0.5, "version_s": 10.0, "decode_s": 5.0}


def dali_available() -> bool:
    return importlib.util.find_spec("nvidia") is not None and importlib.util.find_spec("nvidia.dali") is not None


def setting_overrides(decode: str, kernels: bool, smoke: bool, smoke_compile: bool, dali: bool) -> list[str]:
    """The dotted overrides of one setting (what ``python -m mamo.train`` gets)."""
    if decode == "mixed" and not smoke:
        data = ["data.backend=dali", "data.decode=mixed"]
    elif dali:
        data = ["data.backend=dali", "data.decode=cpu"]
    else:
        data = ["data.backend=torch"]
    knobs = list(KERNELS_ON if kernels else KERNELS_OFF)
    if smoke and not smoke_compile:
        knobs = [k for k in knobs if not k.startswith("train.compile")] + ["train.compile=false"]
    return [*data, *knobs]


def estimate_s(p: dict[str, Any], steps: int, kernels: bool, compiled: bool, warm: bool = False) -> float:
    """Seconds of one run; ``warm``: a compiled run of the same graph came before it."""
    compile_s = (p["compile_warm_s"] if warm else p["compile_s"]) if kernels and compiled else 0.0
    return p["startup_s"] + compile_s + steps * p["step_s"]


def label(decode: str, kernels: bool) -> str:
    return f"decode={decode}, kernels+compile {'on' if kernels else 'off'}"


def plan(args: argparse.Namespace) -> list[str]:
    p = SMOKE if args.cpu_smoke else GPU
    compiled = not args.cpu_smoke or args.smoke_compile
    lines = [f"device {'cpu (rehearsal)' if args.cpu_smoke else 'cuda'}, budget {args.budget_s:.0f} s, "
             f"DALI {'installed' if dali_available() else 'NOT installed: mixed-decode settings are skipped'}",
             f"1. synthetic version: {p['n']} JPEGs at {p['image_size']} px (~{p['version_s']:.0f} s)",
             f"2. decode images/s: DALI mixed (nvJPEG) vs DALI cpu, batch {p['batch']} (~{p['decode_s']:.0f} s)"]
    total = p["version_s"] + p["decode_s"]
    warm = False
    for i, (decode, kernels) in enumerate(SETTINGS[:2] if args.cpu_smoke else SETTINGS, 3):
        est = estimate_s(p, args.steps, kernels, compiled, warm)
        warm = warm or (kernels and compiled)
        total += est
        over = " ".join(setting_overrides(decode, kernels, args.cpu_smoke, args.smoke_compile, dali_available()))
        lines.append(f"{i}. python -m mamo.train --config configs/{p['config']} train.steps={args.steps} "
                     f"data.batch_size={p['batch']} {over}  (~{est:.0f} s)")
    lines.append(f"total ~{total:.0f} s (runs that would end past the budget are skipped)")
    return lines


def summarise(rows: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    """Figures of one run from its metrics rows, leaving out the first steps (compile, tuning)."""
    skip = max(2, steps // 10) if len(rows) > 4 else 1
    late = rows[skip:] or rows
    mfu = [r["mfu"] for r in late if isinstance(r.get("mfu"), (int, float))]
    peak = [r["peak_mem_gib"] for r in rows if isinstance(r.get("peak_mem_gib"), (int, float))]
    return {
        "samples_per_s": round(statistics.median(r["samples_per_s"] for r in late), 2),
        "mfu": round(statistics.median(mfu), 4) if mfu else None,
        "data_wait_share": round(statistics.mean(r["data_wait_share"] for r in late), 4),
        "peak_mem_gib": round(max(peak), 2) if peak else None,
        "tflop_per_step": round(rows[-1]["flops"] / 1e12, 3) if "flops" in rows[-1] else None,
        "step_s": round(statistics.median(r["step_time_s"] for r in late), 4),
        "first_steps_s": round(sum(r["step_time_s"] for r in rows[:skip]), 2),
        "final_loss": rows[-1].get("loss"),
        "steps_measured": len(late),
    }


def decode_rates(rep: Report, vdir: Path, p: dict[str, Any], device: str, dali: bool) -> None:
    """Images/s of the training loader with nvJPEG decode and with CPU decode (DALI both)."""
    from mamo.data import DataConfig

    if not dali:
        rep.error("decode", "DALI not installed: nvJPEG vs CPU decode not measured (docs/kernels.md)")
        return
    rates = {}
    for decode in (("mixed", "cpu") if device == "cuda" else ("cpu",)):
        cfg = DataConfig(version_dir=vdir, vocab_id="none", image_size=p["image_size"], batch_size=p["batch"],
                         backend="dali", decode=decode, num_threads=8 if device == "cuda" else 1)
        rates[decode], _ = loader.measure(cfg, 1)
    case = f"{p['n']} JPEGs {p['image_size']} px, batch {p['batch']}"
    if "mixed" in rates:
        rep.row("decode", case, "DALI mixed (nvJPEG)", rates["mixed"], "DALI cpu", rates["cpu"], "images/s")
    else:  # the CPU rehearsal: nvJPEG needs a GPU
        rep.row("decode", case, "DALI cpu", rates["cpu"], unit="images/s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plan", action="store_true", help="print what would run and for how long; run nothing")
    ap.add_argument("--cpu-smoke", action="store_true", help="rehearse on the CPU at the tiny preset")
    ap.add_argument("--smoke-compile", action="store_true", help="with --cpu-smoke: compile the step too")
    ap.add_argument("--steps", type=int, default=None, help="steps per run (default 200; smoke 3)")
    ap.add_argument("--budget-s", type=float, default=470.0, help="stop starting runs after this")
    ap.add_argument("--vocab", help="the tokenizer's vocab.txt, where its package is missing")
    ap.add_argument("--root", help="keep data and runs here (default: a temp dir)")
    ap.add_argument("--out", help="write <out>.json and <out>.md")
    args = ap.parse_args(argv)
    args.steps = args.steps or (3 if args.cpu_smoke else 200)
    if args.plan:
        print("\n".join(plan(args)))
        return 0
    import torch

    device = "cpu" if args.cpu_smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here; use --cpu-smoke to rehearse on the CPU, --plan to see the plan",
              file=sys.stderr)
        return 2
    t_start = time.time()
    p = SMOKE if args.cpu_smoke else GPU
    dali = dali_available()
    root = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="mamo-gpu-node-"))
    env = harness.use_vocab(args.vocab, root)
    rep = Report("python -m mamo.train on a GPU node" + (" (CPU rehearsal)" if args.cpu_smoke else ""),
                 {"device": device, "steps": args.steps, "dali": dali, "budget_s": args.budget_s}, args.out)
    rep.section("plan", plan(args))
    vdir = harness.synthetic_version(root, p["n"], p["image_size"])
    try:
        decode_rates(rep, vdir, p, device, dali)
    except Exception as e:  # noqa: BLE001 - the training runs still go ahead
        rep.error("decode", e)
    rep.save()
    compiled = not args.cpu_smoke or args.smoke_compile
    runs: dict[str, dict[str, Any]] = {}
    warm = False  # a compiled run got past its compile: the next one finds its kernels cached
    # the rehearsal runs the two settings that differ on a CPU (mixed decode is CPU decode there)
    for decode, kernels in (SETTINGS[:2] if args.cpu_smoke else SETTINGS):
        name = label(decode, kernels)
        if decode == "mixed" and not dali and not args.cpu_smoke:
            rep.error(name, "not run: DALI is not installed (docs/kernels.md: installing DALI without an index)")
            continue
        left = args.budget_s - (time.time() - t_start)
        if estimate_s(p, args.steps, kernels, compiled, warm) > left:
            rep.error(name, f"skipped: {left:.0f} s of the budget left")
            continue
        run_dir = root / "runs" / name.replace(", ", "_").replace(" ", "-").replace("+", "")
        shutil.rmtree(run_dir, ignore_errors=True)
        knobs = setting_overrides(decode, kernels, args.cpu_smoke, args.smoke_compile, dali)
        overrides = [f"data.version_dir={vdir}", f"data.image_size={p['image_size']}", f"data.batch_size={p['batch']}",
                     f"train.steps={args.steps}", "train.ckpt_every=0", f"train.device={device}",
                     "optim.warmup_steps=10", *PORTABLE, *knobs]
        if args.cpu_smoke:
            overrides += ["train.num_threads=1", "data.num_threads=1"]
        # a run slower than its estimate is killed at the budget; the steps it logged still count
        rc, wall, rows, err = train_throughput.train(run_dir, p["config"], overrides, env,
                                                     timeout=max(10.0, args.budget_s - (time.time() - t_start)))
        warm = warm or (kernels and compiled and len(rows) >= 2)
        ok = rc == 0 and [r["step"] for r in rows] == list(range(1, args.steps + 1)) and "flops" in rows[-1]
        rep.check("mamo.train", name, ok, rc=rc, wall_s=round(wall, 1), stderr_tail=err[-600:] if not ok else "")
        if len(rows) >= 2:
            runs[name] = {**summarise(rows, args.steps), "wall_s": round(wall, 1), "overrides": knobs}
        rep.section("runs", runs)
        rep.save()
    base = runs.get(label("cpu", False))
    for name, r in runs.items():
        rep.row("mamo.train base steps" if not args.cpu_smoke else "mamo.train tiny steps (CPU rehearsal)",
                f"batch {p['batch']}", name, r["samples_per_s"], label("cpu", False),
                base["samples_per_s"] if base else None, "samples/s", mfu=r["mfu"],
                data_wait_share=r["data_wait_share"], peak_mem_gib=r["peak_mem_gib"])
    rep.section("elapsed_s", round(time.time() - t_start, 1))
    if not args.root:
        shutil.rmtree(root, ignore_errors=True)
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
