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


def masked_rows(mask: torch.Tensor, per_sample: int | None) -> torch.Tensor | None:
    """``[B, k]`` positions per sample with the masked ones first, in a shape that does not
    depend on the data (``k = per_sample``, a bound on the masked count per sample); None
    (= every position) without a bound. Boolean indexing instead would make the shape a
    function of the mask: a host sync per loss and a graph break under torch.compile."""
    if per_sample is None or per_sample >= mask.shape[1]:
        return None
    return mask.to(torch.int32).topk(per_sample, dim=1, sorted=False).indices


def take(x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
    """``x [B, S, ...]`` at positions ``idx [B, k]`` (all when None), flattened to rows."""
    if idx is not None:
        x = x.gather(1, idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:]))
    return x.flatten(0, 1)


def implicit_loss(student_hidden: torch.Tensor, target: torch.Tensor, masked: torch.Tensor,
                  head: torch.nn.Module, kind: str, beta: float, impl: str = "torch",
                  per_sample: int | None = None) -> torch.Tensor:
    """Regress ``target`` at ``masked`` positions (both modalities) from the student fusion
    output through ``head`` (``per_sample``: at most this many masked positions per sample)."""
    idx = masked_rows(masked, per_sample)
    pred = head(take(student_hidden, idx))
    return masked_regression_loss(pred, take(target, idx), take(masked, idx), kind=kind, beta=beta,
                                  target_norm="none", impl=impl)


def visual_loss(student_image_hidden: torch.Tensor, teacher_image_embeds: torch.Tensor,
                patch_mask: torch.Tensor, head: torch.nn.Module, impl: str = "torch",
                per_sample: int | None = None) -> torch.Tensor:
    """``2 - 2 cos`` between the head's prediction at masked patches and the teacher image
    encoder's (unimodal) patch feature, L2-normalised. Both hidden inputs include [CLS]."""
    idx = masked_rows(patch_mask, per_sample)
    pred = head(take(student_image_hidden[:, 1:], idx))
    return masked_regression_loss(pred, take(teacher_image_embeds[:, 1:], idx), take(patch_mask, idx),
                                  kind="cosine", target_norm="l2", impl=impl)


def text_class_loss(student_text_hidden: torch.Tensor, labels: torch.Tensor,
                    text_mask: torch.Tensor, head: torch.nn.Module, impl: str = "torch",
                    per_sample: int | None = None) -> torch.Tensor:
    """Cross-entropy at masked tokens: ``labels`` are concept ids (-100 = no concept) or
    WordPiece ids (token MLM). ``head`` is a ``ClassifierHead``."""
    idx = masked_rows(text_mask, per_sample)
    hidden = head.hidden(take(student_text_hidden, idx))
    lab = torch.where(take(text_mask, idx), take(labels, idx), torch.full_like(take(labels, idx), -100))
    return linear_cross_entropy(hidden, head.decoder.weight, head.decoder.bias, lab, impl=impl)


def concept_mlm_losses(student_text_hidden: torch.Tensor, concept_labels: torch.Tensor,
                       token_ids: torch.Tensor, text_mask: torch.Tensor,
                       concept_head: torch.nn.Module, mlm_head: torch.nn.Module | None,
                       impl: str = "torch", per_sample: int | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``text_target=concept_mlm``: ``(concept CE, MLM CE)`` at masked tokens, split by
    whether the token has a concept label (``concept_labels >= 0``): the concept head is
    trained at the labelled ones, ``mlm_head`` (over WordPiece ids, target = the original
    ``token_ids``) at the others. Each is a mean over its own positions (0, still in the
    graph, when a batch has none); no position trains both heads. ``mlm_head`` None: the
    concept term alone (``lambda_t_mlm=0``). The same fixed-shape rows serve both heads."""
    idx = masked_rows(text_mask, per_sample)
    rows = take(student_text_hidden, idx)
    masked = take(text_mask, idx)
    labels = take(concept_labels, idx)
    has_concept = labels >= 0
    ignore = torch.full_like(labels, -100)
    lab_c = torch.where(masked & has_concept, labels, ignore)
    loss_c = linear_cross_entropy(concept_head.hidden(rows), concept_head.decoder.weight,
                                  concept_head.decoder.bias, lab_c, impl=impl)
    if mlm_head is None:
        return loss_c, None
    lab_m = torch.where(masked & ~has_concept, take(token_ids, idx), ignore)
    loss_m = linear_cross_entropy(mlm_head.hidden(rows), mlm_head.decoder.weight,
                                  mlm_head.decoder.bias, lab_m, impl=impl)
    return loss_c, loss_m
