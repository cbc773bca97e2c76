"""Does the tiny preset learn? Train MAMO (all objectives) on fresh batches of coloured squares
with captions naming colour and shape, then measure held-out image->text R@1 (ITC) and how often
the ITM score ranks the true caption above a wrong one, against the untrained model measured in
the same run.

    python -m benchmarks.model_learning --steps 300
    python -m benchmarks.model_learning --smoke
"""
from __future__ import annotations

import sys
import time

import torch
from tqdm import tqdm

from benchmarks import harness
from benchmarks.harness import ROOT, Report
from mamo.model import MAMO, loss_config, model_config

sys.path.insert(0, str(ROOT / "tests" / "model"))
from model_testdata import NUM_CONCEPTS, make_batch  # noqa: E402  (the test suite's learnable batches)


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


def main(argv: list[str] | None = None) -> int:
    ap = harness.parser(__doc__)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--threads", type=int, default=1)
    args = harness.parse(ap, argv)
    if args.smoke:
        args.steps = 2
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = MAMO(model_config("tiny"), loss_config(), NUM_CONCEPTS)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.02)
    r1_0, itm_0 = held_out(model)
    t0 = time.perf_counter()
    for step in tqdm(range(args.steps), desc="train tiny", unit="step", disable=args.smoke):
        loss = harness.train_step(model, opt, make_batch(8, seed=step), step)
    dt = time.perf_counter() - t0
    r1, itm = held_out(model)
    rep = Report(f"does tiny learn? {args.steps} steps of batch 8 in {dt:.0f} s, last loss {loss:.3f}",
                 {"threads": args.threads}, args.out)
    case = f"tiny, {args.steps} steps"
    rep.row("held-out", case, "trained: i2t R@1 among 8 (chance 0.125)", r1, "untrained", r1_0, "R@1")
    rep.row("held-out", case, "trained: share ITM(true) > ITM(wrong)", itm, "untrained", itm_0, "share")
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
