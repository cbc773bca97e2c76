"""MAMO's method settings (issue 15): warm-ups of w_mmm and alpha, the implicit target's K
relative to the fusion depth, the content-word share of text masking."""
import pytest
import torch

from mamo.model.config import LossConfig
from mamo.model.mamo import ramp
from mamo.model.masking import maskable_tokens, text_mask
from model_testdata import make_batch, micro_model


def test_ramp():
    assert ramp(0.0, 0.1) == 0.0 and ramp(0.05, 0.1) == pytest.approx(0.5) and ramp(0.5, 0.1) == 1.0
    assert ramp(0.0, 0.0) == 1.0  # no warm-up: full from the start


def test_the_draws_carry_the_warmed_up_weights():
    model = micro_model(["text_target=concept", "w_mmm=2.0", "alpha=0.4", "mmm_warmup=0.1",
                         "alpha_warmup=0.2"]).train()
    batch = make_batch(batch=4, size=32)
    model.set_progress(0, 100)
    d = model.draw(batch, 1)
    assert float(d["mmm_weight"]) == 0.0 and float(d["alpha"]) == 0.0
    model.set_progress(5, 100)
    d = model.draw(batch, 1)
    assert float(d["mmm_weight"]) == pytest.approx(1.0) and float(d["alpha"]) == pytest.approx(0.1)
    model.set_progress(50, 100)
    d = model.draw(batch, 1)
    assert float(d["mmm_weight"]) == pytest.approx(2.0) and float(d["alpha"]) == pytest.approx(0.4)
    # at step 0 the masked-modelling loss is computed but weighs nothing in the total
    model.set_progress(0, 100)
    out = model(batch, 3)
    assert float(out["mmm"]) > 0
    torch.testing.assert_close(out["loss"], out["itc"] + out["itm"])


@pytest.mark.parametrize("depth, k, expected", [(3, 0, 2), (4, 0, 2), (6, 0, 3), (1, 0, 1), (3, 5, 3), (4, 1, 1)])
def test_implicit_layers_relative_to_the_fusion_depth(depth, k, expected):
    assert LossConfig(implicit_top_k=k).implicit_layers(depth) == expected


def test_content_share_masks_content_tokens_first():
    batch = make_batch(batch=16, length=20)
    ids, am = batch["input_ids"], batch["attention_mask"]
    eligible = maskable_tokens(ids, am)
    content = torch.zeros_like(eligible)
    content[:, 1:4] = True  # three content tokens per row
    content &= eligible
    uniform = text_mask(ids, am, 0.3, seed=5)
    assert torch.equal(text_mask(ids, am, 0.3, seed=5, content=content, content_share=0.0), uniform)
    biased = text_mask(ids, am, 0.3, seed=5, content=content, content_share=1.0)
    assert torch.equal(biased.sum(1), uniform.sum(1))  # the same number per row
    assert not (biased & ~eligible).any()
    k = uniform.sum(1)
    # every row masks min(k, its content tokens) content tokens, more than uniform does overall
    assert torch.equal((biased & content).sum(1), torch.minimum(k, content.sum(1)))
    assert (biased & content).sum() > (uniform & content).sum()
