"""One-shot GPU check: the kernels' CUDA tests, then the benchmarks, within a time budget, into
one report.

    python benchmarks/gpu_check.py --out benchmarks/out/gpu_check          # full, < 8 min on an H200
    python benchmarks/gpu_check.py --quick --out benchmarks/out/gpu_quick  # smaller shapes, ~2 min
    python benchmarks/gpu_check.py --plan                                  # print the plan only
    python benchmarks/gpu_check.py --cpu-smoke --sections itc,fsdp         # this script's code paths on the CPU

Sections (default order: what a short lease must not lose first); each is guarded, so one
failure does not lose the others' figures, and none starts after the budget is spent:
  tests               TRITON_INTERPRET=0 pytest tests/kernels -k test_cuda_: every Triton kernel against its
                      reference on CUDA at the model's shapes (outputs and gradients, bf16/fp16/fp32);
  attention, profile, attention_compiled
                      benchmarks/kernels/attention.py: Triton vs SDPA and eager; host time per call;
                      under torch.compile (CUDA graphs);
  cross_entropy, regression (and ce_sweep, not by default)
                      benchmarks/kernels/{cross_entropy,regression}.py: fused vs eager, time and memory;
  itc                 benchmarks/itc.py: the contrastive loss (what a fused InfoNCE could save);
  train, train_compiled
                      benchmarks/model_step.py: `base` steps with SDPA + torch losses, Triton + fused
                      losses, activation checkpointing; compiled blocks: samples/s, MFU, peak memory;
  train_cli           benchmarks/train_throughput.py: `python -m mamo.train` on the device, a run with a
                      checkpoint, then --resume;
  fsdp                benchmarks/fsdp_memory.py: the trainer's FSDP path on one rank (nccl) against the
                      model unsharded: same losses and weights, optimizer state by name;
  data                benchmarks/loader.py: the loader (DALI nvJPEG "mixed" decode when installed).

Writes <out>.json and <out>.md after every section (a timeout keeps what was done).

On a machine without this repo's environment (e.g. a lent GPU with its own torch/Triton), the
tokenizer's vocab.txt may be missing: copy it into the checkout first and pass it, e.g.
    cp "$(python -c 'from concepts.tokenizer import default_vocab_path as p; print(p())')" vocab.txt
    python benchmarks/gpu_check.py --out $OUT/gpu_check --budget-s 300 --vocab vocab.txt
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a file: import from the repository root, not benchmarks/
    sys.path[0] = str(ROOT)

from benchmarks import fsdp_memory, harness, itc, loader, model_step, train_throughput  # noqa: E402
from benchmarks.harness import Report  # noqa: E402
from benchmarks.kernels import attention, cross_entropy, regression  # noqa: E402
from benchmarks.model_step import Config  # noqa: E402

SECTIONS = ("tests", "attention", "profile", "attention_compiled", "cross_entropy", "regression", "itc",
            "train", "train_cli", "fsdp", "train_compiled", "data")
EXTRA_SECTIONS = ("ce_sweep",)
# training steps: preset, batch, timed steps, warm-up steps, text length; fsdp: preset, batch
TRAIN = {"full": ("base", 64, 6, 2, 40), "quick": ("base", 16, 3, 2, 40), "smoke": ("micro", 4, 1, 1, 16)}
FSDP = {"full": ("base", 8), "quick": ("base", 8), "smoke": ("micro", 2)}


def plan_lines(size: str) -> dict[str, str]:
    """What each section measures at ``size``, one line each."""
    iters, warmup = harness.REPEATS[size]
    preset, batch, steps, _, _ = TRAIN[size]
    cfg, n, px, b, st, more = train_throughput.RESUME[size]
    return {
        "tests": "TRITON_INTERPRET=0 pytest tests/kernels -k test_cuda_ (kernels vs references on CUDA)",
        "attention": "triton vs sdpa / eager, fwd and fwd+bwd: " + _cases(attention.CASES[size]),
        "profile": f"host issue time per attention fwd+bwd, triton vs sdpa: {attention.PROFILE[size][0]}",
        "attention_compiled": f"attention fwd+bwd under torch.compile({attention.COMPILE[size]}), triton vs sdpa",
        "cross_entropy": "fused linear CE vs eager, time + peak memory: " + _cases(cross_entropy.CASES[size]),
        "ce_sweep": f"fused linear CE against chunk size {cross_entropy.SWEEP_CHUNKS}",
        "regression": "fused masked regression vs eager: " + _cases(regression.CASES[size]),
        "itc": f"torch contrastive loss fwd+bwd, B/E/queue {itc.SHAPES[size]} (bounds a fused InfoNCE)",
        "train": f"preset {preset}, batch {batch}, {steps} timed steps: sdpa+torch losses, triton+fused, "
                 "+activation checkpointing",
        "train_compiled": f"preset {preset}, batch {batch}: steps with compiled blocks, sdpa and triton",
        "train_cli": f"python -m mamo.train --config configs/{cfg}: {st} steps at {px} px batch {b} on {n} "
                     f"samples, then --resume to {st + more}",
        "fsdp": "preset {}, batch {}: 2 steps FSDP (1 rank) vs unsharded, same losses/weights; optimizer "
                "state by name".format(*FSDP[size]),
        "data": "loader samples/s, {} samples {} px batch {}, {} batches".format(*loader.DEVICE_RUN[size]),
    } | {"timing": f"median of {iters} timed runs after {warmup} warm-ups"}


def _cases(cases: list[tuple]) -> str:
    return "; ".join(" ".join(map(str, c)) for c in cases)


def run_tests(rep: Report, out: Path, deadline: float) -> None:
    """The kernels' CUDA tests in a fresh process (compiled kernels: no interpreter)."""
    junit = Path(f"{out}.junit.xml").resolve()
    junit.parent.mkdir(parents=True, exist_ok=True)
    # -o addopts: the project's options name plugins (pytest-timeout) a lent machine may lack
    cmd = [sys.executable, "-m", "pytest", "tests/kernels", "-k", "test_cuda_", "-q", "-p", "no:cacheprovider",
           "-o", "addopts=-ra", f"--junitxml={junit}"]
    env = harness.subprocess_env(TRITON_INTERPRET="0")
    t0 = time.time()
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=max(60.0, deadline - time.time()))
    print(r.stdout[-3000:], r.stderr[-2000:])
    if not junit.is_file():
        raise RuntimeError(f"pytest wrote no results (exit {r.returncode}): {r.stderr.strip()[-500:]}")
    ran = 0
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
        if outcome == ["skipped"]:
            continue
        ran += 1
        rep.check("pytest tests/kernels", case.get("name"), not outcome, seconds=float(case.get("time", 0)))
    rep.section("tests", {"command": "TRITON_INTERPRET=0 " + " ".join(cmd[1:]), "rc": r.returncode, "ran": ran,
                          "seconds": round(time.time() - t0, 1), "summary": r.stdout.strip().splitlines()[-1:]})
    if r.returncode not in (0, 5) or (ran == 0 and rep.data["meta"].get("gpu")):
        rep.check("pytest tests/kernels", "exit status", False, rc=r.returncode, ran=ran)


