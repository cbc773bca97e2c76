"""Does the tiny preset learn? Train MAMO (all objectives) on fresh batches of coloured squares
with captions naming colour and shape, then measure held-out image->text R@1 (ITC) and how often
the ITM score ranks the true caption above a wrong one, against the untrained model measured in
the same run.

    python benchmarks/model_learning.py --steps 300
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "model")]

from model_testdata import NUM_CONCEPTS, make_batch  # noqa: E402  (the test suite's batch maker)

from mamo.model import MAMO, loss_config, model_config  # noqa: E402


@torch.no_grad()
def held_out(model: MAMO, batches: int = 4) -> tuple[float, float]:
    """(image->text R@1 among 8 captions, share of ITM(true) > ITM(wrong caption))."""
    model.eval()
    hits = wins = n = 0
    for s in range(10_000, 10_000 + batches):
        b = make_batch(8, seed=s)
        img, img_feat = model.encode_image(b["image"])
        txt, txt_feat = model.encode_text(b["input_ids"], b["attention_mask"])
        hits += int(((img_feat @ txt_feat.t()).argmax(1) == torch.arange(8)).sum())
        pos = model.itm_score(img, txt, b["attention_mask"])
        neg = model.itm_score(img, txt.roll(1, 0), b["attention_mask"].roll(1, 0))
        wins += int((pos > neg).sum())
        n += 8
    model.train()
    return hits / n, wins / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = MAMO(model_config("tiny"), loss_config(), NUM_CONCEPTS)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.02)
    r1_0, itm_0 = held_out(model)
    t0 = time.perf_counter()
    for step in tqdm(range(args.steps), desc="train tiny", unit="step"):
        out = model(make_batch(8, seed=step), generator_seed=step)
        out["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        model.momentum_update()
    dt = time.perf_counter() - t0
    r1, itm = held_out(model)
    print(f"tiny preset, {args.steps} steps of batch 8 in {dt:.0f} s; last step: "
          + ", ".join(f"{k}={float(v.detach()):.3f}" for k, v in out.items()))
    print(f"held-out i2t R@1: {r1_0:.2f} untrained -> {r1:.2f} trained (chance 0.125; "
          f"ratio {r1 / max(r1_0, 1e-9):.1f}x)")
    print(f"held-out ITM true>wrong: {itm_0:.2f} untrained -> {itm:.2f} trained")
    return 0


if __name__ == "__main__":
    sys.exit(main())
