"""End to end: `python -m mamo.train` on real shards through the real DALI CPU loader with real
concept annotations; checkpoints reloaded; a run killed with SIGKILL mid-epoch and resumed logs
exactly the per-step losses of an uninterrupted run."""
from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from mamo.trainer.metrics import read_metrics

from train_helpers import REPO, STEPS, env, run_cli, train_args

LOSS_KEYS = ("loss", "itc", "itm", "mmm", "mmm_implicit", "mmm_visual", "mmm_concept")


@pytest.mark.slow
def test_tiny_run_learns_and_writes_everything(reference, dataset):
    recs = read_metrics(reference / "metrics.jsonl")
    assert [r["step"] for r in recs] == list(range(1, STEPS + 1))
    for r in recs:
        for k in LOSS_KEYS:
            assert math.isfinite(r[k]), (r["step"], k)
        assert r["lr"] > 0 and r["grad_norm"] > 0 and r["samples_per_s"] > 0
        assert 0 <= r["data_wait_share"] <= 1 and 0 < r["temperature"] < 1
        assert r["skipped"] is False
    # the sum of the terms: the total weighs MMM by its warm-up (0 at the first step)
    first, last = ([r["itc"] + r["itm"] + r["mmm"] for r in rs] for rs in (recs[:3], recs[-3:]))
    assert sum(last) / 3 < sum(first) / 3, [r["loss"] for r in recs]
    assert recs[-1]["epoch"] == 1  # crossed into the second epoch
    # The resolved config and the data identity are in the run dir.
    versions = json.loads((reference / "data_versions.json").read_text())
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert versions["dataset"] == manifest["dataset"] and len(versions["manifest_sha256"]) == 64
    assert versions["vocab_id"] == (dataset / "concepts" / "LATEST").read_text().strip()
    assert "preset: tiny" in (reference / "config.yaml").read_text()
    # keep_last=2: steps 9 and the final step 10 remain.
    assert sorted(p.name for p in (reference / "checkpoints").iterdir()) == ["step_0000009", "step_0000010"]


