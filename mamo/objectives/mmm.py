"""Masked multimodal modeling targets and losses (implicit + explicit visual + text).

All functions are pure: they take student outputs, teacher outputs and masks, so a test can
perturb a teacher tensor at unmasked positions and check that no loss moves.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mamo.objectives.losses import linear_cross_entropy, masked_regression_loss


@torch.no_grad()
def implicit_target(teacher_layers: list[torch.Tensor], top_k: int) -> torch.Tensor:
    """Mean of the last ``top_k`` teacher fusion-layer outputs, each layer-normed without
    affine parameters (data2vec-style); ``[B, S, D]`` float32."""
    k = min(top_k, len(teacher_layers))
    layers = teacher_layers[-k:]
    acc = None
    for h in layers:
        n = F.layer_norm(h.float(), h.shape[-1:])
        acc = n if acc is None else acc + n
    return acc / k


def position_mask(patch_mask: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
    """Bool ``[B, 1+N+L]`` over fusion positions ([CLS]_v, patches, text), True = masked."""
    cls = torch.zeros(patch_mask.shape[0], 1, dtype=torch.bool, device=patch_mask.device)
    return torch.cat([cls, patch_mask, text_mask.to(patch_mask.device)], dim=1)


def implicit_loss(student_hidden: torch.Tensor, target: torch.Tensor, masked: torch.Tensor,
                  head: torch.nn.Module, kind: str, beta: float, impl: str = "torch") -> torch.Tensor:
    """Regress ``target`` at ``masked`` positions (both modalities) from the student fusion
    output through ``head``."""
    pred = head(student_hidden[masked])
    tgt = target[masked]
    rows = torch.ones(pred.shape[0], dtype=torch.bool, device=pred.device)
    return masked_regression_loss(pred, tgt, rows, kind=kind, beta=beta, target_norm="none",
                                  impl=impl)


def visual_loss(student_image_hidden: torch.Tensor, teacher_image_embeds: torch.Tensor,
                patch_mask: torch.Tensor, head: torch.nn.Module, impl: str = "torch") -> torch.Tensor:
    """``2 - 2 cos`` between the head's prediction at masked patches and the teacher image
    encoder's (unimodal) patch feature, L2-normalised. Both hidden inputs include [CLS]."""
    pred = head(student_image_hidden[:, 1:][patch_mask])
    tgt = teacher_image_embeds[:, 1:][patch_mask]
    rows = torch.ones(pred.shape[0], dtype=torch.bool, device=pred.device)
    return masked_regression_loss(pred, tgt, rows, kind="cosine", target_norm="l2", impl=impl)


def text_class_loss(student_text_hidden: torch.Tensor, labels: torch.Tensor,
                    text_mask: torch.Tensor, head: torch.nn.Module, impl: str = "torch") -> torch.Tensor:
    """Cross-entropy at masked tokens: ``labels`` are concept ids (-100 = no concept) or
    WordPiece ids (token MLM). ``head`` is a ``ClassifierHead``."""
    hidden = head.hidden(student_text_hidden[text_mask])
    lab = labels[text_mask]
    return linear_cross_entropy(hidden, head.decoder.weight, head.decoder.bias, lab, impl=impl)
