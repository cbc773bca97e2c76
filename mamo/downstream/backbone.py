"""The pre-trained MAMO backbone for fine-tuning: resolving ``--init``, building, saving.

``--init`` may be a pre-training run dir (``runs/<name>``: weights ``final/model.safetensors``),
a ``final/`` or fine-tuned dir holding ``model.safetensors``, or the ``.safetensors`` file
itself. The architecture is read from the nearest ``config.yaml`` above the weights (its
``model`` section), so fine-tuning never guesses sizes.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import yaml

from mamo.core.config import from_dict
from mamo.model.config import LossConfig, ModelConfig

WEIGHTS = "model.safetensors"
# Buffers that a checkpoint may lack or carry without meaning for fine-tuning
_OPTIONAL = ("queue_ptr", "image_queue", "text_queue", "queue.")


def resolve_init(init: str | Path) -> tuple[Path, Path | None]:
    """``(weights file, config.yaml or None)`` for an ``--init`` value."""
    p = Path(init)
    if p.is_file():
        weights = p
    elif (p / WEIGHTS).is_file():
        weights = p / WEIGHTS
    elif (p / "final" / WEIGHTS).is_file():
        weights = p / "final" / WEIGHTS
    else:
        raise FileNotFoundError(f"--init {init}: no {WEIGHTS} there, nor in {p / 'final'}")
    for d in [weights.parent, *weights.parent.parents][:4]:
        if (d / "config.yaml").is_file():
            return weights, d / "config.yaml"
    return weights, None


def model_config_of(config_yaml: Path) -> ModelConfig:
    data = yaml.safe_load(config_yaml.read_text(encoding="utf-8")) or {}
    if "model" not in data:
        raise ValueError(f"{config_yaml} has no 'model' section")
    return from_dict(ModelConfig, data["model"], prefix="model")


def build_backbone(model_cfg: ModelConfig, loss_cfg: LossConfig, init: str | Path | None,
                   log=print) -> tuple[Any, ModelConfig]:
    """``(MAMO, the model config used)``; weights from ``init`` when given."""
    from safetensors.torch import load_model

    from mamo.model import MAMO

    if init is None:
        model = MAMO(model_cfg, loss_cfg)
        log("backbone: random initialisation (no --init)")
        return model, model_cfg
    weights, config_yaml = resolve_init(init)
    if config_yaml is None:
        log(f"no config.yaml above {weights}; assuming the configured model section")
    else:
        model_cfg = model_config_of(config_yaml)
    # weights come from the checkpoint: do not load BERT/ViT initial weights first
    model_cfg = replace(model_cfg, text_init=None, vision_init=None)
    model = MAMO(model_cfg, loss_cfg, load_pretrained=False)
    missing, unexpected = load_model(model, str(weights), strict=False)
    real_missing = [k for k in missing if not any(s in k for s in _OPTIONAL)]
    if real_missing:
        raise RuntimeError(f"{weights} does not fit the model: missing {sorted(real_missing)[:5]}")
    if unexpected:
        # pre-training heads (MMM) are not used by fine-tuning
        log(f"{len(unexpected)} pre-training tensors not used (e.g. {sorted(unexpected)[0]})")
    log(f"backbone: {weights}")
    return model, model_cfg


def save_module(module: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import save_model

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_model(module, str(tmp))
    tmp.replace(path)


def load_module(module: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import load_model

    missing, unexpected = load_model(module, str(path), strict=False)
    real_missing = [k for k in missing if not any(s in k for s in _OPTIONAL)]
    if real_missing or unexpected:
        raise RuntimeError(f"{path} does not fit: missing {real_missing[:3]}, unexpected {unexpected[:3]}")
