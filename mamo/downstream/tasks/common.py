"""What the tasks share: the data context (paths, images, tokenizer, device), the state a
fine-tuning adds to the backbone, and the small interface through which a task is trained by
the shared trainer (``TaskTraining``, ``TaskModel``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from mamo.core import files
from mamo.downstream.config import FinetuneConfig
from mamo.downstream.images import ImageStore


@dataclass
class TaskState:
    """What fine-tuning adds to the backbone: a head (or None) and JSON-able metadata."""

    head: nn.Module | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class Context:
    """Paths, images, tokenizer and device for one task run."""

    def __init__(self, cfg: FinetuneConfig):
        self.cfg = cfg
        d = cfg.data
        if d.tasks_dir is None:
            raise ValueError("config key 'data.tasks_dir' must be set (folder of the task files)")
        self.tasks_dir = Path(d.tasks_dir)
        if d.synthetic and not (self.tasks_dir / "meta.json").is_file():
            if d.version_dir is None:
                raise ValueError("config key 'data.version_dir' must be set to write synthetic task files")
            from mamo.downstream.synthetic_tasks import write_synthetic_tasks

            write_synthetic_tasks(d.version_dir, self.tasks_dir, seed=cfg.seed)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        import torch.distributed as dist

        # Under torchrun (mamo.finetune joins the process group first): this rank's slice of
        # every batch, its own GPU, DDP in the trainer.
        self.rank, self.world_size = ((dist.get_rank(), dist.get_world_size())
                                      if dist.is_available() and dist.is_initialized() else (0, 1))
        if cfg.device == "auto":
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            self.device = torch.device(cfg.device)
        if self.device.type == "cuda" and self.device.index is None and self.world_size > 1:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self._images: ImageStore | None = None
        self._tokenizer = None

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


@dataclass
class TaskTraining:
    """What a task brings to the shared trainer (``mamo.trainer.trainer``); the loop, the
    optimizer groups, the schedule, checkpoints and DDP are the trainer's."""

    n_examples: int  # training examples; batches are seeded permutations of their indices
    # (indices of this rank's examples [cpu], seed of the step's random draws) -> {"loss", ...}
    step: Callable[[torch.Tensor, int], dict[str, torch.Tensor]]
    head: nn.Module | None = None  # trained at optim.head_lr; saved as head.safetensors
    meta: dict[str, Any] = field(default_factory=dict)  # task.json (with the final loss)
    momentum: bool = False  # update the backbone's EMA teacher after each step (ITC/ITM tasks)


class TaskModel(nn.Module):
    """The backbone and the head as one module whose forward is the task's step: what the
    trainer optimises, checkpoints and wraps in DDP (a task calls the backbone's encoders
    directly, not ``model.forward``)."""

    def __init__(self, model: nn.Module, task: TaskTraining):
        super().__init__()
        self.model, self.head = model, task.head
        self.task = task

    def forward(self, idx: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
        return self.task.step(idx.cpu(), seed)  # indices pick examples held on the host

    def momentum_update(self) -> None:
        if self.task.momentum:
            self.model.momentum_update()


def write_json(path: Path, obj: Any) -> None:
    """The fine-tuning outputs' JSON style (atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_json(path, obj, indent=1, sort_keys=True)
