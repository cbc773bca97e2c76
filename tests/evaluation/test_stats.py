"""The paired bootstrap on fixed inputs where the answer is known."""
import numpy as np
import pytest

from mamo.evaluation.stats import mean_std, paired_bootstrap


def test_constant_difference_gives_zero_width_interval_at_that_value():
    rng = np.random.default_rng(0)
    b = rng.integers(0, 2, size=(5, 300)).astype(float) * 0.5
    a = b + 0.25  # every item of every seed exactly 0.25 better
    r = paired_bootstrap(a, b, n_boot=500)
    assert r["mean"] == pytest.approx(25.0)
    assert r["ci95"] == pytest.approx([25.0, 25.0])
    assert r["n_seeds"] == 5 and r["n_items"] == 300


def test_identical_variants_give_zero():
    a = np.random.default_rng(1).integers(0, 2, size=(5, 200)).astype(float)
    r = paired_bootstrap(a, a.copy(), n_boot=300)
    assert r["mean"] == 0.0 and r["ci95"] == [0.0, 0.0]


def test_interval_covers_the_mean_and_shrinks_with_more_items():
    rng = np.random.default_rng(2)

    def width(n):
        a = (rng.random((5, n)) < 0.7).astype(float)
        b = (rng.random((5, n)) < 0.5).astype(float)
        r = paired_bootstrap(a, b, n_boot=1000, seed=3)
        assert r["ci95"][0] <= r["mean"] <= r["ci95"][1]
        return r["ci95"][1] - r["ci95"][0]

    assert width(4000) < width(100)


def test_seed_level_spread_enters_the_interval():
    # within a seed every item has the same difference, but seeds differ: items alone would give
    # a zero-width interval; resampling seeds must not
    d = np.array([0.0, 0.1, 0.2, 0.3, 0.4])[:, None] * np.ones((5, 50))
    r = paired_bootstrap(d, np.zeros_like(d), n_boot=2000, seed=0)
    assert r["mean"] == pytest.approx(20.0)
    assert r["ci95"][0] < 15.0 and r["ci95"][1] > 25.0


def test_deterministic_and_nan_items_left_out():
    a = np.array([[1.0, 0.0, np.nan, 1.0], [1.0, 1.0, 1.0, 0.0]])
    b = np.array([[0.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0]])
    r1, r2 = paired_bootstrap(a, b, n_boot=200, seed=7), paired_bootstrap(a, b, n_boot=200, seed=7)
    assert r1 == r2
    assert r1["n_items"] == 3  # the item one seed could not score is dropped for both variants
    assert r1["mean"] == pytest.approx(100.0 * np.mean([[1, 0, 0], [1, 0, 0]]))
    assert paired_bootstrap(np.full((2, 3), np.nan), np.zeros((2, 3))) is None
    with pytest.raises(ValueError, match="shape"):
        paired_bootstrap(np.zeros((2, 3)), np.zeros((3, 3)))


def test_mean_std():
    assert mean_std([1.0, 3.0, None]) == {"mean": 2.0, "std": pytest.approx(2 ** 0.5), "n": 2}
    assert mean_std([None]) is None
    assert mean_std([4.0])["std"] == 0.0
