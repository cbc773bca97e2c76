"""Joint masking: exact counts, block structure, special tokens untouched, seeded."""
from __future__ import annotations

import torch

from mamo.model.masking import MASK_ID, apply_text_mask, block_mask, text_mask


def test_block_mask_counts_and_determinism():
    m = block_mask(16, (8, 8), 0.4, min_block=4, seed=3)
    assert m.shape == (16, 64) and m.dtype == torch.bool
    assert (m.sum(1) == round(0.4 * 64)).all()
    assert torch.equal(m, block_mask(16, (8, 8), 0.4, min_block=4, seed=3))
    assert not torch.equal(m, block_mask(16, (8, 8), 0.4, min_block=4, seed=4))
    assert (block_mask(2, (14, 14), 0.0, seed=0).sum() == 0)


def test_block_mask_is_blockwise():
    # Masked patches cluster: far more masked 4-neighbours than a uniform mask would give.
    m = block_mask(64, (14, 14), 0.4, min_block=16, seed=0).view(64, 14, 14).float()
    g = torch.Generator().manual_seed(0)
    rand = torch.zeros(64, 196)
    for i in range(64):
        rand[i, torch.randperm(196, generator=g)[:78]] = 1
    rand = rand.view(64, 14, 14)

    def neighbour_agreement(x):
        return ((x[:, 1:, :] * x[:, :-1, :]).sum() + (x[:, :, 1:] * x[:, :, :-1]).sum()) / x.sum()

    assert neighbour_agreement(m) > 1.5 * neighbour_agreement(rand)


def test_text_mask_only_real_non_special_tokens():
    ids = torch.tensor([[101, 11, 12, 13, 14, 15, 16, 17, 102, 0, 0, 0],
                        [101, 21, 102, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                        [101, 102, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    am = (ids != 0).long()
    m = text_mask(ids, am, 0.25, seed=1)
    assert m.sum(1).tolist() == [2, 1, 0]  # round(0.25 * 7), at least 1, none to mask
    assert not m[ids == 101].any() and not m[ids == 102].any() and not m[ids == 0].any()
    assert torch.equal(m, text_mask(ids, am, 0.25, seed=1))
    masked = apply_text_mask(ids, m)
    assert (masked[m] == MASK_ID).all() and torch.equal(masked[~m], ids[~m])
    draws = {tuple(text_mask(ids, am, 0.25, seed=s)[0].nonzero().flatten().tolist()) for s in range(20)}
    assert len(draws) > 5  # the seed really varies the choice
