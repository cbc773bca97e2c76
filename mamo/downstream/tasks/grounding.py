"""Weakly supervised visual grounding (RefCOCO+): fine-tune ITC + ITM on (image, expression)
pairs without boxes, then rank each image's proposals by the Grad-CAM heat of the ITM score
(``mamo.downstream.gradcam``). Metric: share of expressions whose top proposal has IoU >= 0.5
with the referred box. Baselines: a centre box (the mean training box size, centred) and a
random proposal (expected accuracy). Writes PNGs of heat maps over the pictures.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mamo.downstream.gradcam import box_scores, gradcam, save_heatmap_png
from mamo.downstream.metrics import iou
from mamo.downstream.readers import RefExpression, read_refcoco
from mamo.downstream.tasks.common import Context, TaskState, TaskTraining
from mamo.downstream.tasks.retrieval import contrastive_training

log = logging.getLogger(__name__)

IOU_HIT = 0.5


def load_split(ctx: Context, split: str) -> list[RefExpression]:
    f = ctx.cfg.data.files
    refs = read_refcoco(ctx.path(f.refs), ctx.path(f.instances), split)
    for r in refs:
        if r.image_file not in ctx.images:
            raise ValueError(f"RefCOCO+ {split}: ref_id {r.ref_id} refers to image {r.image_file!r},"
                             " which is not among the images")
    return refs


def norm_box(box_xywh: list[float], w: int, h: int) -> list[float]:
    x, y, bw, bh = box_xywh
    return [x / w, y / h, (x + bw) / w, (y + bh) / h]


def training(ctx: Context, model) -> TaskTraining:
    """Retrieval's ITC + ITM training on the expressions (boxes only for the centre baseline)."""
    train = load_split(ctx, ctx.cfg.data.train_split)
    pairs = [(r.image_file, s) for r in train for s in r.sentences]
    log.info("grounding: %d training expressions (%d sentences), no boxes used", len(train), len(pairs))
    task = contrastive_training(ctx, model, pairs)
    sizes = np.array([[r.box[2] / r.width, r.box[3] / r.height] for r in train]) if train else np.array([[0.25, 0.25]])
    task.meta["mean_box_size"] = [float(v) for v in sizes.mean(0)]
    return task


def center_box(size: list[float]) -> list[float]:
    w, h = size
    return [0.5 - w / 2, 0.5 - h / 2, 0.5 + w / 2, 0.5 + h / 2]


def evaluate(ctx: Context, model, state: TaskState | None = None, out_dir: Path | None = None,
             batch_size: int = 32) -> dict[str, Any]:
    refs = load_split(ctx, ctx.cfg.data.eval_split)
    model.eval()
    items = [(r, s) for r in refs for s in r.sentences]
    mean_size = (state.meta.get("mean_box_size") if state else None) or [0.25, 0.25]
    hits, center_hits, random_expect = [], [], []
    n_png = ctx.cfg.options.grounding_heatmaps if out_dir is not None else 0
    pngs: list[str] = []
    for s in range(0, len(items), batch_size):
        chunk = items[s: s + batch_size]
        with torch.no_grad():
            img_emb, _ = model.encode_image(ctx.image_tensor([r.image_file for r, _ in chunk]))
            ids, mask = ctx.text([t for _, t in chunk])
            txt_emb, _ = model.encode_text(ids, mask)
        heat = gradcam(model, img_emb, txt_emb, mask, ctx.cfg.options.gradcam).cpu()
        for k, (r, sent) in enumerate(chunk):
            gt = norm_box(r.box, r.width, r.height)
            props = [norm_box(b, r.width, r.height) for b in r.proposals]
            scores = box_scores(heat[k], props)
            best = props[int(np.argmax(scores))]
            hits.append(iou(best, gt) >= IOU_HIT)
            center_hits.append(iou(center_box(mean_size), gt) >= IOU_HIT)
            random_expect.append(np.mean([iou(p, gt) >= IOU_HIT for p in props]))
            if len(pngs) < n_png:
                img = ctx.images.array(r.image_file, max(256, ctx.cfg.data.image_size))
                name = f"ref{r.ref_id}_{len(pngs)}.png"
                mark = "hit" if hits[-1] else "miss"
                save_heatmap_png(out_dir / name, img, heat[k], f"{sent} ({mark})", gt, best)
                pngs.append(name)
    n = max(1, len(hits))
    return {"task": "grounding", "split": ctx.cfg.data.eval_split, "n": len(hits),
            "accuracy": 100.0 * sum(hits) / n, "iou_threshold": IOU_HIT,
            "mean_proposals": float(np.mean([len(r.proposals) for r in refs])) if refs else 0.0,
            "baseline_center_box": 100.0 * sum(center_hits) / n,
            "baseline_random_proposal": 100.0 * float(np.sum(random_expect)) / n,
            "heatmaps": pngs, "gradcam": ctx.cfg.options.gradcam}
