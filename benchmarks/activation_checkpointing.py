"""Activation checkpointing (``train.activation_checkpointing``) against none, side by side.

    python -m benchmarks.activation_checkpointing                         # small, batch 8, CPU
    python -m benchmarks.activation_checkpointing --preset base --batch 64 --device cuda
    python -m benchmarks.activation_checkpointing --smoke

One process, the same weights and batch for both runs (benchmarks.model_step.measure). Per
configuration: the memory autograd keeps for the backward during the forward (exact accounting
of saved storages, parameters excluded, checkpointed blocks' kept inputs included:
``mamo.trainer.activation_checkpointing.saved_activation_bytes``), samples/s of a full step
(forward, backward, AdamW, EMA) and the peak memory (CUDA: allocated; CPU: process RSS).
"""
from __future__ import annotations

import sys

from benchmarks import harness
from benchmarks.harness import Report
from benchmarks.model_step import Config, compare


def main(argv: list[str] | None = None) -> int:
    ap = harness.parser(__doc__)
    ap.add_argument("--preset", default="small", choices=["tiny", "small", "base"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per configuration (after one warm-up)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    args = harness.parse(ap, argv)
    if args.smoke:
        args.preset, args.batch, args.steps = "micro", 2, 1
    rep = Report("activation checkpointing vs none", {"device": args.device}, args.out)
    plain, ac = Config(args.preset), Config(args.preset, checkpointing=True)
    rows = compare(rep, "activation checkpointing: step", [ac], plain, batch=args.batch, steps=args.steps,
                   warmup=1, device=args.device, threads=args.threads, count_saved=True)
    if len(rows) == 2:
        base, mine = rows
        rep.row("activation checkpointing: kept for backward", f"{args.preset} batch {args.batch}", ac.label,
                mine["saved_for_backward_MiB"], plain.label, base["saved_for_backward_MiB"], "MiB")
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
