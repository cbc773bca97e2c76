"""``python -m mamo.finetune``: fine-tune a pre-trained MAMO on a downstream task, then evaluate.

    python -m mamo.finetune --task vqa --config configs/finetune/vqa.yaml \\
        --init runs/tiny data.version_dir=data/synthetic/v1 data.tasks_dir=data/tasks
    torchrun --nproc_per_node 8 -m mamo.finetune --task vqa ...   # DDP: each GPU a slice of the batch

Writes ``<out_dir>/<name>/``: ``model.safetensors`` (backbone), ``head.safetensors`` (VQA,
NLVR2), ``task.json``, ``config.yaml`` (resolved, with the backbone's real model section),
``metrics.jsonl`` (per step), ``results.json`` (evaluation on ``data.eval_split``; for
retrieval and grounding also the zero-shot figures before fine-tuning) and, for grounding,
``heatmaps/*.png``. Under torchrun, rank 0 writes, and ``rank_digests.json`` shows that every
rank ended with the same weights.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from mamo.downstream.config import TASKS


def finetune(cfg: Any, log=None) -> dict[str, Any]:
    """Fine-tune ``cfg.task`` from ``cfg.init``; returns the results dict (also written).
    Under torchrun: DDP over the processes, rank 0 writes (other ranks return their own
    evaluation)."""
    from mamo.trainer.distributed import cleanup, init_distributed

    info = init_distributed(cfg.device)  # a no-op without torchrun
    try:
        return _finetune(cfg, info, log)
    finally:
        cleanup(info)


def _finetune(cfg: Any, info, log) -> dict[str, Any]:
    import shutil
    import tempfile

    import torch
    import yaml

    from mamo.core.config import to_dict
    from mamo.downstream.backbone import build_backbone, save_module
    from mamo.evaluation.tasks import headline
    from mamo.downstream.tasks import task_module
    from mamo.downstream.tasks.common import Context, write_json
    from mamo.trainer.distributed import barrier, gather_digests

    main = info.is_main
    log = log or (lambda m: print(f"[finetune] {m}", flush=True))
    if not main:
        log = lambda m: None  # noqa: E731 - rank 0 speaks for all
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    if not main:
        barrier(info)  # rank 0 writes the synthetic task files first
    ctx = Context(cfg, log=log)
    if main:
        barrier(info)
    model, model_cfg = build_backbone(cfg.model, cfg.loss, cfg.init)
    model.to(ctx.device)
    out = Path(cfg.out_dir) / (cfg.name or cfg.task)
    if main:
        out.mkdir(parents=True, exist_ok=True)
    mod = task_module(cfg.task)
    # Every rank evaluates (identical work, no collective left unmatched); rank 0 keeps the files.
    scratch = None if main else Path(tempfile.mkdtemp(prefix="mamo-finetune-"))
    heat_dir = (scratch or out) / "heatmaps"

    def run_eval(state, heat_dir=heat_dir):
        if cfg.task == "grounding":
            return mod.evaluate(ctx, model, state, out_dir=heat_dir)
        return mod.evaluate(ctx, model, state)

    results: dict[str, Any] = {}
    if cfg.task in ("retrieval", "grounding"):
        # zero-shot figures of the pre-trained backbone, the reference for fine-tuning
        before = run_eval(None, (scratch or out) / "heatmaps_zero_shot")
        log("zero-shot: " + headline(before))
        results["zero_shot"] = before
    state = mod.finetune(ctx, model)
    digests = gather_digests(model, info)
    if len(set(digests)) != 1:  # every rank sees it: none is left waiting in a barrier
        raise RuntimeError(f"ranks diverged: state digests {digests}")
    if not main:
        after = run_eval(state)
        barrier(info)
        shutil.rmtree(scratch, ignore_errors=True)
        return after
    if info.distributed:
        write_json(out / "rank_digests.json", digests)
    save_module(model, out / "model.safetensors")
    if state.head is not None:
        save_module(state.head, out / "head.safetensors")
    write_json(out / "task.json", {"task": cfg.task, "meta": state.meta, "init": cfg.init})
    resolved = to_dict(cfg)
    resolved["model"] = to_dict(model_cfg)
    (out / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    with open(out / "metrics.jsonl", "w", encoding="utf-8") as f:
        for row in ctx.history:
            f.write(json.dumps(row) + "\n")
    after = run_eval(state)
    results.update(after)
    results["finetune_seconds"] = round(time.time() - t0, 1)
    results["steps"] = cfg.optim.steps
    results["init"] = cfg.init
    write_json(out / "results.json", results)
    log(headline(after))
    log(f"wrote {out}")
    barrier(info)
    return results


def main(argv: list[str] | None = None) -> int:
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
    args = ap.parse_args(argv)

    from mamo.core.config import ConfigError, load_config
    from mamo.downstream.config import FinetuneConfig

    overrides = [*args.overrides, f"task={args.task}"]
    if args.init is not None:
        overrides.append(f"init={args.init}")
    try:
        cfg = load_config(FinetuneConfig, args.config, overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        finetune(cfg)
    except (ValueError, FileNotFoundError, KeyError) as e:  # bad data files or --init: say which
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
