"""A small synthetic dataset version and its task files, made once per test session."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def synth_version(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ds")
    subprocess.run([sys.executable, "-m", "ingest", "synthetic", "--out", str(root), "--dataset",
                    "synthetic", "--version", "v1", "--n", "160", "--seed", "0", "--image-size", "64"],
                   check=True, cwd=REPO, capture_output=True)
    return root / "synthetic" / "v1"


@pytest.fixture(scope="session")
def synth_tasks(synth_version, tmp_path_factory) -> Path:
    from mamo.downstream.synthetic_tasks import write_synthetic_tasks

    out = tmp_path_factory.mktemp("tasks")
    write_synthetic_tasks(synth_version, out, seed=0)
    return out


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # 2 shared cores: one torch thread avoids oversubscription (much faster here)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
