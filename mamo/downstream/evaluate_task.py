"""Evaluate a downstream task: ``evaluate_task(task, cfg, checkpoint) -> dict``.

``checkpoint`` is a fine-tuned dir written by ``python -m mamo.finetune`` (``model.safetensors``
+ ``head.safetensors`` + ``task.json``) or, for the zero-shot tasks (retrieval, grounding),
a pre-trained run dir / ``final/`` dir / ``model.safetensors``. VQA and NLVR2 need a
fine-tuned checkpoint (their heads are trained there).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mamo.downstream.config import FinetuneConfig


def _log(msg: str) -> None:
    print(f"[evaluate] {msg}", flush=True)


def load_task_checkpoint(task: str, cfg: FinetuneConfig, checkpoint: str | Path, ctx=None, log=_log):
    """``(model, TaskState)`` on the context's device."""
    from mamo.downstream.backbone import build_backbone, load_module, resolve_init
    from mamo.downstream.tasks import task_module
    from mamo.downstream.tasks.common import TaskState

    weights, _ = resolve_init(checkpoint)
    model, _ = build_backbone(cfg.model, cfg.loss, weights, log=log)
    task_json = weights.parent / "task.json"
    state = TaskState()
    if task_json.is_file():
        info = json.loads(task_json.read_text(encoding="utf-8"))
        if info["task"] != task:
            raise ValueError(f"{weights.parent} was fine-tuned for {info['task']!r}, not {task!r}")
        state.meta = info.get("meta", {})
        mod = task_module(task)
        if hasattr(mod, "build_head"):
            state.head = mod.build_head(model, state.meta)
            load_module(state.head, weights.parent / "head.safetensors")
    elif task in ("vqa", "nlvr2"):
        raise ValueError(f"{checkpoint}: task {task!r} needs a checkpoint fine-tuned by "
                         f"`python -m mamo.finetune --task {task}` (no task.json there)")
    device = ctx.device if ctx is not None else "cpu"
    model.to(device).eval()
    if state.head is not None:
        state.head.to(device).eval()
    return model, state


def evaluate_task(task: str, cfg: FinetuneConfig, checkpoint: str | Path,
                  out_dir: str | Path | None = None, log=_log) -> dict[str, Any]:
    """Evaluate ``task`` on ``cfg.data.eval_split`` with the weights of ``checkpoint``."""
    from mamo.downstream.tasks import task_module
    from mamo.downstream.tasks.common import Context

    ctx = Context(cfg)
    model, state = load_task_checkpoint(task, cfg, checkpoint, ctx, log)
    mod = task_module(task)
    if task == "grounding":
        return mod.evaluate(ctx, model, state, out_dir=Path(out_dir) / "heatmaps" if out_dir else None)
    return mod.evaluate(ctx, model, state)


def headline(results: dict[str, Any]) -> str:
    """One line with the main figure and its baseline."""
    t = results["task"]
    if t == "vqa":
        return (f"vqa {results['split']}: VQA score {results['vqa_score']:.1f} "
                f"(majority-answer baseline {results['baseline_majority']:.1f}, question-type prior "
                f"{results['baseline_question_type_prior']:.1f}), n={results['n']}")
    if t == "nlvr2":
        return (f"nlvr2 {results['split']}: accuracy {results['accuracy']:.1f} "
                f"(chance 50.0, majority {results['baseline_majority']:.1f}), n={results['n']}")
    if t == "grounding":
        return (f"grounding {results['split']}: accuracy@IoU0.5 {results['accuracy']:.1f} "
                f"(centre box {results['baseline_center_box']:.1f}, random proposal "
                f"{results['baseline_random_proposal']:.1f}), n={results['n']}")
    r, c = results["itm_rerank"], results["itc"]
    return (f"retrieval {results['split']}: ITM re-ranked TR@1 {r['tr@1']:.1f} IR@1 {r['ir@1']:.1f} "
            f"R_mean {r['r_mean']:.1f}; ITC only TR@1 {c['tr@1']:.1f} IR@1 {c['ir@1']:.1f} "
            f"R_mean {c['r_mean']:.1f} (chance R_mean {results['baseline_chance']['r_mean']:.1f}), "
            f"{results['n_images']} images / {results['n_texts']} texts")
