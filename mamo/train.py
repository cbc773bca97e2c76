"""Pre-train MAMO.

    python -m mamo.train --config configs/tiny.yaml [dotted.key=value ...] [--resume] [--run-dir DIR]
    torchrun --nproc_per_node 2 -m mamo.train --config configs/tiny.yaml ...
    python -m mamo.train --config configs/base.yaml ... --check   # every start check, then the plan

A run directory that already holds a checkpoint is resumed automatically. Exit codes: 0 done,
2 the run could not start (one line on stderr names the key or file; nothing was written), another
process is training in the same run dir, or an output could not be written (disk full, read-only),
3 stopped after too many non-finite steps (the last good checkpoint is kept), 143/130 stopped by
SIGTERM/Ctrl-C after checkpointing the current step (run again to continue).
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path

from mamo.core.cli import parse_args, run
from mamo.core.lock import check_free, exclusive
from mamo.core.logs import process_rank

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m mamo.train",
        description="Pre-train MAMO (ITC + ITM + masked multimodal modeling) on a dataset version "
        "with its concept annotations. Settings: mamo/trainer/config.py (defaults) <- --config YAML "
        "<- dotted overrides such as optim.lr=3.0e-4 train.steps=100 (anywhere among the options).",
    )
    ap.add_argument("--config", help="YAML file (e.g. configs/tiny.yaml); defaults apply without one")
    ap.add_argument("overrides", nargs="*", metavar="dotted.key=value", help="config overrides, applied last")
    ap.add_argument("--resume", action="store_true",
                    help="require a checkpoint in the run dir and continue from it "
                    "(a run dir with a checkpoint is resumed even without this flag)")
    ap.add_argument("--run-dir", help="run directory (default: <run.dir>/<run.name>)")
    ap.add_argument("--no-progress", action="store_true", help="plain log lines instead of a progress bar")
    ap.add_argument("--check", action="store_true",
                    help="run every start check (config, data, annotations, vocabulary, loader, resume "
                    "point), print what the run would do and exit; writes nothing, trains nothing")
    return ap


def describe(p) -> str:
    """What a prepared run would do, for --check (``p``: mamo.trainer.preflight.Prepared)."""
    cfg, dv, tc = p.cfg, p.data_versions, p.cfg.train
    per_step = cfg.data.batch_size * tc.grad_accum * p.world_size
    lines = [
        f"run dir      {p.run_dir} ({'resume from ' + str(p.resume_from) if p.resume_from else 'fresh start'})",
        f"data         {dv['dataset']}/{dv['version']}: {dv['samples']} samples in {dv['shards']} shards "
        f"({dv['version_dir']}); concepts {dv['vocab_id'] or 'none'} ({dv['num_concepts']})",
        f"model        preset {cfg.model.preset}, attention {cfg.model.attn_impl}, losses {cfg.loss.loss_impl}",
        f"batch        {cfg.data.batch_size} per rank x {tc.grad_accum} micro-batches x {p.world_size} "
        f"process(es) = {per_step} samples per step",
        f"steps        {p.total_steps} ({dv['steps_per_epoch']} per epoch), checkpoint every "
        f"{tc.ckpt_every or 'end only'}, keep {tc.keep_last}",
        f"parallel     {tc.parallel if p.world_size > 1 else 'single process'}; precision {tc.precision}; "
        f"compile {tc.compile_scope + ', ' + tc.compile_mode if tc.compile else 'off'}; activation checkpointing "
        f"{'on' if tc.activation_checkpointing else 'off'}",
    ]
    lines.append(f"memory       {_state_line(p)}")
    lines += [f"note         {n}" for n in p.notes]
    return "\n".join(lines)


def _state_line(p) -> str:
    """Parameter counts and training state per rank, from the model built on the meta device."""
    import torch

    from mamo.model import MAMO
    from mamo.trainer.fsdp import training_state_bytes

    with torch.device("meta"):
        model = MAMO(p.cfg.model, p.cfg.loss, p.expected_meta["num_concepts"], load_pretrained=False)
    trainable = sum(q.numel() for q in model.parameters() if q.requires_grad)
    sharded = p.cfg.train.parallel == "fsdp" and p.world_size > 1
    state = training_state_bytes(model, p.world_size, sharded)
    return (f"{trainable / 1e6:.1f} M trainable parameters; training state per rank {sum(state.values()) / 2**30:.2f} GiB "
            f"(weights, grads, AdamW, teacher, queue; {'sharded ' + str(p.world_size) + ' ways' if sharded else 'replicated'}; "
            "activations come on top)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    return run(lambda: _main(args))


def _main(args: argparse.Namespace) -> int:
    # Heavy imports only after --help has had its chance.
    from mamo.trainer.config import load_run_config
    from mamo.trainer.preflight import StartError, prepare, resolve_run_dir

    cfg = load_run_config(args.config, args.overrides)
    run_dir = resolve_run_dir(cfg, args.run_dir)
    # One writer per run dir: a double-submitted job exits 2 naming the holder (rank 0 asks:
    # under torchrun it is rank 0 that takes the lock, perhaps before another rank gets here).
    if process_rank() == 0:
        check_free(run_dir)
    seen = _run_dir_state(run_dir)
    prepared = prepare(cfg, run_dir, resume=args.resume)
    if args.check:
        if process_rank() == 0:
            print(describe(prepared), flush=True)
            print("check: every start check passed; nothing written", flush=True)
        return 0
    from mamo.core.files import disk_errors
    from mamo.trainer.pretrain import pretrain

    # The lock is taken once every check has passed (a refused start leaves no trace); rank 0
    # holds it for all ranks of a torchrun job. The run dir is looked at again under the lock,
    # in case another writer moved it on between the checks and the lock.
    lock = exclusive(run_dir, "training") if process_rank() == 0 else contextlib.nullcontext()
    with disk_errors("training", run_dir), lock:  # a read-only run dir fails here, in one line
        if process_rank() == 0 and _run_dir_state(run_dir) != seen:
            raise StartError(f"run dir {run_dir} changed while this run was starting (another writer "
                             "finished meanwhile?); run again")
        # a signal or too many non-finite steps end the run with their own exit status (core.cli.run)
        pretrain(prepared, progress=not args.no_progress)
    return 0


def _run_dir_state(run_dir: Path) -> tuple:
    """What the start checks decided on (entries, checkpoints), cheap to compare again."""
    from mamo.core.lock import LOCK_NAME
    from mamo.trainer.checkpoint import list_checkpoints

    entries = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK_NAME) if run_dir.is_dir() else []
    return entries, list_checkpoints(run_dir)


if __name__ == "__main__":
    sys.exit(main())
