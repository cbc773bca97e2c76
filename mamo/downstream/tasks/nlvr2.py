"""NLVR2: a statement about two images, true or false.

Each image is fused with the statement separately; the two fused [CLS] vectors are
concatenated into a binary classifier (``NLVR2Head``). Metric: accuracy. Baselines: chance
(50%) and the majority training label.
"""
from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F

from mamo.downstream.heads import NLVR2Head
from mamo.downstream.metrics import accuracy
from mamo.downstream.readers import NLVR2Example, read_nlvr2
from mamo.downstream.tasks.common import Context, TaskState, TaskTraining

log = logging.getLogger(__name__)

# the upstream file names of the splits (train.json, dev.json, test1.json)
SPLIT_FILES = {"train": "train", "val": "dev", "dev": "dev", "test": "test1", "test1": "test1"}


def load_split(ctx: Context, split: str) -> list[NLVR2Example]:
    return read_nlvr2(ctx.path(ctx.cfg.data.files.nlvr2, SPLIT_FILES.get(split, split)),
                      image_files=ctx.images.names())


def logits_of(ctx: Context, model, head: NLVR2Head, exs: list[NLVR2Example]) -> torch.Tensor:
    ids, mask = ctx.text([e.sentence for e in exs])
    txt_emb, _ = model.encode_text(ids, mask)
    left, _ = model.encode_image(ctx.image_tensor([e.left_image for e in exs]))
    right, _ = model.encode_image(ctx.image_tensor([e.right_image for e in exs]))
    return head(model.fuse(left, txt_emb, mask).text_cls, model.fuse(right, txt_emb, mask).text_cls)


def training(ctx: Context, model) -> TaskTraining:
    """A fresh pair classifier and its cross-entropy step."""
    train = load_split(ctx, ctx.cfg.data.train_split)
    labels = torch.tensor([int(e.label) for e in train])
    head = NLVR2Head(model.model_cfg.text.width).to(ctx.device)
    log.info("nlvr2: %d training statements (%.0f%% true)", len(train), 100 * labels.float().mean().item())

    def step(idx: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
        logits = logits_of(ctx, model, head, [train[i] for i in idx.tolist()])
        y = labels[idx].to(ctx.device)
        return {"loss": F.cross_entropy(logits, y), "acc": (logits.argmax(-1) == y).float().mean()}

    majority = bool(labels.float().mean().item() >= 0.5)
    return TaskTraining(n_examples=len(train), step=step, head=head, meta={"majority_label": majority})


def build_head(model, meta: dict[str, Any]) -> NLVR2Head:
    return NLVR2Head(model.model_cfg.text.width)


@torch.no_grad()
def evaluate(ctx: Context, model, state: TaskState, batch_size: int = 64) -> dict[str, Any]:
    exs = load_split(ctx, ctx.cfg.data.eval_split)
    model.eval()
    state.head.eval()
    preds: list[bool] = []
    for s in range(0, len(exs), batch_size):
        preds += [bool(v) for v in logits_of(ctx, model, state.head, exs[s: s + batch_size]).argmax(-1).tolist()]
    gold = [e.label for e in exs]
    return {"task": "nlvr2", "split": ctx.cfg.data.eval_split, "n": len(exs),
            "accuracy": 100.0 * accuracy(preds, gold),
            "baseline_chance": 50.0,
            "baseline_majority": 100.0 * accuracy([state.meta["majority_label"]] * len(gold), gold),
            "examples": [{"sentence": e.sentence, "label": e.label, "prediction": p}
                         for e, p in list(zip(exs, preds))[:10]]}
