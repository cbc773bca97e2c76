"""MAMO: masked multimodal modeling. Model, objectives, data loaders, trainer, evaluation.

Importing this package is light (no torch); submodules import what they need."""
__version__ = "0.1.0"
