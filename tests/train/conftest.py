"""Real data for the trainer tests: a synthetic dataset version written by the ingest CLI and
concept annotations written by the concepts CLI (spaCy), built once per session."""
from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import make_dataset, run_cli, train_args


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    """32 samples in 2 shards (8 steps per epoch at batch 4) with concept annotations."""
    return make_dataset(tmp_path_factory.mktemp("train-data"))


@pytest.fixture(scope="session")
def reference(dataset, tmp_path_factory) -> Path:
    """An uninterrupted tiny run of 10 steps (checkpoints every 3, the last two kept)."""
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    r = run_cli(train_args(dataset, run_dir))
    assert r.returncode == 0, r.stderr[-3000:]
    return run_dir
