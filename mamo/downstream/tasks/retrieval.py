"""Image-text retrieval (Karpathy splits): fine-tune with ITC + ITM, rank by ITC similarity,
re-rank the top-k by the ITM score (ALBEF protocol). Metrics: R@1/5/10 both ways and their
mean, with ties counted pessimistically (``mamo.evaluation.retrieval``). Baseline: random
scores (the mean over a few seeded draws), i.e. chance.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from mamo.downstream.readers import KarpathyImage, read_karpathy
from mamo.downstream.tasks.common import Context, TaskState, TaskTraining
from mamo.evaluation.retrieval import retrieval_metrics

log = logging.getLogger(__name__)


def load_split(ctx: Context, split: str) -> list[KarpathyImage]:
    images = read_karpathy(ctx.path(ctx.cfg.data.files.karpathy), split)
    for im in images:
        if im.filename not in ctx.images:
            raise ValueError(f"Karpathy {split}: image {im.filename!r} (imgid {im.image_id}) is not among the images")
    return images


def contrastive_training(ctx: Context, model, pairs: list[tuple[str, str]]) -> TaskTraining:
    """ITC + ITM fine-tuning on (image file, text) pairs, with the model's own losses (and its
    momentum teacher and queue, updated after every step as in pre-training)."""

    def step(idx: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
        chosen = [pairs[i] for i in idx.tolist()]
        ids, mask = ctx.text([t for _, t in chosen])
        batch = {"image": ctx.image_tensor([f for f, _ in chosen]), "input_ids": ids,
                 "attention_mask": mask, "concept_labels": torch.full_like(ids, -100)}
        out = model(batch, seed)
        return {k: v for k, v in out.items() if k in ("loss", "itc", "itm", "itm_acc")}

    return TaskTraining(n_examples=len(pairs), step=step, momentum=True)


def training(ctx: Context, model) -> TaskTraining:
    train = load_split(ctx, ctx.cfg.data.train_split)
    pairs = [(im.filename, c) for im in train for c in im.captions]
    log.info("retrieval: %d training images, %d captions", len(train), len(pairs))
    return contrastive_training(ctx, model, pairs)


@torch.no_grad()
def evaluate(ctx: Context, model, state: TaskState | None = None, batch_size: int = 64) -> dict[str, Any]:
    """Zero-shot/fine-tuned retrieval on the eval split, scored as the pre-training
    evaluation scores it (``mamo.evaluation.scoring``)."""
    from mamo.evaluation.scoring import ModelScorer, score_retrieval
    from mamo.loader import TextTokenizer

    images = load_split(ctx, ctx.cfg.data.eval_split)
    k = ctx.cfg.options.retrieval_k
    scorer = ModelScorer(model, TextTokenizer(ctx.cfg.data.max_text_len), ctx.device, batch_size)
    batches = (ctx.image_tensor([im.filename for im in images[s: s + batch_size]])
               for s in range(0, len(images), batch_size))
    r = score_retrieval(scorer, batches, [im.captions for im in images], k)
    rng = np.random.default_rng(0)
    chance = [retrieval_metrics(rng.random(r.sim.shape), r.positives) for _ in range(5)]
    return {"task": "retrieval", "split": ctx.cfg.data.eval_split, "n_images": len(images),
            "n_texts": len(r.texts), "itc": r.itc, "itm_rerank": r.itm_rerank, "k": k,
            "r_mean": r.itm_rerank["r_mean"],
            "baseline_chance": {name: float(np.mean([c[name] for c in chance])) for name in chance[0]}}
