"""The linear probe on hand-built features where the answer is known."""
import numpy as np

from mamo.evaluation.probe import fit_logistic, predict_logistic, probe_accuracy, probe_split


def test_separable_features_are_learned_and_noise_is_not():
    rng = np.random.default_rng(0)
    n = 400
    noise_t, noise_n = rng.normal(size=(n, 8)), rng.normal(size=(n, 8))
    # the true caption's pair has +1 on feature 3, the negative's -1: linearly separable
    true_x, neg_x = noise_t.copy(), noise_n.copy()
    true_x[:, 3] += 3.0
    neg_x[:, 3] -= 3.0
    train = probe_split(np.arange(n), 0.5)
    acc, correct = probe_accuracy(true_x, neg_x, train)
    assert acc > 97.0 and correct.shape == (2 * (~train).sum(),)
    acc_noise, _ = probe_accuracy(noise_t, noise_n, train)  # nothing to learn: near chance
    assert 35.0 < acc_noise < 65.0


def test_fit_is_deterministic_and_standardised():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 5)) * [1, 10, 100, 1000, 0]  # a constant column too
    y = (x[:, 0] > 0).astype(float)
    m1, m2 = fit_logistic(x, y), fit_logistic(x, y)
    assert np.array_equal(m1[0], m2[0]) and m1[1] == m2[1]
    assert ((predict_logistic(m1, x) > 0) == (y > 0)).mean() > 0.95
    assert np.isfinite(m1[0]).all()


def test_split_is_per_image_and_disjoint():
    idx = np.array([0, 0, 1, 1, 2, 2, 3, 3] * 50 + list(range(4, 1000)))
    s = probe_split(idx, 0.5)
    for i in (0, 1, 2, 3):  # every item of one image falls on the same side
        assert len(set(s[idx == i])) == 1
    assert 0.4 < s[idx >= 4].mean() < 0.6
    assert np.array_equal(s, probe_split(idx, 0.5))
    acc, correct = probe_accuracy(np.zeros((4, 2)), np.zeros((4, 2)), np.ones(4, bool))
    assert acc is None and correct.size == 0  # no test split: no number
