"""The MAMO model. ``from mamo.model import MAMO, ModelConfig, LossConfig``.

Config classes import without torch; ``MAMO`` (and torch) load on first access.
"""
from mamo.model.config import (PRESETS, FusionConfig, LossConfig, ModelConfig, TextConfig,
                               VisionConfig, loss_config, model_config)

__all__ = ["MAMO", "ModelConfig", "LossConfig", "VisionConfig", "TextConfig", "FusionConfig",
           "PRESETS", "model_config", "loss_config"]


def __getattr__(name: str):
    if name == "MAMO":
        from mamo.model.mamo import MAMO

        return MAMO
    raise AttributeError(name)
