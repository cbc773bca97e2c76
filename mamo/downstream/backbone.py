"""The pre-trained MAMO backbone for fine-tuning: built from ``--init``, saved, reloaded.

``--init`` may be a pre-training run dir (``runs/<name>``: weights ``final/model.safetensors``),
a ``final/``, ``checkpoints/step_N`` or fine-tuned dir, or its ``model.safetensors``. The model
is rebuilt from the checkpoint's own config by ``mamo.loader`` (so fine-tuning never guesses
sizes) and then switched to the fine-tuning losses.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from mamo.core.files import atomic_path
from mamo.model.config import LossConfig, ModelConfig

log = logging.getLogger(__name__)
# Buffers that a task-head file may lack or carry without meaning for fine-tuning
_OPTIONAL = ("queue_ptr", "image_queue", "text_queue", "queue.")


def build_backbone(model_cfg: ModelConfig, loss_cfg: LossConfig, init: str | Path | None
                   ) -> tuple[Any, ModelConfig]:
    """``(MAMO, the model config used)``; weights (and architecture) from ``init`` when given."""
    from mamo.loader import load_model
    from mamo.model import MAMO

    if init is None:
        model = MAMO(model_cfg, loss_cfg)
        log.info("backbone: random initialisation (no --init)")
        return model, model_cfg
    model, ckpt = load_model(init)
    dropped = model.use_losses(loss_cfg)
    if dropped:  # pre-training heads (MMM) are not used by fine-tuning
        log.info("pre-training heads not used: %s", ", ".join(dropped))
    log.info("backbone: %s", ckpt.dir.weights)
    return model.train(), ckpt.model


def save_module(module: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import save_model

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_model(module, str(tmp))


def load_module(module: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import load_model

    missing, unexpected = load_model(module, str(path), strict=False)
    real_missing = [k for k in missing if not any(s in k for s in _OPTIONAL)]
    if real_missing or unexpected:
        raise RuntimeError(f"{path} does not fit: missing {real_missing[:3]}, unexpected {unexpected[:3]}")
