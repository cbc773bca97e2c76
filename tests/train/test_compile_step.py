"""`train.compile=true train.compile_scope=step`: `python -m mamo.train` compiles MAMO.step whole
(the draws stay eager). The run logs eager's per-step losses, compiles the step once although
the warm-ups change every step, and writes checkpoints that load into an eager model; a run of
several processes refuses the setting at the start.

The runs are in this process (``mamo.train.main``) with Dynamo's backend forced to
``aot_eager``: the same capture, functionalisation and joint forward/backward graph as
Inductor, without its code generation (minutes on this CPU); the Inductor path is the one of
the blocks test (tests/train/test_train_e2e.py) and of benchmarks/train_throughput.py."""
from __future__ import annotations

import json

import pytest
import torch
from train_helpers import train_args

from mamo.train import main
from mamo.trainer.metrics import read_metrics

LOSS_KEYS = ("loss", "itc", "itm", "mmm", "mmm_implicit", "mmm_visual", "mmm_concept")
STEPS = 4
# Warm-ups over (nearly) the whole run: w_mmm and alpha take a new value at every step; they
# reach the step as tensors, so a changing value must not recompile it.
WARMUPS = ["loss.mmm_warmup=0.99", "loss.alpha_warmup=0.99"]


def _train(capsys, dataset, run_dir, *extra) -> list[dict]:
    threads = torch.get_num_threads()  # train.num_threads=1 sets it for this process
    try:
        code = main(train_args(dataset, run_dir, f"train.steps={STEPS}", *WARMUPS, *extra)[2:])
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err
    assert code == 0, err[-3000:]
    return read_metrics(run_dir / "metrics.jsonl")


@pytest.mark.slow
def test_whole_step_compile_trains_like_eager_and_checkpoints_load_eagerly(capsys, dataset, tmp_path):
    from torch._dynamo.utils import counters

    from mamo.model import MAMO
    from mamo.trainer.checkpoint import load_checkpoint
    from mamo.trainer.config import load_run_config

    eager = _train(capsys, dataset, tmp_path / "eager")
    torch._dynamo.reset()
    counters.clear()
    try:
        # any recompilation of a frame already compiled is an error here
        with torch.compiler.set_stance("default", force_backend="aot_eager"), \
                torch._dynamo.config.patch(error_on_recompile=True):
            compiled = _train(capsys, dataset, tmp_path / "step", "train.compile=true", "train.compile_scope=step")
        # one frame (MAMO.step; the first step, FLOP-counted, runs eagerly), one graph, no break
        assert counters["frames"]["ok"] == 1 and counters["stats"]["unique_graphs"] == 1, dict(counters["frames"])
        assert not counters["graph_break"], dict(counters["graph_break"])
    finally:
        torch._dynamo.reset()

    assert [r["step"] for r in compiled] == list(range(1, STEPS + 1))
    for a, b in zip(eager, compiled):
        for k in (*LOSS_KEYS, "grad_norm", "lr", "temperature"):
            assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-6), (a["step"], k)
        assert b["flops"] == a["flops"] > 0

    # The checkpoint is an eager model's: the same names (no `_orig_mod.`), loadable strictly
    # into a fresh MAMO, with the eager run's weights (to the losses' tolerance).
    ck = tmp_path / "step" / "checkpoints" / f"step_{STEPS:07d}"
    meta = json.loads((ck / "meta.json").read_text())
    cfg = load_run_config(str(tmp_path / "step" / "config.yaml"))
    fresh = MAMO(cfg.model, cfg.loss, meta["num_concepts"], load_pretrained=False)
    load_checkpoint(ck, fresh, meta)
    reference = MAMO(cfg.model, cfg.loss, meta["num_concepts"], load_pretrained=False)
    load_checkpoint(tmp_path / "eager" / "checkpoints" / f"step_{STEPS:07d}", reference, meta)
    got, want = fresh.state_dict(), reference.state_dict()
    assert list(got) == list(want) and not any("_orig_mod" in k for k in got)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-5, msg=k)


def test_several_processes_refuse_the_whole_step_compile(capsys, dataset, tmp_path, monkeypatch):
    """Under DDP/FSDP the step all-gathers across ranks inside the graph: refused at the start,
    one line naming the key, exit 2, nothing written (before any process group exists)."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    run_dir = tmp_path / "run"
    code = main(train_args(dataset, run_dir, "train.compile=true", "train.compile_scope=step", "--check")[2:])
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: config key 'train.compile_scope': 'step' runs in a single process"), err
    assert not run_dir.exists()


def test_the_step_scope_needs_a_model_with_a_separate_step():
    from torch import nn

    from mamo.core.config import ConfigError
    from mamo.trainer.config import TrainConfig
    from mamo.trainer.parallelize import check_compile_scope

    tc = TrainConfig(steps=1, compile=True, compile_scope="step")
    with pytest.raises(ConfigError, match="train.compile_scope"):
        check_compile_scope(tc, 1, nn.Linear(2, 2))
    check_compile_scope(TrainConfig(steps=1, compile=True), 2, nn.Linear(2, 2))  # blocks: any model
