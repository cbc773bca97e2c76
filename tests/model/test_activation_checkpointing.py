"""Activation checkpointing of the blocks (train.activation_checkpointing): the same loss and
gradients as without it, dropout included, far fewer saved activations, names unchanged."""
from __future__ import annotations

import copy

import torch
from model_testdata import NUM_CONCEPTS, make_batch

from mamo.model import MAMO, LossConfig, ModelConfig
from mamo.trainer.activation_checkpointing import checkpoint_blocks, checkpointed_blocks, saved_activation_bytes


def _pair(dropout: float):
    torch.manual_seed(0)
    cfg = ModelConfig(preset="tiny", text_init=None, dropout=dropout)
    plain = MAMO(cfg, LossConfig(), num_concepts=NUM_CONCEPTS, load_pretrained=False).train()
    return plain, copy.deepcopy(plain), cfg


def _step(model, batch):
    torch.manual_seed(123)  # dropout draws
    out, saved = saved_activation_bytes(lambda: model(batch, generator_seed=7), model)
    out["loss"].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out["loss"].detach(), grads, saved


def test_same_loss_and_gradients_with_dropout_and_less_saved():
    plain, ac, cfg = _pair(dropout=0.1)
    names = list(ac.state_dict())
    n = checkpoint_blocks(ac)
    # online blocks only (vision + text + fusion); the momentum teacher's blocks have no grads
    assert n == len(checkpointed_blocks(ac)) == cfg.vision.depth + cfg.text.depth + cfg.fusion.depth
    assert checkpoint_blocks(ac) == n and list(ac.state_dict()) == names  # idempotent, same names
    batch = make_batch(8, size=cfg.vision.image_size)
    loss_a, grads_a, saved_a = _step(plain, batch)
    loss_b, grads_b, saved_b = _step(ac, batch)
    assert torch.equal(loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys()
    for k in grads_a:
        assert torch.equal(grads_a[k], grads_b[k]), k
    assert saved_b * 3 < saved_a, (saved_a, saved_b)


def test_no_grad_forward_is_untouched():
    _, ac, cfg = _pair(dropout=0.0)
    checkpoint_blocks(ac)
    ac.eval()
    batch = make_batch(4, size=cfg.vision.image_size)
    with torch.no_grad():
        _, saved = saved_activation_bytes(lambda: ac.encode_image(batch["image"]), ac)
    assert saved == 0
