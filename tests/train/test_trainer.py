"""The shared loop on a toy job (no data, a second per test): a run stopped by a signal and
continued logs the steps of an uninterrupted one; fine-tuning's settings map onto the same
optimizer groups and schedule as pre-training's."""
from __future__ import annotations

import os
import signal

import pytest
import torch
from torch import nn

from mamo.run_dir import RunDir
from mamo.trainer.batching import IndexBatches
from mamo.trainer.config import OptimConfig, TrainConfig
from mamo.trainer.distributed import init_distributed
from mamo.trainer.metrics import read_metrics
from mamo.trainer.optim import lr_factor
from mamo.trainer.trainer import Trainer, TrainingJob, TrainingStopped


class ToyTask(nn.Module):
    """Regression on fixed data; ``forward(indices, seed)`` like a fine-tuning step."""

    def __init__(self, stop_at: int | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(16, 8)
        self.proj = nn.Linear(8, 1)
        self.head = nn.Linear(8, 1)
        self.x = torch.randn(16, 8)
        self.calls, self.stop_at = 0, stop_at

    def forward(self, idx: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
        self.calls += 1
        if self.calls == self.stop_at:  # a scheduler's SIGTERM arrives during this step
            os.kill(os.getpid(), signal.SIGTERM)
        g = torch.Generator().manual_seed(seed)
        noise = 0.01 * torch.randn(len(idx), 1, generator=g)
        y = self.proj(self.x[idx] + self.embed(idx)) + self.head(self.x[idx])
        return {"loss": ((y - 1.0 + noise) ** 2).mean()}


def _job(run_dir, model, steps=6, resume_from=None) -> TrainingJob:
    return TrainingJob(model=model, stream=IndexBatches(16, 4, seed=0), run_dir=RunDir(run_dir), total_steps=steps,
                       meta={"model": {"toy": 1}}, samples_per_step=4, resume_from=resume_from,
                       lr_by_prefix={"head.": 1e-2})


def _trainer(job: TrainingJob) -> Trainer:
    tc = TrainConfig(steps=job.total_steps, ckpt_every=0, keep_last=1, precision="fp32", device="cpu")
    return Trainer(job, tc, OptimConfig(lr=1e-3, warmup_steps=2), init_distributed("cpu"))


def test_stopped_and_continued_run_logs_the_uninterrupted_steps(tmp_path):
    ref = tmp_path / "ref"
    _trainer(_job(ref, ToyTask())).train()
    run = tmp_path / "run"
    with pytest.raises(TrainingStopped) as e:
        _trainer(_job(run, ToyTask(stop_at=3))).train()
    assert e.value.step == 3 and e.value.exit_code == 128 + signal.SIGTERM
    ck = run / "checkpoints" / "step_0000003"
    assert (ck / "state.pt").is_file()
    job = _job(run, ToyTask(), resume_from=ck)
    job.stream.load_state_dict(torch.load(ck / "state.pt", weights_only=True)["data_by_rank"][0])
    trainer = _trainer(job)
    assert trainer.step == 3
    trainer.train()
    got, want = read_metrics(run / "metrics.jsonl"), read_metrics(ref / "metrics.jsonl")
    assert [r["step"] for r in got] == list(range(1, 7))
    for a, b in zip(got, want):
        assert (a["loss"], a["lr"], a["grad_norm"]) == (b["loss"], b["lr"], b["grad_norm"]), a["step"]


def test_one_set_of_optimizer_groups_and_one_schedule(tmp_path):
    trainer = _trainer(_job(tmp_path, ToyTask()))
    groups = [(g["lr"], g["weight_decay"], len(g["params"])) for g in trainer.optimizer.param_groups]
    # backbone: decayed proj.weight / undecayed embedding + bias; head at its own lr
    assert groups == [(1e-3 * 0.5, 0.02, 1), (1e-3 * 0.5, 0.0, 2), (1e-2 * 0.5, 0.02, 1), (1e-2 * 0.5, 0.0, 1)]
    assert lr_factor(0, 2, 6, 0.1, "cosine") == 0.5  # warm-up (step + 1) / warmup_steps


def test_finetune_settings_are_the_trainers():
    from mamo.core.config import load_config
    from mamo.downstream.config import FinetuneConfig
    from mamo.finetune import loop_config

    cfg = load_config(FinetuneConfig, None, ["optim.steps=50", "optim.warmup_steps=5", "seed=3", "log_every=7"])
    train, optim = loop_config(cfg)
    assert (train.steps, train.seed, train.log_every, train.ddp_find_unused) == (50, 3, 7, True)
    assert (optim.lr, optim.warmup_steps, optim.min_lr_ratio, optim.schedule) == (cfg.optim.lr, 5, 0.0, "cosine")


def test_optimizer_state_of_the_former_grouping_still_loads():
    """Checkpoints written under the former name-based rule (the patch-embedding conv was not
    decayed) continue with their moments under the module-type rule's groups."""
    from mamo.trainer import checkpoint as ckpt
    from mamo.trainer.optim import build_optimizer

    class Patchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch_embed, self.lin, self.norm = nn.Conv2d(3, 4, 2), nn.Linear(4, 4), nn.LayerNorm(4)

    m = Patchy()
    old = torch.optim.AdamW([{"params": [m.lin.weight], "weight_decay": 0.02},
                             {"params": [m.patch_embed.weight, m.patch_embed.bias, m.lin.bias, m.norm.weight,
                                         m.norm.bias], "weight_decay": 0.0}], lr=1e-3)
    m.lin(m.norm(m.patch_embed(torch.randn(1, 3, 4, 4)).mean((2, 3)))).sum().backward()
    old.step()
    old.zero_grad(set_to_none=True)
    new = build_optimizer(m, OptimConfig())
    ckpt.load_optimizer_state(m, new, ckpt.optimizer_state(m, old))
    assert [(g["weight_decay"], len(g["params"])) for g in new.param_groups] == [(0.02, 2), (0.0, 4)]
    assert torch.equal(new.state[m.patch_embed.weight]["exp_avg"], old.state[m.patch_embed.weight]["exp_avg"])