@pytest.mark.slow
def test_checkpoint_reloads_into_a_fresh_model(reference):
    from mamo.model import MAMO
    from mamo.trainer.checkpoint import load_checkpoint
    from mamo.trainer.config import load_run_config

    cfg = load_run_config(str(reference / "config.yaml"))
    ck = reference / "checkpoints" / "step_0000010"
    meta = json.loads((ck / "meta.json").read_text())
    model = MAMO(cfg.model, cfg.loss, meta["num_concepts"])
    loaded = load_checkpoint(ck, model, meta)  # state.pt through torch.load(weights_only=True)
    assert loaded.step == STEPS and loaded.state["optimizer"]["state"]
    final = load_file(str(reference / "final" / "model.safetensors"))
    state = model.state_dict()
    # Weights, momentum copy and ITC queue all round-trip.
    assert any(k.startswith("momentum.") for k in final) and any("queue" in k for k in final)
    for k, v in final.items():
        assert torch.equal(state[k], v), k
    assert (reference / "final" / "config.yaml").read_text() == (reference / "config.yaml").read_text()


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_the_same_losses(reference, dataset, tmp_path):
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, *train_args(dataset, run_dir)], cwd=REPO, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 240
    try:
        # Kill as soon as step 4 is logged: past the step-3 checkpoint, mid-epoch 0.
        while time.monotonic() < deadline:
            if metrics.is_file() and any(r["step"] >= 4 for r in read_metrics(metrics)):
                break
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "final").exists()
    logged = max(r["step"] for r in read_metrics(metrics))
    assert 4 <= logged < STEPS

    r = run_cli([*train_args(dataset, run_dir), "--resume"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming from" in r.stderr and "step_0000003" in r.stderr

    got, want = read_metrics(metrics), read_metrics(reference / "metrics.jsonl")
    assert [x["step"] for x in got] == list(range(1, STEPS + 1))  # no duplicated steps
    for a, b in zip(got, want):
        for k in (*LOSS_KEYS, "lr", "grad_norm", "temperature", "epoch"):
            assert a[k] == b[k], (a["step"], k, a[k], b[k])
    fa = load_file(str(run_dir / "final" / "model.safetensors"))
    fb = load_file(str(reference / "final" / "model.safetensors"))
    assert fa.keys() == fb.keys() and all(torch.equal(fa[k], fb[k]) for k in fa)


@pytest.mark.slow
def test_nonfinite_steps_skipped_then_abort_keeping_last_good_checkpoint(dataset, tmp_path):
    run_dir = tmp_path / "diverge"
    # A absurd learning rate: step 1 is finite, its update blows the weights up, every later
    # loss is non-finite.
    r = run_cli(train_args(dataset, run_dir, "train.ckpt_every=1", "optim.lr=1.0e+30", "train.max_nonfinite=3"))
    assert r.returncode == 3, r.stderr[-3000:]
    assert r.stderr.count("non-finite loss or gradient; update skipped") == 3
    assert "3 non-finite steps in a row" in r.stderr and "step_0000001" in r.stderr
    recs = read_metrics(run_dir / "metrics.jsonl")
    assert [x["skipped"] for x in recs] == [False, True, True, True]
    assert math.isfinite(recs[0]["loss"]) and not math.isfinite(float(recs[1]["loss"]))
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_0000001"]
    assert not (run_dir / "final").exists()


@pytest.mark.slow
def test_sigterm_checkpoints_the_current_step_and_stops(dataset, tmp_path):
    run_dir = tmp_path / "preempted"
    proc = subprocess.Popen([sys.executable, *train_args(dataset, run_dir)], cwd=REPO, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = run_dir / "metrics.jsonl"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (metrics.is_file() and read_metrics(metrics)):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)  # what a cluster scheduler sends before preempting
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    last = max(r["step"] for r in read_metrics(metrics))
    assert last < STEPS and f"stopped by signal at step {last}" in err
    # The step it stopped at is checkpointed (not only the every-3-steps ones).
    assert (run_dir / "checkpoints" / f"step_{last:07d}" / "state.pt").is_file()
    assert not (run_dir / "final").exists()


def _first_three_steps(reference, dataset, run_dir, *extra) -> list[tuple[dict, dict]]:
    """Run 3 steps with ``extra`` settings; (reference record, this run's record) per step.
    The learning rate of these steps is the same with 3 or 10 steps in total."""
    # MAMO's warm-ups are shares of the run (10 steps in the reference: mmm 0.1, alpha 0.2);
    # these shares of 3 steps give the same ramp values at steps 1-3
    r = run_cli(train_args(dataset, run_dir, "train.steps=3", "loss.mmm_warmup=0.3333333333333333",
                           "loss.alpha_warmup=0.6666666666666666", *extra), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    ref, got = read_metrics(reference / "metrics.jsonl")[:3], read_metrics(run_dir / "metrics.jsonl")
    assert [x["step"] for x in got] == [1, 2, 3]
    assert [x["lr"] for x in got] == [x["lr"] for x in ref]
    return list(zip(ref, got))


@pytest.mark.slow
def test_compiled_blocks_train_like_eager(reference, dataset, tmp_path):
    """`train.compile=true` (configs/base.yaml's setting): the blocks run through Inductor and
    the first steps log the losses of the eager reference run."""
    for a, b in _first_three_steps(reference, dataset, tmp_path / "compiled", "train.compile=true"):
        for k in LOSS_KEYS:
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-5), (a["step"], k)
        # FlopCounterMode counts through the compiled blocks: the same model FLOPs as eager;
        # no MFU on the CPU (no known peak)
        assert b["flops"] == a["flops"] > 0 and "mfu" not in b


@pytest.mark.slow
def test_activation_checkpointing_trains_exactly_like_the_reference(reference, dataset, tmp_path):
    """`train.activation_checkpointing=true` recomputes the blocks in the backward: on the CPU
    the run logs bit-identical losses and gradient norms (the recomputation is the same
    arithmetic, dropout masks included)."""
    for a, b in _first_three_steps(reference, dataset, tmp_path / "ac", "train.activation_checkpointing=true"):
        assert b["grad_norm"] == a["grad_norm"]
        for k in LOSS_KEYS:
            assert b[k] == a[k], (a["step"], k)
