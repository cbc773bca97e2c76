"""text_target=concept_mlm (issue 15): the concept head at masked tokens with a concept label,
a token-MLM head at the masked tokens without one; each head gets gradient only from its
own positions, and the two terms are logged apart (mmm_concept, mmm_mlm)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from model_testdata import NUM_CONCEPTS, make_batch, micro_model
from mamo.model.heads import ClassifierHead
from mamo.objectives import mmm

VOCAB = 50


def _hand_built(seed: int = 0):
    """2 captions of 6 tokens; which masked positions carry a concept is known."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2, 6, 8, generator=g, requires_grad=True)
    ids = torch.randint(5, VOCAB, (2, 6), generator=g)
    labels = torch.full((2, 6), -100)
    labels[0, 1], labels[0, 3], labels[1, 2] = 4, 7, 1  # concept-labelled tokens
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, [1, 2]] = True  # row 0: one concept, one concept-less masked token
    mask[1, [2, 4]] = True  # row 1: the same; label at 0,3 and the rest are unmasked
    concept_pos = mask & (labels >= 0)
    plain_pos = mask & (labels < 0)
    assert concept_pos.sum() == 2 and plain_pos.sum() == 2
    torch.manual_seed(seed)
    heads = ClassifierHead(8, 9), ClassifierHead(8, VOCAB)
    return hidden, ids, labels, mask, concept_pos, plain_pos, heads


@pytest.mark.parametrize("per_sample", [None, 2, 3])
def test_each_term_is_its_heads_ce_over_its_own_positions(per_sample):
    hidden, ids, labels, mask, concept_pos, plain_pos, (ch, mh) = _hand_built()
    loss_c, loss_m = mmm.concept_mlm_losses(hidden, labels, ids, mask, ch, mh, per_sample=per_sample)
    want_c = F.cross_entropy(ch(hidden[concept_pos]), labels[concept_pos])
    want_m = F.cross_entropy(mh(hidden[plain_pos]), ids[plain_pos])
    torch.testing.assert_close(loss_c, want_c)
    torch.testing.assert_close(loss_m, want_m)


def test_each_head_gets_gradient_only_from_its_own_positions():
    hidden, ids, labels, mask, concept_pos, plain_pos, (ch, mh) = _hand_built()
    loss_c, loss_m = mmm.concept_mlm_losses(hidden, labels, ids, mask, ch, mh, per_sample=2)

    (g_c,) = torch.autograd.grad(loss_c, hidden, retain_graph=True)
    assert (g_c.abs().sum(-1) > 0).eq(concept_pos).all()  # exactly the concept-labelled masked rows
    assert all(torch.autograd.grad(loss_c, list(mh.parameters()), retain_graph=True, allow_unused=True)[i] is None
               for i in range(len(list(mh.parameters()))))

    (g_m,) = torch.autograd.grad(loss_m, hidden, retain_graph=True)
    assert (g_m.abs().sum(-1) > 0).eq(plain_pos).all()  # exactly the concept-less masked rows
    grads = torch.autograd.grad(loss_m, list(ch.parameters()), allow_unused=True)
    assert all(g is None for g in grads)


def test_a_batch_without_one_kind_of_position_gives_zero_in_the_graph():
    hidden, ids, labels, mask, concept_pos, plain_pos, (ch, mh) = _hand_built()
    loss_c, loss_m = mmm.concept_mlm_losses(hidden, labels, ids, concept_pos, ch, mh, per_sample=2)
    assert loss_m == 0 and loss_m.requires_grad and loss_c > 0
    loss_c, loss_m = mmm.concept_mlm_losses(hidden, labels, ids, plain_pos, ch, mh, per_sample=2)
    assert loss_c == 0 and loss_c.requires_grad and loss_m > 0
    assert mmm.concept_mlm_losses(hidden, labels, ids, mask, ch, None)[1] is None


def _step_with_mask(model, batch, mask):
    draws = model.draw(batch, 0)
    draws["text_mask"] = mask
    return model.step(batch, draws)


def test_model_step_terms_weights_and_head_gradients():
    model = micro_model(["text_target=concept_mlm", "lambda_t=0.5", "lambda_t_mlm=0.3"])
    assert model.mlm_head is not None and model.mlm_head.decoder.out_features == 30522
    assert model.text_head.decoder.out_features == NUM_CONCEPTS
    b = make_batch(size=32)
    labels = b["concept_labels"]  # concepts at positions 2 (colour) and 3 (shape)
    both = torch.zeros_like(labels, dtype=torch.bool)
    both[:, [1, 2]] = True  # "a" (no concept) and the colour word
    out = _step_with_mask(model, b, both)
    assert out["mmm_concept"] > 0 and out["mmm_mlm"] > 5.0  # ~ln(30522) untrained
    lc = model.loss_cfg
    want = (out["itc"] + out["itm"] + out["mmm_implicit"] + lc.lambda_v * out["mmm_visual"]
            + 0.5 * (out["mmm_concept"] + 0.3 * out["mmm_mlm"]))
    torch.testing.assert_close(out["loss"].detach(), want)
    out["loss"].backward()  # every parameter in the graph: nothing unused for DDP
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad(set_to_none=True)

    for masked_pos, trained, untouched in (([2, 3], model.text_head, model.mlm_head),
                                           ([1], model.mlm_head, model.text_head)):
        mask = torch.zeros_like(both)
        mask[:, masked_pos] = True
        out = _step_with_mask(model, b, mask)
        out["loss"].backward()
        assert trained.decoder.weight.grad.abs().sum() > 0
        assert untouched.decoder.weight.grad.abs().sum() == 0
        model.zero_grad(set_to_none=True)


def test_lambda_t_mlm_zero_has_no_mlm_head_and_heads_follow_the_losses():
    from mamo.model import loss_config

    model = micro_model(["text_target=concept_mlm", "lambda_t_mlm=0"])
    assert model.mlm_head is None
    out = model(make_batch(size=32), generator_seed=0)
    assert "mmm_concept" in out and "mmm_mlm" not in out
    assert micro_model(["text_target=concept"]).mlm_head is None

    # a concept_mlm model trains on with concept targets: the MLM head is dropped
    model = micro_model(["text_target=concept_mlm"])
    assert model.use_losses(loss_config(["text_target=concept"])) == ["mlm_head"]
    # fine-tuning without MMM drops both text heads
    model = micro_model(["text_target=concept_mlm"])
    assert set(model.use_losses(loss_config(["w_mmm=0", "text_target=none"]))) >= {"text_head", "mlm_head"}
    # ... but not with token MLM in the text head (it predicts concepts), and a concept model
    # cannot grow an (untrained) MLM head
    with pytest.raises(ValueError, match="predicts 'concept_mlm' targets"):
        micro_model(["text_target=concept_mlm"]).use_losses(loss_config(["text_target=mlm"]))
    with pytest.raises(ValueError, match="mlm_head"):
        micro_model(["text_target=concept"]).use_losses(loss_config(["text_target=concept_mlm"]))


@pytest.mark.parametrize("target", ["concept", "concept_mlm"])
def test_a_run_with_a_concept_head_needs_concept_labels(target):
    from mamo.core.config import ConfigError
    from mamo.trainer.config import load_run_config

    with pytest.raises(ConfigError, match=f"text_target={target} needs concept labels"):
        load_run_config(None, [f"loss.text_target={target}", "data.vocab_id=none"])
    load_run_config(None, ["loss.text_target=mlm", "data.vocab_id=none"])
