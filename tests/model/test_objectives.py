"""ITC queue and loss, ITM hard negatives, MMM targets and losses as pure functions."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mamo.model.heads import ClassifierHead, RegressionHead
from mamo.objectives import itc, itm, mmm
from mamo.objectives.losses import linear_cross_entropy, masked_regression_loss


def test_queue_wraps_around():
    q = itc.FeatureQueue(dim=2, size=5)
    rows = lambda a, n: torch.arange(a, a + n, dtype=torch.float32)[:, None].repeat(1, 2)  # noqa: E731
    q.enqueue(rows(0, 3), -rows(0, 3))
    assert int(q.ptr) == 3
    q.enqueue(rows(3, 3), -rows(3, 3))  # 3, 4 at the end, 5 wraps to slot 0
    assert int(q.ptr) == 1
    assert q.image_queue[:, 0].tolist() == [5, 1, 2, 3, 4]
    assert q.text_queue[:, 0].tolist() == [-5, -1, -2, -3, -4]
    q.enqueue(rows(10, 7), rows(10, 7))  # more than the queue holds: the newest 5 survive
    assert sorted(q.image_queue[:, 0].tolist()) == [12, 13, 14, 15, 16]
    assert int(q.ptr) == (1 + 7) % 5
    assert q.image_queue[(int(q.ptr) - 1) % 5, 0] == 16  # newest just before the pointer
    assert {"image_queue", "text_queue", "ptr"} <= set(q.state_dict())


def test_itc_matches_a_hand_computed_infonce():
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(4, 8, generator=g), dim=1)
    txt = F.normalize(torch.randn(4, 8, generator=g), dim=1)
    q = itc.FeatureQueue(8, 6)
    temp = torch.tensor(0.1)
    loss, _, _ = itc.itc_loss(img, txt, img, txt, q, temp, alpha=0.0)
    logits_i = img @ torch.cat([txt, q.text_queue]).t() / temp
    logits_t = txt @ torch.cat([img, q.image_queue]).t() / temp
    want = 0.5 * (F.cross_entropy(logits_i, torch.arange(4)) + F.cross_entropy(logits_t, torch.arange(4)))
    torch.testing.assert_close(loss, want)
    # momentum distillation: targets = 0.4 * softmax(teacher sims) + 0.6 * one-hot
    img_m = F.normalize(img + 0.3 * torch.randn(4, 8, generator=g), dim=1)
    txt_m = F.normalize(txt.flip(0), dim=1)
    soft, _, _ = itc.itc_loss(img, txt, img_m, txt_m, q, temp, alpha=0.4)
    onehot = F.one_hot(torch.arange(4), 10).float()
    tgt_i = 0.4 * F.softmax(img_m @ torch.cat([txt_m, q.text_queue]).t() / temp, 1) + 0.6 * onehot
    tgt_t = 0.4 * F.softmax(txt_m @ torch.cat([img_m, q.image_queue]).t() / temp, 1) + 0.6 * onehot
    want_soft = 0.5 * (-(F.log_softmax(logits_i, 1) * tgt_i).sum(1).mean()
                       - (F.log_softmax(logits_t, 1) * tgt_t).sum(1).mean())
    torch.testing.assert_close(soft, want_soft)
    assert not torch.allclose(soft, loss)


def test_hard_negatives_are_never_positives_or_duplicates():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 1010, (6, 5), generator=g)
    ids[3] = ids[1]  # the same caption twice in the batch
    image = torch.randn(6, 3, 8, 8, generator=g)
    image[5] = image[0]  # the same image twice
    exclude = itm.duplicate_pairs(ids, image)
    assert exclude[1, 3] and exclude[3, 1] and exclude[0, 5] and exclude.diagonal().all()
    assert exclude.sum() == 6 + 4
    # similarities that strongly favour the excluded entries
    sim = torch.randn(6, 6, generator=g) + 50.0 * exclude.float()
    for s in range(50):
        gen = torch.Generator().manual_seed(s)
        neg_t, neg_i = itm.sample_hard_negatives(sim, exclude, gen)
        assert not exclude[torch.arange(6), neg_t].any()
        assert not exclude.t()[torch.arange(6), neg_i].any()


def test_hard_negatives_follow_similarity():
    sim = torch.zeros(4, 4)
    sim[0, 2] = 5.0  # text 2 is by far the hardest negative of image 0
    exclude = torch.eye(4, dtype=torch.bool)
    gen = torch.Generator().manual_seed(0)
    picks = [int(itm.sample_hard_negatives(sim, exclude, gen)[0][0]) for _ in range(200)]
    assert picks.count(2) > 150


def test_hard_negatives_fall_back_when_all_captions_are_identical():
    exclude = torch.ones(3, 3, dtype=torch.bool)
    neg_t, neg_i = itm.sample_hard_negatives(torch.zeros(3, 3), exclude, torch.Generator().manual_seed(0))
    assert (neg_t != torch.arange(3)).all() and (neg_i != torch.arange(3)).all()


def _fake_mmm(seed=0):
    g = torch.Generator().manual_seed(seed)
    b, n, length, d, dv = 3, 16, 6, 16, 12
    s = 1 + n + length
    student = torch.randn(b, s, d, generator=g, requires_grad=True)
    teacher_layers = [torch.randn(b, s, d, generator=g) for _ in range(4)]
    teacher_img = torch.randn(b, 1 + n, dv, generator=g)
    patch_mask = torch.zeros(b, n, dtype=torch.bool)
    patch_mask[:, 3:9] = True
    tmask = torch.zeros(b, length, dtype=torch.bool)
    tmask[:, 2] = True
    labels = torch.randint(0, 5, (b, length), generator=g)
    labels[0, 2] = -100  # a masked token without a concept
    torch.manual_seed(seed)
    heads = (RegressionHead(d, d), RegressionHead(d, dv), ClassifierHead(d, 5))
    return student, teacher_layers, teacher_img, patch_mask, tmask, labels, heads


def _mmm_losses(student, layers, timg, patch_mask, tmask, labels, heads):
    target = mmm.implicit_target(layers, 3)
    pos = mmm.position_mask(patch_mask, tmask)
    nv = 1 + patch_mask.shape[1]
    return (mmm.implicit_loss(student, target, pos, heads[0], "smooth_l1", 1.0),
            mmm.visual_loss(student[:, :nv], timg, patch_mask, heads[1]),
            mmm.text_class_loss(student[:, nv:], labels, tmask, heads[2]))


def test_perturbing_unmasked_targets_changes_no_mmm_loss():
    student, layers, timg, pm, tm, labels, heads = _fake_mmm()
    base = _mmm_losses(student, layers, timg, pm, tm, labels, heads)
    pos = mmm.position_mask(pm, tm)
    noisy_layers = [h + 10.0 * torch.randn_like(h) * (~pos)[..., None] for h in layers]
    noisy_img = timg.clone()
    noisy_img[:, 1:][~pm] += 10.0
    noisy_img[:, 0] += 10.0  # the image [CLS] is never a target either
    noisy_labels = labels.masked_fill(~tm, 4)
    after = _mmm_losses(student, noisy_layers, noisy_img, pm, tm, noisy_labels, heads)
    for a, b in zip(base, after):
        torch.testing.assert_close(a, b)
    # ...while perturbing one masked position does change each loss
    layers2 = [h.clone() for h in layers]
    for h in layers2:
        h[0, 1 + 3] += 5.0 * torch.arange(h.shape[-1]).float()  # a masked patch
    timg2 = timg.clone()
    timg2[0, 1 + 3] = -timg2[0, 1 + 3]
    labels2 = labels.clone()
    labels2[1, 2] = (labels2[1, 2] + 1) % 5
    moved = _mmm_losses(student, layers2, timg2, pm, tm, labels2, heads)
    assert all(not torch.allclose(a, b) for a, b in zip(base, moved))


def test_implicit_target_is_mean_of_top_k_layer_normed_layers():
    _, layers, *_ = _fake_mmm()
    layers = [h * (i + 1) + i for i, h in enumerate(layers)]  # different scales per layer
    t = mmm.implicit_target(layers, 3)
    want = sum(F.layer_norm(h, h.shape[-1:]) for h in layers[-3:]) / 3
    torch.testing.assert_close(t, want)
    assert mmm.implicit_target(layers[:2], 3).shape == t.shape  # K larger than the depth


def test_losses_ignore_and_stay_in_graph_when_nothing_is_selected():
    h = torch.randn(4, 8, requires_grad=True)
    w = torch.randn(5, 8, requires_grad=True)
    loss = linear_cross_entropy(h, w, None, torch.full((4,), -100))
    assert loss.item() == 0.0
    loss.backward()
    assert w.grad is not None and torch.equal(w.grad, torch.zeros_like(w))
    r = masked_regression_loss(h, torch.randn(4, 8), torch.zeros(4, dtype=torch.bool))
    assert r.item() == 0.0 and r.requires_grad


@pytest.mark.parametrize("kind, norm", [("smooth_l1", "none"), ("mse", "layer"), ("cosine", "l2")])
def test_torch_and_kernel_losses_agree(kind, norm):
    pytest.importorskip("triton")
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(10, 16, generator=g), torch.randn(10, 16, generator=g)
    mask = torch.rand(10, generator=g) > 0.3
    a = masked_regression_loss(pred, target, mask, kind=kind, beta=0.5, target_norm=norm, impl="torch")
    b = masked_regression_loss(pred, target, mask, kind=kind, beta=0.5, target_norm=norm, impl="kernels")
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    h, w, bias = torch.randn(10, 16, generator=g), torch.randn(7, 16, generator=g), torch.randn(7, generator=g)
    labels = torch.randint(0, 7, (10,), generator=g)
    labels[::3] = -100
    torch.testing.assert_close(linear_cross_entropy(h, w, bias, labels, impl="torch"),
                               linear_cross_entropy(h, w, bias, labels, impl="kernels"),
                               rtol=1e-4, atol=1e-5)
