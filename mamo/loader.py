"""The one checkpoint-to-model loader, and the public ``mamo.load``.

A saved model is rebuilt from its own config: the model section of ``meta.json`` (written by
the trainer beside every checkpoint), the losses and data settings of the config.yaml that
belongs to it (``final/config.yaml``, the run's ``config.yaml`` for ``checkpoints/step_N``, or
a fine-tuned dir's own), and the concept-head size from ``meta.json``. Old checkpoints whose
meta.json lacks the model section fall back to that config.yaml. Weights load strictly
through ``mamo.trainer.checkpoint.load_weights``: a model built from its own config fits them.

(``mamo.model.loading`` is something else: it imports *pretrained BERT/ViT* weights into a
freshly built model before pre-training.)
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import yaml

from mamo.core.config import from_dict
from mamo.model.config import LossConfig, ModelConfig
from mamo.run_dir import CONFIG, META, WEIGHTS, CheckpointDir, RunDir

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from mamo.model.mamo import MAMO

# Data settings the eval transform needs when a config lacks them (mamo.data.config defaults).
_CONCEPT_HEAD = "text_head.decoder.weight"  # [num_concepts, width] (text_target=concept or concept_mlm)
_DATA_DEFAULTS = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


@dataclass(frozen=True)
class Checkpoint:
    """A saved model found from a path: where its weights are and what built them."""

    dir: CheckpointDir
    model: ModelConfig
    loss: LossConfig
    num_concepts: int
    run: RunDir | None  # the run dir above it (None for a lone or fine-tuned dir)
    config: Path | None  # the config.yaml read for the losses and data settings
    data: dict[str, Any] = field(default_factory=dict)  # that config's data section (raw)

    @property
    def max_text_len(self) -> int:
        """Token length of the texts the model was trained on (padding included)."""
        return int(self.data.get("max_text_len") or self.model.text.max_positions)


def weights_dir(source: str | Path) -> CheckpointDir:
    """The checkpoint dir for a run dir, a checkpoint/final/fine-tuned dir or a weights file."""
    p = Path(source)
    if p.is_file():
        if p.name != WEIGHTS:
            raise FileNotFoundError(f"{source}: a weights file must be named {WEIGHTS} (with its {META})")
        return CheckpointDir(p.parent)
    if (p / WEIGHTS).is_file():
        return CheckpointDir(p)
    final = RunDir(p).final
    if final.weights.is_file():
        return final
    raise FileNotFoundError(f"{source}: no {WEIGHTS} there, nor in {final.path} (has training finished?)")


def _config_for(ckpt: CheckpointDir) -> tuple[Path | None, RunDir | None]:
    """The config.yaml that belongs to a checkpoint dir, and the run dir above it."""
    run = RunDir.above(ckpt.path)
    if run is not None and run.path == ckpt.path:  # a fine-tuned dir: weights and config.yaml together
        run = None
    for path in (ckpt.config, run.config if run else None):
        if path is not None and path.is_file():
            return path, run
    return None, run


def _num_concepts_of(weights: Path) -> int:
    """The concept head's size from the weights' header (old checkpoints without meta.json)."""
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as f:
        if _CONCEPT_HEAD in f.keys():
            return int(f.get_slice(_CONCEPT_HEAD).get_shape()[0])
    return 0


def resolve(source: str | Path) -> Checkpoint:
    """Find a saved model and read its configs (no torch, no weights read)."""
    ckpt = weights_dir(source)
    meta = json.loads(ckpt.meta.read_text(encoding="utf-8")) if ckpt.meta.is_file() else {}
    config_path, run = _config_for(ckpt)
    cfg = yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path else {}
    cfg = cfg or {}
    model_dict = meta.get("model") or cfg.get("model")
    if model_dict is None:
        raise FileNotFoundError(f"{ckpt.path}: no model config in {META} nor in a {CONFIG} beside it")
    where = ckpt.meta if meta.get("model") else config_path
    model = from_dict(ModelConfig, model_dict, prefix=f"{where}: model")
    # the weights come from the checkpoint: never load BERT/ViT initial weights under them
    model = replace(model, text_init=None, vision_init=None)
    loss_dict = meta.get("loss") or cfg.get("loss") or {}
    loss = from_dict(LossConfig, loss_dict, prefix="loss")
    num_concepts = meta.get("num_concepts")
    if num_concepts is None:
        num_concepts = _num_concepts_of(ckpt.weights)
    return Checkpoint(ckpt, model, loss, int(num_concepts), run, config_path, dict(cfg.get("data") or {}))


def build(ckpt: Checkpoint, device: str | torch.device = "cpu", attn_impl: str | None = None) -> MAMO:
    """``MAMO`` from the checkpoint's config with its weights, in eval mode on ``device``.

    ``attn_impl`` replaces the trained one (it does not change the weights); a model trained
    with the Triton kernels runs with ``sdpa`` off CUDA (the same attention, computed by torch).
    """
    import torch

    from mamo.model.mamo import MAMO
    from mamo.trainer.checkpoint import load_weights

    device = torch.device(device)
    impl = attn_impl or ckpt.model.attn_impl
    if impl == "triton" and device.type != "cuda":
        impl = "sdpa"
    model = MAMO(replace(ckpt.model, attn_impl=impl), ckpt.loss, ckpt.num_concepts, load_pretrained=False)
    load_weights(model, ckpt.dir.path)
    return model.to(device).eval()


def load_model(source: str | Path, device: str | torch.device = "cpu", attn_impl: str | None = None
               ) -> tuple[MAMO, Checkpoint]:
    """``(model, checkpoint)`` for a run dir, a checkpoint dir or a ``model.safetensors``."""
    ckpt = resolve(source)
    return build(ckpt, device, attn_impl), ckpt


# ---------------------------------------------------------------- the public API


@dataclass(frozen=True)
class Preprocess:
    """PIL image -> ``float32 [3, S, S]``: the evaluation's transform (centre crop, resize,
    normalise) with the model's image size and the run's data settings."""

    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_fraction: float = 1.0

    def __call__(self, image: Image.Image) -> torch.Tensor:
        from mamo.evaluation.data import preprocess

        return preprocess(image, self.image_size, self.mean, self.std, self.crop_fraction)

    @classmethod
    def of(cls, ckpt: Checkpoint) -> Preprocess:
        d = ckpt.data
        crop = float((d.get("augment") or {}).get("eval_crop_fraction", 1.0))
        return cls(int(ckpt.model.vision.image_size), tuple(d.get("mean") or _DATA_DEFAULTS["mean"]),
                   tuple(d.get("std") or _DATA_DEFAULTS["std"]), crop)


class TextTokenizer:
    """Captions -> ``{"input_ids", "attention_mask"}`` ``[n, max_len]`` (``[CLS] ... [SEP]``,
    padded to the model's text length), what ``MAMO.similarity``/``match_score`` take."""

    def __init__(self, max_len: int, tokenizer: Any = None):
        from concepts.tokenizer import load_tokenizer

        self.max_len = max_len
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer()

    def __call__(self, texts: str | Sequence[str]) -> dict[str, torch.Tensor]:
        from concepts.encode import encode_batch

        texts = [texts] if isinstance(texts, str) else list(texts)
        enc = encode_batch(texts, [[] for _ in texts], self.tokenizer, self.max_len)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def load(source: str | Path, device: str | torch.device = "cpu"
         ) -> tuple[MAMO, Callable[[Image.Image], torch.Tensor], TextTokenizer]:
    """``model, preprocess, tokenizer = mamo.load("runs/demo/tiny")``.

    ``source``: a run dir (its ``final/``), a checkpoint dir (``final/``,
    ``checkpoints/step_N``, a fine-tuned dir) or its ``model.safetensors``. The model is in
    eval mode; ``model.similarity(images, texts)`` and ``model.match_score(images, texts)``
    take ``torch.stack([preprocess(img) ...])`` and ``tokenizer([...])``.
    """
    model, ckpt = load_model(source, device)
    return model, Preprocess.of(ckpt), TextTokenizer(ckpt.max_text_len)
