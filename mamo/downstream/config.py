"""Fine-tuning configuration (``configs/finetune/<task>.yaml``); defaults are the source of truth.

Light module (no torch): loaded with ``mamo.core.config.load_config(FinetuneConfig, path, overrides)``.
The backbone's architecture comes from the pre-training run's ``config.yaml`` when ``init`` is
given (the ``model`` section here then is ignored); ``model`` is used only for a randomly
initialised backbone (``init: null``, e.g. in tests and for the no-pre-training baseline).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mamo.core.config import check
from mamo.model.config import LossConfig, ModelConfig

TASKS = ("retrieval", "vqa", "nlvr2", "grounding")
Task = Literal["retrieval", "vqa", "nlvr2", "grounding"]


@dataclass
class TaskFiles:
    """Where a task's files are, relative to ``data.tasks_dir`` (``{split}`` is substituted).
    Defaults are the layout ``mamo.downstream.synthetic_tasks`` writes; point them at the
    public files (e.g. ``dataset_coco.json``) for real data."""

    karpathy: str = "karpathy/dataset_synthetic.json"
    vqa_questions: str = "vqa/v2_OpenEnded_mscoco_{split}_questions.json"
    vqa_annotations: str = "vqa/v2_mscoco_{split}_annotations.json"
    nlvr2: str = "nlvr2/{split}.json"
    refs: str = "refcoco+/refs.json"
    instances: str = "refcoco+/instances.json"


@dataclass
class TaskDataConfig:
    # Folder of the task files (synthetic: written by synthetic_tasks; created from
    # version_dir when missing and `synthetic` is true).
    tasks_dir: Path | None = None
    # Images: a dataset version (shards) + `image_map` (public name -> key), or a folder.
    version_dir: Path | None = None
    image_dir: Path | None = None
    image_map: str = "image_map.json"  # relative to tasks_dir
    synthetic: bool = True  # write tasks_dir from version_dir's scenes if it is missing
    files: TaskFiles = field(default_factory=TaskFiles)
    train_split: str = "train"
    eval_split: str = "test"
    image_size: int = 64
    max_text_len: int = 32
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def validate(self, prefix: str = "") -> None:
        p = f"{prefix}." if prefix else ""
        check(self.image_size >= 16, p + "image_size", f"must be >= 16, got {self.image_size}")
        check(self.max_text_len >= 4, p + "max_text_len", f"must be >= 4, got {self.max_text_len}")


@dataclass
class FinetuneOptim:
    lr: float = 1e-4          # backbone learning rate
    head_lr: float = 1e-3     # task head learning rate (fresh weights learn faster)
    weight_decay: float = 0.02
    warmup_steps: int = 10
    steps: int = 200
    batch_size: int = 32
    clip_grad_norm: float = 1.0

    def validate(self, prefix: str = "") -> None:
        p = f"{prefix}." if prefix else ""
        check(self.lr > 0, p + "lr", f"must be > 0, got {self.lr}")
        check(self.head_lr > 0, p + "head_lr", f"must be > 0, got {self.head_lr}")
        check(self.steps >= 0, p + "steps", f"must be >= 0, got {self.steps}")
        check(self.batch_size >= 2, p + "batch_size", f"must be >= 2, got {self.batch_size}")
        check(self.warmup_steps >= 0, p + "warmup_steps", f"must be >= 0, got {self.warmup_steps}")


@dataclass
class TaskOptions:
    vqa_max_answers: int = 3129       # answer vocabulary: the most frequent training answers
    retrieval_k: int = 16             # ITC top-k re-ranked by ITM (256 COCO, 128 Flickr)
    grounding_heatmaps: int = 8       # PNGs of heat maps written by evaluation
    # Grad-CAM uses the last fusion layer; "itm" weights attention by d(ITM)/d(attention)
    gradcam: Literal["itm", "attention"] = "itm"

    def validate(self, prefix: str = "") -> None:
        p = f"{prefix}." if prefix else ""
        check(self.vqa_max_answers >= 2, p + "vqa_max_answers", "must be >= 2")
        check(self.retrieval_k >= 1, p + "retrieval_k", "must be >= 1")


@dataclass
class FinetuneConfig:
    task: Task = "vqa"
    # Pre-trained weights: a run dir (runs/<name>), its final/ dir, or a model.safetensors.
    init: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    # Fine-tuning losses for retrieval/grounding (ITC + ITM; the MMM weight 0 by default).
    loss: LossConfig = field(default_factory=lambda: LossConfig(w_mmm=0.0, text_target="none"))
    data: TaskDataConfig = field(default_factory=TaskDataConfig)
    optim: FinetuneOptim = field(default_factory=FinetuneOptim)
    options: TaskOptions = field(default_factory=TaskOptions)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # CPU threads for torch (0 = torch's default). On a loaded shared CPU, 1 is often much
    # faster than the default (measured 0.6 s vs 8 s per tiny step at load 11 on 2 cores).
    threads: int = 0
    log_every: int = 20
    out_dir: Path = Path("runs/finetune")
    name: str | None = None  # default: the task name

    def validate(self, prefix: str = "") -> None:
        p = f"{prefix}." if prefix else ""
        check(self.task in TASKS, p + "task", f"must be one of {list(TASKS)}, got {self.task!r}")
        check(self.log_every >= 1, p + "log_every", "must be >= 1")
        check(self.threads >= 0, p + "threads", "must be >= 0")
