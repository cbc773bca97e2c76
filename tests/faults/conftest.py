"""Fault injection for the model side: real files truncated and bit-flipped, real processes,
real signals, real tmpfs mounts (disk full, read-only). Data: the trainer tests' synthetic
version with concept annotations (tests/train/train_helpers.py), copied before it is damaged."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_helpers import make_dataset  # noqa: E402


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("faults-data"))


@pytest.fixture
def dataset_copy(dataset, tmp_path) -> Path:
    """A private copy of the version (shards, manifest, concepts) to damage."""
    dst = tmp_path / "data" / "synthetic" / "v1"
    shutil.copytree(dataset, dst)
    return dst


@pytest.fixture
def tmpfs(tmp_path):
    """``mount(size, ro=False)`` -> a fresh tmpfs dir of ``size`` ("3m"); unmounted after."""
    mounted = []

    def mount(size: str, name: str = "mnt") -> Path:
        d = tmp_path / name
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}); needs root")
        mounted.append(d)
        return d

    yield mount
    for d in reversed(mounted):
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


@pytest.fixture(scope="session")
def task_data(tmp_path_factory) -> tuple[Path, Path]:
    """(version, tasks_dir) for fine-tuning: 160 synthetic samples and their task files."""
    from mamo.downstream.synthetic_tasks import write_synthetic_tasks

    root = tmp_path_factory.mktemp("ft-ds")
    repo = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-m", "ingest", "synthetic", "--out", str(root), "--dataset", "synthetic",
                    "--version", "v1", "--n", "160", "--seed", "0", "--image-size", "64"],
                   check=True, cwd=repo, capture_output=True)
    version = root / "synthetic" / "v1"
    tasks = tmp_path_factory.mktemp("ft-tasks")
    write_synthetic_tasks(version, tasks, seed=0)
    return version, tasks
