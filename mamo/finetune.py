"""``python -m mamo.finetune``: fine-tune a pre-trained MAMO on a downstream task, then evaluate.

    python -m mamo.finetune --task vqa --config configs/finetune/vqa.yaml \\
        --init runs/tiny data.version_dir=data/synthetic/v1 data.tasks_dir=data/tasks
    torchrun --nproc_per_node 8 -m mamo.finetune --task vqa ...   # DDP: each GPU a slice of the batch

Training runs on pre-training's loop (``mamo.trainer.trainer.Trainer``): the same AdamW groups
and warm-up + cosine schedule, the same metrics, checkpoints, resume and DDP; the task brings
its head, its step and its evaluation (``mamo.downstream.tasks``).

Writes ``<out_dir>/<name>/``: ``model.safetensors`` (backbone), ``head.safetensors`` (VQA,
NLVR2), ``task.json``, ``config.yaml`` (resolved, with the backbone's real model section),
``metrics.jsonl`` (per step), ``results.json`` (evaluation on ``data.eval_split``; for
retrieval and grounding also the zero-shot figures before fine-tuning) and, for grounding,
``heatmaps/*.png``. Under torchrun, rank 0 writes, and ``rank_digests.json`` shows that every
rank ended with the same weights. Stopped by SIGTERM/Ctrl-C, it checkpoints the step in
``checkpoints/`` and the same command continues from there (exit 143/130).
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mamo.core.cli import parse_args, run
from mamo.core.logs import process_rank
from mamo.downstream.config import TASKS, FinetuneConfig
from mamo.run_dir import RunDir

log = logging.getLogger(__name__)


def output_dir(cfg: FinetuneConfig) -> RunDir:
    return RunDir(Path(cfg.out_dir) / (cfg.name or cfg.task))


def loop_config(cfg: FinetuneConfig):
    """The fine-tuning settings as the shared trainer's sections (``TrainConfig``,
    ``OptimConfig``): one learning-rate rule for pre-training and fine-tuning."""
    from mamo.trainer.config import OptimConfig, TrainConfig

    o = cfg.optim
    train = TrainConfig(steps=o.steps, grad_accum=1, log_every=cfg.log_every, ckpt_every=0, keep_last=1,
                        seed=cfg.seed, precision="fp32", device=cfg.device, num_threads=cfg.threads,
                        ddp_find_unused=True)  # a task leaves some backbone heads unused
    # Cosine down to 0 at the last step (ALBEF's fine-tuning schedule); the head's lr in its group.
    optim = OptimConfig(lr=o.lr, weight_decay=o.weight_decay, warmup_steps=o.warmup_steps, min_lr_ratio=0.0,
                        clip_grad_norm=o.clip_grad_norm)
    return train, optim


def finetune(cfg: FinetuneConfig) -> dict[str, Any]:
    """Fine-tune ``cfg.task`` from ``cfg.init``; returns the results dict (also written).
    Under torchrun: DDP over the processes, rank 0 writes (other ranks return their own
    evaluation). Raises ``TrainingStopped`` (a signal; checkpoint written, call again to
    continue) or ``TrainingAborted`` (too many non-finite steps)."""
    from mamo.trainer.distributed import cleanup, init_distributed

    from mamo.core.files import disk_errors
    from mamo.core.lock import exclusive
    from mamo.data.index import require_intact

    if cfg.data.version_dir is not None:  # its images: every shard as the manifest says
        require_intact(cfg.data.version_dir)
    info = init_distributed(cfg.device)  # a no-op without torchrun
    out = output_dir(cfg).path
    # One writer per output dir (rank 0 holds it for all); a full or read-only disk is one line.
    lock = exclusive(out, "fine-tuning") if info.is_main else contextlib.nullcontext()
    try:
        with disk_errors("fine-tuning", out), lock:
            return _finetune(cfg, info)
    finally:
        cleanup(info)


def _finetune(cfg: FinetuneConfig, info) -> dict[str, Any]:
    import torch

    from mamo.downstream.backbone import build_backbone
    from mamo.evaluation.tasks import headline
    from mamo.downstream.tasks import task_module
    from mamo.downstream.tasks.common import Context, TaskState, write_json
    from mamo.trainer.distributed import barrier

    main = info.is_main
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    if not main:
        barrier(info)  # rank 0 writes the synthetic task files first
    ctx = Context(cfg)
    if main:
        barrier(info)
    model, model_cfg = build_backbone(cfg.model, cfg.loss, cfg.init)
    model.to(ctx.device)
    out = output_dir(cfg)
    mod = task_module(cfg.task)
    # Every rank evaluates (identical work, no collective left unmatched); rank 0 keeps the files.
    scratch = None if main else Path(tempfile.mkdtemp(prefix="mamo-finetune-"))
    files_dir = RunDir(scratch) if scratch else out
    heat_dir = files_dir.heatmaps()

    def run_eval(state, heat_dir=heat_dir):
        if cfg.task == "grounding":
            return mod.evaluate(ctx, model, state, out_dir=heat_dir)
        return mod.evaluate(ctx, model, state)

    results: dict[str, Any] = {}
    if cfg.task in ("retrieval", "grounding"):
        # zero-shot figures of the pre-trained backbone, the reference for fine-tuning
        before = run_eval(None, files_dir.heatmaps(zero_shot=True))
        if main:
            log.info("zero-shot: %s", headline(before))
        results["zero_shot"] = before
    task = mod.training(ctx, model)
    final_loss = train_task(ctx, model, model_cfg, task, out, info)
    model.eval()
    state = TaskState(head=task.head, meta={**task.meta, "final_loss": final_loss})
    if state.head is not None:
        state.head.eval()
    if not main:
        after = run_eval(state)
        barrier(info)
        shutil.rmtree(scratch, ignore_errors=True)
        return after
    write_outputs(cfg, out, model, model_cfg, state)
    shutil.rmtree(out.checkpoints, ignore_errors=True)  # the outputs replace a stopped run's state
    after = run_eval(state)
    results.update(after)
    results["finetune_seconds"] = round(time.time() - t0, 1)
    results["steps"] = cfg.optim.steps
    results["init"] = cfg.init
    write_json(out.results, results)
    barrier(info)
    return results


def train_task(ctx, model, model_cfg, task, out: RunDir, info) -> float | None:
    """Train ``task`` on the shared trainer (continuing from ``out``'s checkpoint when a stopped
    run left one); returns the last logged loss. Every rank ends with the same weights."""
    from mamo.core.config import to_dict
    from mamo.downstream.tasks.common import TaskModel, write_json
    from mamo.trainer import checkpoint as ckpt
    from mamo.trainer.batching import IndexBatches
    from mamo.trainer.distributed import gather_digests
    from mamo.trainer.metrics import read_metrics
    from mamo.trainer.trainer import Trainer, TrainingJob

    cfg = ctx.cfg
    o = cfg.optim
    if ctx.world_size > 1 and o.batch_size < ctx.world_size:
        raise ValueError(f"config key 'optim.batch_size': {o.batch_size} is less than the "
                         f"{ctx.world_size} processes; each needs at least one example per step")
    meta = {"task": cfg.task, "model": to_dict(model_cfg), "world_size": ctx.world_size}
    stream = IndexBatches(task.n_examples, o.batch_size, cfg.seed, ctx.rank, ctx.world_size)
    resume_from, rejected = ckpt.resumable_checkpoint(out.path)  # the newest that validates (warns on others)
    if resume_from is None and rejected:
        raise ValueError(f"no loadable checkpoint in {out.path}: "
                         + "; ".join(f"{p.name}: {why}" for p, why in rejected))
    if resume_from is not None:
        saved_task = ckpt.read_meta(resume_from).get("task")
        if saved_task != cfg.task:
            raise ValueError(f"{resume_from} is not a checkpoint of a {cfg.task} fine-tuning (task "
                             f"{saved_task!r}); choose another out_dir or name")
        # The position is a count of global batches: it holds for any number of processes.
        stream.load_state_dict(ckpt.read_state(resume_from)["data_by_rank"][0])
        if info.is_main:
            log.info("resuming from %s", resume_from)
    job = TrainingJob(model=TaskModel(model, task), stream=stream, run_dir=out, total_steps=o.steps, meta=meta,
                      samples_per_step=min(o.batch_size, task.n_examples), resume_from=resume_from,
                      lr_by_prefix={"head.": o.head_lr}, checkpoint_at_end=False)
    train_cfg, optim_cfg = loop_config(cfg)
    Trainer(job, train_cfg, optim_cfg, info).train()
    digests = gather_digests(model, info)
    if len(set(digests)) != 1:  # every rank sees it: none is left waiting in a barrier
        raise RuntimeError(f"ranks diverged: state digests {digests}")
    if not info.is_main:
        return None
    if info.distributed:
        write_json(out.finetuned.rank_digests, digests)
    rows = read_metrics(out.metrics)
    return rows[-1]["loss"] if rows else None


def write_outputs(cfg: FinetuneConfig, out: RunDir, model, model_cfg, state) -> None:
    """Backbone and head weights, ``task.json`` and the resolved ``config.yaml``."""
    import yaml

    from mamo.core.config import to_dict
    from mamo.core.files import write_text
    from mamo.downstream.backbone import save_module
    from mamo.downstream.tasks.common import write_json

    save_module(model, out.finetuned.weights)
    if state.head is not None:
        save_module(state.head, out.head)
    write_json(out.task, {"task": cfg.task, "meta": state.meta, "init": cfg.init})
    resolved = to_dict(cfg)
    resolved["model"] = to_dict(model_cfg)
    write_text(out.config, yaml.safe_dump(resolved, sort_keys=False))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m mamo.finetune",
        description="Fine-tune a pre-trained MAMO checkpoint on retrieval, VQA, NLVR2 or weakly "
                    "supervised grounding, then evaluate on the eval split.")
    ap.add_argument("--task", required=True, choices=TASKS)
    ap.add_argument("--config", default=None, help="YAML config (e.g. configs/finetune/vqa.yaml)")
    ap.add_argument("--init", default=None,
                    help="pre-trained run dir (runs/<name>), its final/ dir, or a model.safetensors; "
                         "omit for a randomly initialised backbone (the no-pre-training baseline)")
    ap.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.steps=100 data.tasks_dir=...")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    # bad data files or --init raise ValueError/KeyError naming them: one line, exit 2
    return run(lambda: _main(args), user_errors=(ValueError, KeyError))


def _main(args: argparse.Namespace) -> int:
    from mamo.core.config import load_config
    from mamo.evaluation.tasks import headline

    overrides = [*args.overrides, f"task={args.task}"]
    if args.init is not None:
        overrides.append(f"init={args.init}")
    cfg = load_config(FinetuneConfig, args.config, overrides)
    results = finetune(cfg)  # a signal or an abort ends with its own exit status (core.cli.run)
    if process_rank() == 0:  # the run's result on stdout, once (rank 0 speaks for all)
        print(f"[finetune] {headline(results)}", flush=True)
        print(f"[finetune] wrote {output_dir(cfg).path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
