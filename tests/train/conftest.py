"""Real data for the trainer tests: a synthetic dataset version written by the ingest CLI and
concept annotations written by the concepts CLI (spaCy), built once per session."""
from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import make_dataset


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    """32 samples in 2 shards (8 steps per epoch at batch 4) with concept annotations."""
    return make_dataset(tmp_path_factory.mktemp("train-data"))
