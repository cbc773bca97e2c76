"""Weakly supervised grounding by Grad-CAM (ALBEF protocol).

The heat of image patch p for an expression: over the last fusion layer's text-to-image
attention ``A [H, L, Nv]`` and its gradient ``G = dITM/dA``, ``mean_heads(A * relu(G))``
averaged over the expression's (non-padding) tokens, image [CLS] dropped, reshaped to the
patch grid. Proposals are ranked by the heat inside them (sum / sqrt(area), as ALBEF); the
expression is grounded when the top proposal has IoU >= 0.5 with the referred box.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def gradcam(model, image_embeds: torch.Tensor, text_embeds: torch.Tensor,
            attention_mask: torch.Tensor, mode: str = "itm") -> torch.Tensor:
    """Patch heat maps ``[B, gh, gw]`` (>= 0). ``mode="attention"``: plain attention (no grad)."""
    with torch.enable_grad():
        out = model.fuse(image_embeds, text_embeds, attention_mask, return_attention=True)
        probs = out.attention                                   # [B, H, Nv+L, Nv+L], in the graph
        nv = out.num_image_tokens
        if mode == "itm":
            logits = model.itm_head(out.text_cls)
            score = logits[:, 1] - logits[:, 0]
            grads = torch.autograd.grad(score.sum(), probs)[0]
            cam = probs * grads.clamp(min=0)
        elif mode == "attention":
            cam = probs
        else:
            raise ValueError(f"unknown Grad-CAM mode {mode!r}")
        cam = cam[:, :, nv:, 1:nv].mean(dim=1)                   # [B, L, P] text -> patches
        m = attention_mask.to(cam.dtype)[:, :, None]
        heat = (cam * m).sum(1) / m.sum(1).clamp(min=1)         # [B, P]
    side = int(round(heat.shape[1] ** 0.5))
    if side * side != heat.shape[1]:
        raise ValueError(f"{heat.shape[1]} patches do not form a square grid")
    return heat.detach().reshape(-1, side, side)


def upsample(heat: torch.Tensor, size: int) -> torch.Tensor:
    """``[gh, gw]`` -> ``[size, size]`` (bilinear), for scoring boxes and drawing."""
    return F.interpolate(heat[None, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0]


def box_scores(heat: torch.Tensor, boxes_norm: Sequence[Sequence[float]], size: int = 256) -> list[float]:
    """Score of each ``[x0, y0, x1, y1]`` (normalised) box: heat sum inside / sqrt(area)."""
    up = upsample(heat, size)
    out = []
    for x0, y0, x1, y1 in boxes_norm:
        c0, r0 = int(np.floor(x0 * size)), int(np.floor(y0 * size))
        c1, r1 = max(c0 + 1, int(np.ceil(x1 * size))), max(r0 + 1, int(np.ceil(y1 * size)))
        area = (c1 - c0) * (r1 - r0)
        out.append(float(up[r0:r1, c0:c1].sum()) / float(np.sqrt(area)))
    return out


def save_heatmap_png(path: str | Path, image: np.ndarray, heat: torch.Tensor, title: str,
                     gt_box: Sequence[float] | None = None, pred_box: Sequence[float] | None = None) -> Path:
    """The heat map over the picture (uint8 HWC ``image``), referred box green (thick), chosen
    box red (thin)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    h, w = image.shape[:2]
    up = upsample(heat.float(), max(h, w)).numpy()
    fig, ax = plt.subplots(figsize=(3.2, 3.4), dpi=100)
    ax.imshow(image)
    ax.imshow(up, cmap="jet", alpha=0.45, extent=(0, w, h, 0))
    for box, colour, lw in ((gt_box, "lime", 4), (pred_box, "red", 1.5)):
        if box is not None:
            x0, y0, x1, y1 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=lw))
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
