"""Data loaders: dataset version (WebDataset shards + DALI indexes) + concept annotations ->
batches (docs/ARCHITECTURE.md section 3), with DALI or a PyTorch fallback.

``DataConfig`` is light to import; ``build_loader`` pulls in torch (and DALI when used).
"""
from mamo.data.config import AugmentConfig, DataConfig

__all__ = ["AugmentConfig", "DataConfig", "build_loader", "Loader"]


def __getattr__(name: str):
    if name in ("build_loader", "Loader"):
        from mamo.data import loader

        return getattr(loader, name)
    raise AttributeError(name)
