"""Helpers of the trainer tests (a uniquely named module: test dirs are not packages)."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The tiny preset made tinier (1 layer per encoder, width 64) so that a step takes ~0.2 s
# on one busy core; DALI CPU backend; one torch thread (oversubscribed cores are slower).
TINY = [
    "model.vision.width=64", "model.vision.depth=1", "model.vision.heads=2", "model.vision.mlp_dim=128",
    "model.text.width=64", "model.text.depth=1", "model.text.heads=2", "model.text.mlp_dim=128",
    "model.fusion.depth=1", "model.fusion.heads=2", "model.fusion.mlp_dim=128",
    "model.embed_dim=32", "model.queue_size=32",
    "data.batch_size=4", "data.backend=dali", "data.num_threads=1", "data.shuffle_buffer=64",
    "optim.lr=1.0e-3", "optim.warmup_steps=2", "train.num_threads=1",
]


STEPS = 10  # 8 steps per epoch at batch 4: the reference run crosses an epoch boundary


def train_args(dataset: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["-m", "mamo.train", "--config", "configs/tiny.yaml", "--run-dir", str(run_dir), "--no-progress",
            f"data.version_dir={dataset}", *TINY, f"train.steps={STEPS}", "train.ckpt_every=3",
            "train.keep_last=2", *extra]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e["OMP_NUM_THREADS"] = "1"
    return e


def run_cli(args: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    """Run ``python ARGS``; on timeout kill its whole process group (torchrun's workers too)."""
    proc = subprocess.Popen([sys.executable, *args], cwd=REPO, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"timed out after {timeout}s: {err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def make_dataset(root: Path, n: int = 32, per_shard: int = 16) -> Path:
    r = run_cli(["-m", "ingest", "synthetic", "--out", str(root), "--dataset", "synthetic", "--version", "v1",
                 "--n", str(n), "--seed", "0", "--image-size", "64", "--samples-per-shard", str(per_shard)])
    assert r.returncode == 0, r.stderr
    version_dir = root / "synthetic" / "v1"
    r = run_cli(["-m", "concepts", "build", str(version_dir), "--quiet"])
    assert r.returncode == 0, r.stderr
    return version_dir


def tree_digest(path: Path) -> dict[str, str]:
    """Every file under ``path`` with the sha1 of its bytes (to prove nothing changed)."""
    out = {}
    if not path.exists():
        return out
    for p in sorted(path.rglob("*")):
        out[str(p.relative_to(path))] = hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out
