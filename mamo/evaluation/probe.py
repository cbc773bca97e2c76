"""Linear probes on frozen features: can a logistic regression tell the true caption of an
image from its one-change negative, given the model's features of the (image, caption) pair?

The ITM head and ITC similarity are only read-outs the training happened to shape; a probe
asks whether the information is in the features at all. Each benchmark item gives two
examples, (image, true caption) labelled 1 and (image, negative) labelled 0. The probe is
trained on the items of a deterministic share of the images and scored on the items of the
other images (no image is in both), per change type and on all types together.

The fit is deterministic: features standardised with the training split's statistics,
float64, full-batch L-BFGS on the mean log-loss + ``l2 * |w|^2``.
"""
from __future__ import annotations

import numpy as np
import torch


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, max_iter: int = 200
                 ) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """``(w, b, mean, std)``: the standardised logistic regression of ``y`` (0/1) on ``x``."""
    with torch.inference_mode(False), torch.enable_grad():  # callers may be in inference mode
        return _fit(np.asarray(x, dtype=np.float64), y, l2, max_iter)


def _fit(x: np.ndarray, y: np.ndarray, l2: float, max_iter: int) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-12, std, 1.0)  # a constant feature carries nothing: leave it at 0
    xt = torch.from_numpy((x - mean) / std)
    yt = torch.from_numpy(np.asarray(y, dtype=np.float64))
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9,
                            tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), float(b.detach()), mean, std


def predict_logistic(model: tuple[np.ndarray, float, np.ndarray, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Logits of the fitted probe on ``x``."""
    w, b, mean, std = model
    return ((np.asarray(x, dtype=np.float64) - mean) / std) @ w + b


def probe_split(image_index: np.ndarray, train_share: float, seed: int = 0) -> np.ndarray:
    """Bool per entry: is its image in the probe's training split? A deterministic draw per
    image index (the same image always falls on the same side, whatever the item cap)."""
    idx = np.asarray(image_index, dtype=np.int64)
    u = np.array([np.random.default_rng([int(seed), 7, int(i)]).random() for i in idx])
    return u < train_share


def probe_accuracy(true_x: np.ndarray, neg_x: np.ndarray, train: np.ndarray, l2: float = 1e-3
                   ) -> tuple[float | None, np.ndarray]:
    """Train on the items where ``train`` holds, score the others.

    ``true_x``/``neg_x``: ``[items, F]`` features of each item's (image, true caption) and
    (image, negative). Returns (accuracy in %, per-example correctness ``[2 * n_test]``:
    the test items' true pairs, then their negatives); (None, empty) when a split is empty.
    """
    train = np.asarray(train, dtype=bool)
    test = ~train
    if not train.any() or not test.any():
        return None, np.zeros(0)
    x = np.concatenate([true_x[train], neg_x[train]])
    y = np.concatenate([np.ones(train.sum()), np.zeros(train.sum())])
    model = fit_logistic(x, y, l2)
    correct = np.concatenate([predict_logistic(model, true_x[test]) > 0,
                              predict_logistic(model, neg_x[test]) <= 0]).astype(float)
    return float(100.0 * correct.mean()), correct
