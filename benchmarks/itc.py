"""The contrastive loss as the model computes it (``mamo.objectives.itc_loss``: batch + queue,
momentum distillation), forward+backward time and peak memory, against the same loss without
the queue (batch negatives only) measured in the same run.

    python -m benchmarks.itc                 # METHOD.md base defaults, on CUDA
    python -m benchmarks.itc --smoke

It decides whether a fused InfoNCE kernel could pay: the loss's share of a ``base`` step
(benchmarks.model_step) is the most such a kernel could save.
"""
from __future__ import annotations

import sys

from benchmarks import harness
from benchmarks.harness import Report

# batch per GPU, embedding dim, queue length (METHOD.md base defaults; smoke: toy)
SHAPES = {"full": (64, 256, 65536), "quick": (64, 256, 65536), "smoke": (8, 32, 64)}


def run(rep: Report, size: str, device: str) -> None:
    import torch
    import torch.nn.functional as F

    from mamo.objectives.itc import FeatureQueue, itc_loss

    B, E, Q = SHAPES[size]
    img = F.normalize(torch.randn(B, E, device=device), dim=1).requires_grad_(True)
    txt = F.normalize(torch.randn(B, E, device=device), dim=1).requires_grad_(True)
    img_m, txt_m = img.detach().clone(), txt.detach().clone()
    temp = torch.tensor(0.07, device=device, requires_grad=True)

    def fwd_bwd(queue):
        def run():
            with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                loss, _, _ = itc_loss(img, txt, img_m, txt_m, queue, temp, alpha=0.4)
            return torch.autograd.grad(loss, (img, txt, temp))

        return run

    # the queue: random unit vectors, as at the start of training
    harness.compare(rep, "contrastive loss (torch, fwd+bwd)", f"B{B} E{E}",
                    (f"batch + queue {Q}", fwd_bwd(FeatureQueue(E, Q).to(device))),
                    [("batch negatives only (no queue)", fwd_bwd(None))],
                    device, size, memory=True)


def main(argv: list[str] | None = None) -> int:
    return harness.main(__doc__, "contrastive loss", argv, run)


if __name__ == "__main__":
    sys.exit(main())
