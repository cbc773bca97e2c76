"""Two-process DDP on the CPU (gloo) through torchrun, with gradient accumulation: it trains,
and both ranks end with bit-identical weights, momentum copy and ITC queue."""
from __future__ import annotations

import json
import math

import pytest
from train_helpers import TINY, run_cli

from mamo.trainer.metrics import read_metrics


@pytest.mark.slow
def test_torchrun_two_processes_gloo(dataset, tmp_path):
    run_dir = tmp_path / "ddp"
    r = run_cli(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                 "-m", "mamo.train", "--config", "configs/tiny.yaml", "--run-dir", str(run_dir), "--no-progress",
                 f"data.version_dir={dataset}", *TINY, "train.steps=3", "train.ckpt_every=2", "train.grad_accum=2"], timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    digests = json.loads((run_dir / "final" / "rank_digests.json").read_text())
    assert len(digests) == 2 and digests[0] == digests[1]
    recs = read_metrics(run_dir / "metrics.jsonl")
    assert [x["step"] for x in recs] == [1, 2, 3]  # rank 0 logs once per step
    assert all(math.isfinite(x["loss"]) for x in recs)
    state_meta = json.loads((run_dir / "checkpoints" / "step_0000003" / "meta.json").read_text())
    assert state_meta["world_size"] == 2
    # 2 ranks x batch 4 x 2 micro-batches: 16 samples a step, so an epoch of 32 samples is 2
    # steps and the run crosses into epoch 1 (gradient accumulation with DDP's no_sync).
    assert json.loads((run_dir / "data_versions.json").read_text())["steps_per_epoch"] == 2
    assert recs[-1]["epoch"] == 1
