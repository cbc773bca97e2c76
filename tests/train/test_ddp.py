"""Two processes on the CPU (gloo) through torchrun, with gradient accumulation.

DDP: it trains, and both ranks end with bit-identical weights, momentum copy and ITC queue.
FSDP (``train.parallel=fsdp``): the same run gives the same losses and weights as DDP, writes
the same checkpoint format, and resumes from a checkpoint bit for bit (also under DDP).
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import TINY, run_cli, tree_digest

from mamo.trainer.metrics import read_metrics

# A fast EMA (momentum 0.5) so that the teacher moves visibly in 3 steps: a sharded teacher
# that missed its update would then differ from DDP's beyond the tolerance below.
ARGS = [*TINY, "train.steps=3", "train.ckpt_every=2", "train.grad_accum=2", "train.keep_last=3",
        "model.momentum=0.5"]


def _torchrun(dataset: Path, run_dir: Path, *extra: str, resume: bool = False) -> None:
    r = run_cli(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                 "-m", "mamo.train", "--config", "configs/tiny.yaml", "--run-dir", str(run_dir), "--no-progress",
                 *(["--resume"] if resume else []), f"data.version_dir={dataset}", *ARGS, *extra], timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "final" / "model.safetensors"))


@pytest.fixture(scope="module")
def ddp_run(dataset, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("ddp") / "run"
    _torchrun(dataset, run_dir, "train.parallel=ddp")
    return run_dir


@pytest.fixture(scope="module")
def fsdp_run(dataset, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("fsdp") / "run"
    _torchrun(dataset, run_dir, "train.parallel=fsdp")
    return run_dir


@pytest.mark.slow
def test_torchrun_two_processes_gloo(ddp_run):
    run_dir = ddp_run
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


@pytest.mark.slow
def test_fsdp_matches_ddp(ddp_run, fsdp_run):
    ddp, fsdp = read_metrics(ddp_run / "metrics.jsonl"), read_metrics(fsdp_run / "metrics.jsonl")
    assert [x["step"] for x in fsdp] == [1, 2, 3]
    for a, b in zip(ddp, fsdp):
        # Same maths; only the order of the gradient sums differs (all-reduce vs reduce-scatter).
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
        assert b["temperature"] == pytest.approx(a["temperature"], rel=1e-5)
    wa, wb = _weights(ddp_run), _weights(fsdp_run)
    assert set(wa) == set(wb)  # full weights (online, momentum copy, queue), unsharded names
    for k in wa:
        assert wa[k].shape == wb[k].shape, k
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-5, msg=k)
    # The replicated part (momentum copy, queue, temperature) stayed identical across ranks.
    digests = json.loads((fsdp_run / "final" / "rank_digests.json").read_text())
    assert len(digests) == 2 and digests[0] == digests[1]
    # Optimizer state is stored whole and keyed by parameter name (not by rank-local index).
    state = torch.load(fsdp_run / "checkpoints" / "step_0000003" / "state.pt", weights_only=True)
    moments = state["optimizer"]["state"]
    name = next(k for k in moments if k.startswith("enc.vision.") and k.endswith("weight"))
    assert tuple(moments[name]["exp_avg"].shape) == tuple(wa[name].shape)


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["fsdp", "ddp"])
def test_fsdp_checkpoint_resumes_exactly(dataset, fsdp_run, tmp_path, parallel):
    """Take the FSDP run back to its step-2 checkpoint and resume it (with FSDP, or with DDP
    from the same files): step 3 and the final weights come out as in the uninterrupted run."""
    run_dir = tmp_path / "run"
    shutil.copytree(fsdp_run, run_dir)
    shutil.rmtree(run_dir / "final")
    shutil.rmtree(run_dir / "checkpoints" / "step_0000003")
    _torchrun(dataset, run_dir, f"train.parallel={parallel}", resume=True)
    ref, got = read_metrics(fsdp_run / "metrics.jsonl"), read_metrics(run_dir / "metrics.jsonl")
    assert [x["step"] for x in got] == [1, 2, 3]
    assert got[2]["loss"] == pytest.approx(ref[2]["loss"], rel=1e-6)
    wa, wb = _weights(fsdp_run), _weights(run_dir)
    for k in wa:
        if parallel == "fsdp":
            assert torch.equal(wa[k], wb[k]), k
        else:  # a different reduction order in the last step
            torch.testing.assert_close(wb[k], wa[k], rtol=1e-5, atol=1e-6, msg=k)



@pytest.mark.slow
def test_resume_with_another_world_size_needs_elastic_resume(dataset, ddp_run, tmp_path):
    """A 2-process checkpoint resumed by 1 process: refused (exit 2, nothing written) unless
    train.elastic_resume=true, which continues weights, optimizer and step and restarts the
    data at an epoch boundary."""
    run_dir = tmp_path / "run"
    shutil.copytree(ddp_run, run_dir)
    shutil.rmtree(run_dir / "final")
    shutil.rmtree(run_dir / "checkpoints" / "step_0000003")
    one_process = ["-m", "mamo.train", "--config", "configs/tiny.yaml", "--run-dir", str(run_dir), "--no-progress",
                   "--resume", f"data.version_dir={dataset}", *ARGS]
    before = tree_digest(run_dir)
    r = run_cli(one_process)
    assert r.returncode == 2 and "train.elastic_resume" in r.stderr, r.stderr[-2000:]
    assert tree_digest(run_dir) == before
    r = run_cli([*one_process, "train.elastic_resume=true"])
    assert r.returncode == 0, r.stderr[-3000:]
    # The step-2 checkpoint ended epoch 0 exactly (2 steps per epoch at 2 ranks): nothing skipped.
    assert "2 -> 1 processes; data restarts at epoch 1; the interrupted run had just finished" in r.stderr
    recs = read_metrics(run_dir / "metrics.jsonl")
    assert [x["step"] for x in recs] == [1, 2, 3] and math.isfinite(recs[-1]["loss"])
    assert recs[-1]["epoch"] == 1
    assert json.loads((run_dir / "final" / "meta.json").read_text())["world_size"] == 1


def test_elastic_resume_skips_to_the_next_epoch():
    from mamo.trainer.batching import restart_at_next_epoch

    class Loader:
        epoch = 0

        def set_epoch(self, epoch):
            self.epoch = epoch

    loader = Loader()
    note = restart_at_next_epoch(loader, [{"epoch": 3, "batch": 5}] * 4, 4, 2)
    assert loader.epoch == 4 and "rest of epoch 3 is skipped" in note and "4 -> 2" in note
    restart_at_next_epoch(loader, [{"epoch": 2, "batch": 0}] * 2, 2, 8)
    assert loader.epoch == 2