def train_sections(rep: Report, size: str, device: str, compiled: bool) -> None:
    """`base` steps on the device: eager (with FLOPs for MFU) or with compiled blocks."""
    preset, batch, steps, warmup, text_len = TRAIN[size]
    base = Config(preset)
    if compiled:
        configs = [Config(preset, compiled=True), Config(preset, "triton", "kernels", compiled=True)]
    else:
        configs = [Config(preset, "triton", "kernels"), Config(preset, checkpointing=True)]
    model_step.compare(rep, "train compiled" if compiled else "train", configs, base, count_flops=not compiled,
                       batch=batch, steps=steps, warmup=warmup, device=device, text_len=text_len)


def sections(rep: Report, args: argparse.Namespace, device: str, deadline: float,
             env: dict[str, str]) -> dict[str, Callable[[], Any]]:
    size = args.size
    return {
        "tests": lambda: run_tests(rep, Path(args.out), deadline),
        "attention": lambda: attention.run(rep, size, device, deadline),
        "profile": lambda: attention.run_profile(rep, size, device),
        "attention_compiled": lambda: attention.run_compiled(rep, size, device, deadline),
        "cross_entropy": lambda: cross_entropy.run(rep, size, device, deadline),
        "ce_sweep": lambda: cross_entropy.run_sweep(rep, size, device),
        "regression": lambda: regression.run(rep, size, device, deadline),
        "itc": lambda: itc.run(rep, size, device),
        "train": lambda: train_sections(rep, size, device, compiled=False),
        "train_compiled": lambda: train_sections(rep, size, device, compiled=True),
        "train_cli": lambda: train_throughput.check_resume(rep, size, device, env),
        "fsdp": lambda: fsdp_memory.check_one_rank(rep, *FSDP[size], device),
        "data": lambda: loader.run_device(rep, size, device),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "gpu_check"),
                    help="output path stem: writes <out>.json and <out>.md")
    ap.add_argument("--quick", action="store_true", help="smaller shapes and fewer repetitions")
    ap.add_argument("--plan", action="store_true", help="print the plan and exit (no GPU needed)")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help="comma-separated subset of " + ",".join(SECTIONS + EXTRA_SECTIONS))
    ap.add_argument("--budget-s", type=float, default=420.0, help="start no section after this many seconds")
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="run every code path on the CPU at toy sizes (Triton interpreter); "
                         "for checking this script without a GPU, figures meaningless")
    ap.add_argument("--vocab", default=None,
                    help="WordPiece vocab.txt for the data and train_cli sections (default: the installed package's)")
    args = ap.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    args.size = "smoke" if args.cpu_smoke else "quick" if args.quick else "full"
    lines = plan_lines(args.size)
    print(f"gpu_check plan ({args.size}); timing: {lines.pop('timing')}")
    for name, line in lines.items():
        print(f"  {name:18s} {line}{'' if name in args.sections else '  (not selected)'}")
    print(f"  time budget {args.budget_s:.0f} s; output {args.out}.json / .md")
    if args.plan:
        return 0
    unknown = [s for s in args.sections if s not in lines]
    if unknown:
        print(f"gpu_check: unknown section(s) {unknown}; known: {sorted(lines)}")
        return 2
    device = "cpu" if args.cpu_smoke else "cuda"
    if args.cpu_smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported
    try:
        import torch
        import triton  # noqa: F401  (its version goes into the report)
    except ImportError as e:
        print(f"gpu_check: {e.name} is not installed; nothing measured.")
        return 2
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available on this machine (no GPU or no CUDA build of torch); "
              "nothing measured. Run it on a GPU node; on the CPU the kernels are covered by "
              "`pytest tests/kernels` with TRITON_INTERPRET=1.")
        return 2
    if device == "cuda" and os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("gpu_check: TRITON_INTERPRET is set; unset it to run the compiled kernels.")
        return 2

    start = time.time()
    deadline = start + args.budget_s
    command = "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))
    rep = Report(f"gpu_check: {torch.cuda.get_device_name(0) if device == 'cuda' else 'cpu smoke'}",
                 {"command": command, "size": args.size}, args.out)
    env = harness.use_vocab(args.vocab, Path(tempfile.mkdtemp(prefix="gpu_check_")))
    # TF32 stays off: the fp32 references must be true fp32.
    run = sections(rep, args, device, deadline, env)
    for name in args.sections:
        t0 = time.time()
        print(f"== {name} (t={t0 - start:.0f} s)", flush=True)
        if t0 > deadline:
            rep.error(name, "skipped: time budget")
            continue
        try:
            run[name]()
        except Exception as e:  # noqa: BLE001 - one section's failure must not lose the others
            rep.error(name, e)
        if device == "cuda":
            torch.cuda.empty_cache()
        rep.data["meta"][f"{name}_s"] = round(time.time() - t0, 1)
        rep.save()
    rep.data["meta"]["total_s"] = round(time.time() - start, 1)
    rep.save()
    bad = [c for c in rep.data["checks"] if not c["ok"]]
    print(f"gpu_check: {len(rep.data['checks'])} checks, {len(bad)} failed, {len(rep.data['errors'])} errors; "
          f"wrote {args.out}.json and {args.out}.md in {time.time() - start:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
