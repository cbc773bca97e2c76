"""Worker for test_distributed.py: one gloo rank drawing ITM hard negatives from the global
batch. Global batch of 6 pairs (3 per rank); rank 1's pair 0 repeats rank 0's caption 1 and
rank 1's pair 2 repeats rank 0's image 0, so those cross-rank pairs must never be drawn."""
from __future__ import annotations

import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F


def global_batch(b_total: int = 6):
    g = torch.Generator().manual_seed(0)
    img_feat = F.normalize(torch.randn(b_total, 8, generator=g), dim=1)
    txt_feat = F.normalize(torch.randn(b_total, 8, generator=g), dim=1)
    ids = torch.randint(1000, 2000, (b_total, 5), generator=g)
    image = torch.randn(b_total, 3, 4, 4, generator=g)
    ids[3] = ids[1]        # rank 1 pair 0: same caption as rank 0 pair 1
    image[5] = image[0]    # rank 1 pair 2: same image as rank 0 pair 0
    return img_feat, txt_feat, ids, image


def main(rank: int, world: int, init: str, out: str) -> None:
    from mamo.objectives import itm

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    b = 3
    img_feat, txt_feat, ids, image = global_batch(b * world)
    sl = slice(rank * b, (rank + 1) * b)
    picks_t, picks_i = [], []
    for seed in range(200):
        gen = torch.Generator().manual_seed(seed)
        nt, ni, offset = itm.global_hard_negatives(img_feat[sl], txt_feat[sl], ids[sl], image[sl],
                                                   torch.tensor(0.5), gen)
        picks_t.append(nt)
        picks_i.append(ni)
    torch.save({"neg_text": torch.stack(picks_t), "neg_image": torch.stack(picks_i),
                "offset": torch.tensor(offset)}, out)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
