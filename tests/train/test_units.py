"""Model-independent pieces of the trainer: config validation, optimizer groups, schedule,
checkpoint round trip (weights_only), atomic pruning, metrics truncation, run-dir rules."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from mamo.core.config import ConfigError
from mamo.trainer import checkpoint as ckpt
from mamo.trainer.config import load_run_config
from mamo.trainer.seeding import step_seed
from mamo.trainer.metrics import MetricsLogger, read_metrics, truncate_after
from mamo.trainer.optim import build_optimizer, build_scheduler, lr_factor, param_groups
from mamo.trainer.preflight import StartError, inspect_run_dir


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.temp = nn.Parameter(torch.tensor(0.07))
        self.register_buffer("queue", torch.randn(3, 4))
        self.register_buffer("teacher_w", torch.zeros(4, 4))


@pytest.mark.parametrize(
    "override, key",
    [
        ("optim.lr=-1", "optim.lr"),
        ("optim.lr=fast", "optim.lr"),
        ("train.grad_accum=0", "train.grad_accum"),
        ("train.precision=fp16", "train.precision"),
        ("train.stepz=3", "train.stepz"),
        ("optim.betas=[0.9, 1.5]", "optim.betas[1]"),
        ("model.preset=huge", "model.preset"),
        ("data.max_text_len=1000", "data.max_text_len"),
        ("train.parallel=zero3", "train.parallel"),
    ],
)
def test_bad_config_names_the_key(override, key):
    with pytest.raises(ConfigError) as ei:
        load_run_config("configs/tiny.yaml", [override])
    assert ei.value.key == key


def test_presets_load():
    for name in ("tiny", "small", "base"):
        cfg = load_run_config(f"configs/{name}.yaml")
        assert cfg.model.preset == name
        assert cfg.optim.weight_decay == 0.02


def test_param_groups_no_decay_on_norms_biases_embeddings_temperature():
    groups = param_groups(Toy(), 0.02)
    decay, no_decay = set(groups[0]["names"]), set(groups[1]["names"])
    assert decay == {"proj.weight"}
    assert no_decay == {"embed.weight", "proj.bias", "norm.weight", "norm.bias", "temp"}
    assert groups[1]["weight_decay"] == 0.0


def test_warmup_then_cosine():
    f = [lr_factor(s, warmup_steps=10, total_steps=110, min_lr_ratio=0.1, schedule="cosine") for s in range(111)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(f[:10], f[1:10]))  # rising during warm-up
    assert all(a >= b for a, b in zip(f[10:], f[11:]))  # then falling
    assert f[110] == pytest.approx(0.1)
    assert f[60] == pytest.approx(0.55)  # half-way: mid-point of 1 and 0.1


def test_step_seed_is_pure_and_distinct():
    assert step_seed(0, 5, 0, 0) == step_seed(0, 5, 0, 0)
    seeds = {step_seed(0, s, m, r) for s in range(20) for m in range(2) for r in range(2)}
    assert len(seeds) == 80


def test_checkpoint_roundtrip_weights_only(tmp_path):
    torch.manual_seed(0)
    model = Toy()
    cfg = load_run_config("configs/tiny.yaml", ["optim.warmup_steps=2"])
    opt = build_optimizer(model, cfg.optim)
    sched = build_scheduler(opt, cfg.optim, total_steps=10)
    for _ in range(3):
        model.proj(model.embed(torch.tensor([1, 2]))).sum().mul(model.temp).backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    rng = ckpt.rng_state()
    expect = (random.random(), np.random.rand(), torch.rand(1).item())
    meta = {"model": {"preset": "tiny"}, "vocab_id": "v", "num_concepts": 7}
    state = {"step": 3, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "rng_by_rank": [rng], "data_by_rank": [{"epoch": 0, "loader": {"position": 3}}]}
    path = ckpt.save_checkpoint(tmp_path, 3, model, state, meta, keep_last=2)
    assert path.name == "step_0000003" and (path / "model.safetensors").is_file()

    model2 = Toy()
    loaded = ckpt.load_checkpoint(path, model2, meta)  # torch.load(weights_only=True) inside
    for (n, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), n
    opt2 = build_optimizer(model2, cfg.optim)
    opt2.load_state_dict(loaded.state["optimizer"])
    sched2 = build_scheduler(opt2, cfg.optim, total_steps=10)
    sched2.load_state_dict(loaded.state["scheduler"])
    assert sched2.get_last_lr() == sched.get_last_lr()
    ckpt.set_rng_state(loaded.state["rng_by_rank"][0])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expect
    assert loaded.state["data_by_rank"][0]["loader"] == {"position": 3}


def test_optimizer_state_by_name_round_trip_and_legacy_format():
    """state.pt keeps the optimizer keyed by parameter name (what FSDP and DDP runs share);
    index-keyed state from before still loads."""
    torch.manual_seed(0)
    model = Toy()
    cfg = load_run_config("configs/tiny.yaml")
    opt = build_optimizer(model, cfg.optim)
    for _ in range(2):
        model.proj(model.embed(torch.tensor([1, 2]))).sum().mul(model.temp).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    by_name = ckpt.optimizer_state(model, opt)
    assert {"proj.weight", "embed.weight", "temp"} <= set(by_name["state"])
    for saved in (by_name, opt.state_dict()):
        fresh = build_optimizer(model, cfg.optim)
        ckpt.load_optimizer_state(model, fresh, saved)
        a, b = opt.state_dict(), fresh.state_dict()
        assert a["param_groups"] == b["param_groups"]
        for i, st in a["state"].items():
            for k, v in st.items():
                assert torch.equal(v, b["state"][i][k]), (i, k)


def test_incompatible_checkpoint_refused(tmp_path):
    model = Toy()
    meta = {"model": {"preset": "tiny", "embed_dim": 256}, "vocab_id": "aaa", "num_concepts": 7}
    path = ckpt.save_checkpoint(tmp_path, 1, model, {"step": 1}, meta, keep_last=1)
    with pytest.raises(ckpt.CheckpointError, match=r"another model \(model.preset: checkpoint 'tiny', config 'small'"):
        ckpt.load_checkpoint(path, Toy(), {**meta, "model": {"preset": "small", "embed_dim": 256}})
    with pytest.raises(ckpt.CheckpointError, match="another concept vocabulary"):
        ckpt.load_checkpoint(path, Toy(), {**meta, "vocab_id": "bbb"})


def test_keep_last_and_leftover_tmp(tmp_path):
    model = Toy()
    (tmp_path / "checkpoints" / ".tmp_step_0000009_123").mkdir(parents=True)  # a killed writer
    for s in (1, 2, 3, 4):
        ckpt.save_checkpoint(tmp_path, s, model, {"step": s}, {}, keep_last=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [3, 4]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_0000003", "step_0000004"]


def test_metrics_truncate_on_resume(tmp_path):
    log = MetricsLogger(tmp_path)
    for s in range(1, 6):
        log.log(s, {"loss": 1.0 / s, "nan": float("nan")})
    log.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "lo')  # cut by SIGKILL
    truncate_after(tmp_path / "metrics.jsonl", 3)
    recs = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in recs] == [1, 2, 3]
    assert recs[0]["nan"] == "nan"
    json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])


def test_run_dir_rules(tmp_path):
    fresh = tmp_path / "new"
    assert inspect_run_dir(fresh, resume=False).resume_from is None
    with pytest.raises(StartError, match="no checkpoint to resume"):
        inspect_run_dir(fresh, resume=True)
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    with pytest.raises(StartError, match="already holds notes.txt"):
        inspect_run_dir(used, resume=False)
    ckpt.save_checkpoint(used, 5, Toy(), {"step": 5}, {}, keep_last=1)
    assert inspect_run_dir(used, resume=False).resume_from.name == "step_0000005"


def test_training_state_estimate():
    """The per-rank state --check prints: fp32 weights + grads + two AdamW moments + teacher +
    queue; FSDP splits all but the queue and 0-dim parameters."""
    from mamo.model import MAMO
    from mamo.trainer.fsdp import training_state_bytes

    cfg = load_run_config("configs/base.yaml")
    with torch.device("meta"):
        model = MAMO(cfg.model, cfg.loss, 1000, load_pretrained=False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    buffer_bytes = sum(b.numel() * b.element_size() for b in model.buffers())
    ddp = training_state_bytes(model, 8, sharded=False)
    assert sum(ddp.values()) == 4 * 4 * trainable + buffer_bytes
    queue = ddp["other buffers"]
    assert queue == 4 * 2 * cfg.model.queue_size * cfg.model.embed_dim + 8  # two queues + pointer
    fsdp = training_state_bytes(model, 8, sharded=True)
    assert fsdp["other buffers"] == queue
    assert sum(fsdp.values()) - queue == pytest.approx((sum(ddp.values()) - queue) / 8, rel=1e-3)
