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
from mamo.evaluation.retrieval import rerank_with_itm, reranked_metrics, retrieval_metrics

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
    images = load_split(ctx, ctx.cfg.data.eval_split)
    model.eval()
    # captions can repeat (synthetic data): retrieve among distinct texts
    texts = list(dict.fromkeys(c for im in images for c in im.captions))
    t_index = {t: j for j, t in enumerate(texts)}
    positives = np.zeros((len(images), len(texts)), dtype=bool)
    for i, im in enumerate(images):
        for c in im.captions:
            positives[i, t_index[c]] = True
    img_emb, img_feat, txt_emb, txt_mask, txt_feat = [], [], [], [], []
    for s in range(0, len(images), batch_size):
        e, f = model.encode_image(ctx.image_tensor([im.filename for im in images[s: s + batch_size]]))
        img_emb.append(e)
        img_feat.append(f)
    L = ctx.cfg.data.max_text_len
    for s in range(0, len(texts), batch_size):
        ids, mask = ctx.text(texts[s: s + batch_size])
        e, f = model.encode_text(ids, mask)
        pad = L - ids.shape[1]  # pad to one length so that batches concatenate
        txt_emb.append(torch.nn.functional.pad(e, (0, 0, 0, pad)))
        txt_mask.append(torch.nn.functional.pad(mask, (0, pad)))
        txt_feat.append(f)
    img_emb, img_feat = torch.cat(img_emb), torch.cat(img_feat)
    txt_emb, txt_mask, txt_feat = torch.cat(txt_emb), torch.cat(txt_mask), torch.cat(txt_feat)
    sim = (img_feat @ txt_feat.T).float().cpu().numpy()
    itc = retrieval_metrics(sim, positives)

    def score_pairs(ii: np.ndarray, jj: np.ndarray) -> np.ndarray:
        out = []
        for s in range(0, len(ii), batch_size):
            i = torch.as_tensor(ii[s: s + batch_size], device=img_emb.device)
            j = torch.as_tensor(jj[s: s + batch_size], device=img_emb.device)
            out.append(model.itm_score(img_emb[i], txt_emb[j], txt_mask[j]).float().cpu())
        return torch.cat(out).numpy()

    s_i2t, s_t2i = rerank_with_itm(sim, score_pairs, k=ctx.cfg.options.retrieval_k)
    itm = reranked_metrics(s_i2t, s_t2i, positives)
    rng = np.random.default_rng(0)
    chance = [retrieval_metrics(rng.random(sim.shape), positives) for _ in range(5)]
    return {"task": "retrieval", "split": ctx.cfg.data.eval_split, "n_images": len(images),
            "n_texts": len(texts), "itc": itc, "itm_rerank": itm, "k": ctx.cfg.options.retrieval_k,
            "r_mean": itm["r_mean"],
            "baseline_chance": {k: float(np.mean([c[k] for c in chance])) for k in chance[0]}}
