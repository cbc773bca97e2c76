"""MAMO: masked multimodal modelling. Model, objectives, data loaders, trainer, evaluation.

``model, preprocess, tokenizer = mamo.load("runs/demo/tiny")`` loads a trained model (see
``mamo.loader``). Importing this package is light (no torch); ``load`` and the submodules
import what they need on first use.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["load"]


def __getattr__(name: str) -> Any:
    if name == "load":
        from mamo.loader import load

        return load
    raise AttributeError(f"module 'mamo' has no attribute {name!r}")
