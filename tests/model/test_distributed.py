"""ITC across two gloo ranks equals the same computation done in one process."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ddp_itc_worker import features
from mamo.objectives import itc

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_gloo_workers(worker: str, world: int, tmp_path: Path) -> list[dict]:
    """Run ``worker`` as ``world`` gloo ranks; returns what each rank saved."""
    init = f"tcp://127.0.0.1:{_free_port()}"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{Path(__file__).parent}", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(Path(__file__).parent / worker),
                               str(r), str(world), init, str(tmp_path / f"{r}.pt")], env=env)
             for r in range(world)]
    assert [p.wait(timeout=240) for p in procs] == [0] * world
    return [torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in range(world)]


@pytest.mark.slow
def test_itc_gathers_across_gloo_ranks(tmp_path):
    world, b = 2, 3
    got = _run_gloo_workers("ddp_itc_worker.py", world, tmp_path)

    img, txt, img_m, txt_m = features(b * world)
    for r in range(world):
        sl = slice(r * b, (r + 1) * b)
        li = img[sl].clone().requires_grad_(True)
        lt = txt[sl].clone().requires_grad_(True)
        # what rank r must see: everyone's features as keys, its own rows with gradient,
        # positives at offset r*b
        keys_i = torch.cat([img[: r * b], li, img[(r + 1) * b:]])
        keys_t = torch.cat([txt[: r * b], lt, txt[(r + 1) * b:]])
        torch.manual_seed(1)
        q = itc.FeatureQueue(8, 10)
        temp, alpha = 0.1, 0.4
        onehot = torch.zeros(b, b * world + 10)
        onehot[torch.arange(b), r * b + torch.arange(b)] = 1
        tgt_i = alpha * (img_m[sl] @ torch.cat([txt_m, q.text_queue]).t() / temp).softmax(1) + (1 - alpha) * onehot
        tgt_t = alpha * (txt_m[sl] @ torch.cat([img_m, q.image_queue]).t() / temp).softmax(1) + (1 - alpha) * onehot
        li2t = (li @ torch.cat([keys_t, q.text_queue]).t() / temp).log_softmax(1)
        lt2i = (lt @ torch.cat([keys_i, q.image_queue]).t() / temp).log_softmax(1)
        want = 0.5 * (-(li2t * tgt_i).sum(1).mean() - (lt2i * tgt_t).sum(1).mean())
        want.backward()
        torch.testing.assert_close(got[r]["loss"], want.detach())
        torch.testing.assert_close(got[r]["grad_img"], li.grad)
        torch.testing.assert_close(got[r]["grad_txt"], lt.grad)
        # both ranks enqueue the same gathered momentum features, in rank order
        torch.testing.assert_close(got[r]["queue"]["image_queue"][: b * world], img_m)
        torch.testing.assert_close(got[r]["queue"]["text_queue"][: b * world], txt_m)
    assert int(got[0]["queue"]["ptr"]) == int(got[1]["queue"]["ptr"]) == b * world


@pytest.mark.slow
def test_itm_hard_negatives_come_from_the_global_batch(tmp_path):
    world, b = 2, 3
    got = _run_gloo_workers("ddp_itm_worker.py", world, tmp_path)
    # same pair as far as the global batch shows: (global i, global j)
    same = {(i, i) for i in range(b * world)} | {(3, 1), (1, 3), (5, 0), (0, 5)}
    for r in range(world):
        assert int(got[r]["offset"]) == r * b
        for key in ("neg_text", "neg_image"):
            picks = got[r][key]  # [draws, b] indices into the global batch
            assert picks.min() >= 0 and picks.max() < b * world
            for i in range(b):
                drawn = set(picks[:, i].tolist())
                assert not any((r * b + i, j) in same for j in drawn), (r, key, i, drawn)
            other = [j for j in picks.flatten().tolist() if not r * b <= j < (r + 1) * b]
            assert other, f"rank {r} never drew a {key} from the other rank"
