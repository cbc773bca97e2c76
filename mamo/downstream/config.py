"""Fine-tuning configuration (``configs/finetune/<task>.yaml``); defaults are the source of truth.

Light module (no torch): loaded with ``mamo.core.config.load_config(FinetuneConfig, path, overrides)``.
The backbone's architecture comes from the pre-training run's ``config.yaml`` when ``init`` is
given (the ``model`` section here then is ignored); ``model`` is used only for a randomly
initialised backbone (``init: null``, e.g. in tests and for the no-pre-training baseline).
"""
from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import Field

from mamo.core.config import section
from mamo.model.config import LossConfig, ModelConfig

Task = Literal["retrieval", "vqa", "nlvr2", "grounding"]
TASKS: tuple[str, ...] = get_args(Task)
AtLeast0 = Annotated[int, Field(ge=0)]


@section
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


@section
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
    image_size: Annotated[int, Field(ge=16)] = 64
    max_text_len: Annotated[int, Field(ge=4)] = 32
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


@section
class FinetuneOptim:
    lr: Annotated[float, Field(gt=0)] = 1e-4       # backbone learning rate
    # task head learning rate (fresh weights learn faster)
    head_lr: Annotated[float, Field(gt=0)] = 1e-3
    weight_decay: float = 0.02
    warmup_steps: AtLeast0 = 10
    steps: AtLeast0 = 200
    batch_size: Annotated[int, Field(ge=2)] = 32
    clip_grad_norm: float = 1.0


@section
class TaskOptions:
    # answer vocabulary: the most frequent training answers
    vqa_max_answers: Annotated[int, Field(ge=2)] = 3129
    # ITC top-k re-ranked by ITM (256 COCO, 128 Flickr)
    retrieval_k: Annotated[int, Field(ge=1)] = 16
    grounding_heatmaps: int = 8       # PNGs of heat maps written by evaluation
    # Grad-CAM uses the last fusion layer; "itm" weights attention by d(ITM)/d(attention)
    gradcam: Literal["itm", "attention"] = "itm"


@section
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
    threads: AtLeast0 = 0
    log_every: Annotated[int, Field(ge=1)] = 20
    out_dir: Path = Path("runs/finetune")
    name: str | None = None  # default: the task name
