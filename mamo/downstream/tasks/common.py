"""Shared pieces of the task loops: data context, text encoding, optimiser, batches, state."""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from mamo.downstream.config import FinetuneConfig
from mamo.downstream.images import ImageStore
from mamo.trainer.distributed import DistInfo, all_reduce_mean, any_rank, wrap_ddp


def _log(msg: str) -> None:
    print(f"[finetune] {msg}", flush=True)


@dataclass
class TaskState:
    """What fine-tuning adds to the backbone: a head (or None) and JSON-able metadata."""

    head: nn.Module | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class Context:
    """Paths, images, tokenizer and device for one task run."""

    def __init__(self, cfg: FinetuneConfig, log: Callable[[str], None] = _log):
        self.cfg = cfg
        self.log = log
        d = cfg.data
        if d.tasks_dir is None:
            raise ValueError("config key 'data.tasks_dir' must be set (folder of the task files)")
        self.tasks_dir = Path(d.tasks_dir)
        if d.synthetic and not (self.tasks_dir / "meta.json").is_file():
            if d.version_dir is None:
                raise ValueError("config key 'data.version_dir' must be set to write synthetic task files")
            from mamo.downstream.synthetic_tasks import write_synthetic_tasks

            write_synthetic_tasks(d.version_dir, self.tasks_dir, seed=cfg.seed, log=log)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        import torch.distributed as dist

        # Under torchrun (mamo.finetune joins the process group first): this rank's slice of
        # every batch, its own GPU, DDP in train_loop.
        self.rank, self.world_size = ((dist.get_rank(), dist.get_world_size())
                                      if dist.is_available() and dist.is_initialized() else (0, 1))
        if cfg.device == "auto":
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            self.device = torch.device(cfg.device)
        if self.device.type == "cuda" and self.device.index is None and self.world_size > 1:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.dist_info = DistInfo(rank=self.rank, world_size=self.world_size,
                                  local_rank=self.device.index or 0, device=self.device)
        self._images: ImageStore | None = None
        self._tokenizer = None
        self.history: list[dict[str, float]] = []  # per-step training log (metrics.jsonl)

    def path(self, template: str, split: str | None = None) -> Path:
        return self.tasks_dir / (template.format(split=split) if split is not None else template)

    @property
    def images(self) -> ImageStore:
        if self._images is None:
            d = self.cfg.data
            if d.image_dir is not None:
                self._images = ImageStore.from_folder(d.image_dir)
            elif d.version_dir is not None:
                self._images = ImageStore.from_shards(d.version_dir, self.tasks_dir / d.image_map)
            else:
                raise ValueError("config key 'data.version_dir' or 'data.image_dir' must be set")
        return self._images

    def image_tensor(self, names: Sequence[str]) -> torch.Tensor:
        d = self.cfg.data
        return self.images.tensor(names, d.image_size, d.mean, d.std).to(self.device)

    def text(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)`` on the device, padded to the batch's longest
        (to ``data.max_text_len`` with several processes)."""
        from concepts.encode import encode_batch
        from concepts.tokenizer import load_tokenizer

        if self._tokenizer is None:
            self._tokenizer = load_tokenizer()
        enc = encode_batch(list(texts), [[] for _ in texts], self._tokenizer, self.cfg.data.max_text_len)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        # Under DDP every rank pads to the same length: the model all-gathers text features
        # (ITC, ITM hard negatives), which needs equal shapes across ranks.
        n = ids.shape[1] if self.world_size > 1 else (int(mask.sum(1).max().item()) if len(texts) else 0)
        return ids[:, :n].to(self.device), mask[:, :n].to(self.device)


def batch_indices(n: int, batch_size: int, steps: int, seed: int) -> Iterator[torch.Tensor]:
    """``steps`` batches of indices: epochs of random permutations (seeded)."""
    if n == 0:
        raise ValueError("no training examples")
    g = torch.Generator().manual_seed(seed)
    perm, pos = torch.randperm(n, generator=g), 0
    bs = min(batch_size, n)
    for _ in range(steps):
        if pos + bs > n:
            perm, pos = torch.randperm(n, generator=g), 0
        yield perm[pos: pos + bs]
        pos += bs


def build_optimizer(cfg: FinetuneConfig, backbone: nn.Module, head: nn.Module | None
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW: backbone at ``optim.lr``, head at ``optim.head_lr``; no decay on norms/biases;
    linear warm-up then cosine to 0."""
    o = cfg.optim
    groups = []
    for module, lr in ((backbone, o.lr), (head, o.head_lr)):
        if module is None:
            continue
        decay, no_decay = [], []
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim < 2 or "norm" in name or "embed" in name or name == "temp" else decay).append(p)
        groups += [{"params": decay, "lr": lr, "weight_decay": o.weight_decay},
                   {"params": no_decay, "lr": lr, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups)
    total = max(1, o.steps)

    def factor(step: int) -> float:
        if step < o.warmup_steps:
            return (step + 1) / (o.warmup_steps + 1)
        t = (step - o.warmup_steps) / max(1, total - o.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


class _TaskStep(nn.Module):
    """The backbone and head as one module whose forward is a task's step, so that DDP sees
    the step's forward (a task calls the model's encoders directly, not model.forward)."""

    def __init__(self, model: nn.Module, head: nn.Module | None, step_fn):
        super().__init__()
        self.model, self.head, self.step_fn = model, head, step_fn

    def forward(self, idx: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        return self.step_fn(idx, step)


def train_loop(ctx: Context, model: nn.Module, head: nn.Module | None, n_examples: int,
               step_fn: Callable[[torch.Tensor, int], dict[str, torch.Tensor]],
               momentum: bool = False) -> list[dict[str, float]]:
    """Run ``optim.steps`` steps of ``step_fn(indices, step) -> {"loss", ...}``; returns the log.

    With several processes each rank runs its slice of every (seeded, identical) global batch
    under DDP, which averages the gradients; the logged terms are averaged over ranks."""
    cfg = ctx.cfg
    model.train()
    if head is not None:
        head.train()
    run = step_fn
    if ctx.world_size > 1:
        if cfg.optim.batch_size < ctx.world_size:
            raise ValueError(f"config key 'optim.batch_size': {cfg.optim.batch_size} is less than the "
                             f"{ctx.world_size} processes; each needs at least one example per step")
        # As in pre-training: momentum copy and queue stay equal on every rank by construction.
        run = wrap_ddp(_TaskStep(model, head, step_fn), ctx.dist_info, find_unused=True)
    opt, sched = build_optimizer(cfg, model, head)
    params = [p for g in opt.param_groups for p in g["params"]]
    history: list[dict[str, float]] = []
    t0 = time.time()
    for step, idx in enumerate(batch_indices(n_examples, cfg.optim.batch_size, cfg.optim.steps, cfg.seed)):
        out = run(idx[ctx.rank::ctx.world_size], step)
        loss = out["loss"]
        bad = not bool(torch.isfinite(loss))
        bad = any_rank(bad, ctx.dist_info)  # every rank stops together (none left in a collective)
        if bad:
            raise RuntimeError(f"non-finite loss at step {step}: {loss.item()}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.optim.clip_grad_norm)
        opt.step()
        sched.step()
        if momentum and hasattr(model, "momentum_update"):
            model.momentum_update()
        terms = {k: float(v.detach()) for k, v in out.items() if torch.is_tensor(v) and v.numel() == 1}
        terms = all_reduce_mean(terms, ctx.dist_info)  # identity in a single process
        row = {"step": step + 1, **terms}
        history.append(row)
        ctx.history.append(row)
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.optim.steps:
            shown = " ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "step")
            ctx.log(f"{cfg.task} step {step + 1}/{cfg.optim.steps} {shown} ({time.time() - t0:.1f}s)")
    model.eval()
    if head is not None:
        head.eval()
    return history


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
