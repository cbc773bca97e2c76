"""Worker for test_distributed.py: one rank of a gloo group computing ITC on its shard."""
from __future__ import annotations

import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F


def features(b_total: int, dim: int = 8):
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(b_total, dim, generator=g), dim=1)
    txt = F.normalize(torch.randn(b_total, dim, generator=g), dim=1)
    img_m = F.normalize(img + 0.2 * torch.randn(b_total, dim, generator=g), dim=1)
    txt_m = F.normalize(txt + 0.2 * torch.randn(b_total, dim, generator=g), dim=1)
    return img, txt, img_m, txt_m


def main(rank: int, world: int, init: str, out: str) -> None:
    from mamo.objectives import itc

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    b = 3
    img, txt, img_m, txt_m = features(b * world)
    sl = slice(rank * b, (rank + 1) * b)
    local_img = img[sl].clone().requires_grad_(True)
    local_txt = txt[sl].clone().requires_grad_(True)
    torch.manual_seed(1)
    queue = itc.FeatureQueue(8, 10)
    loss, img_all, txt_all = itc.itc_loss(local_img, local_txt, img_m[sl], txt_m[sl], queue,
                                          torch.tensor(0.1), alpha=0.4)
    loss.backward()
    queue.enqueue(img_all, txt_all)
    torch.save({"loss": loss.detach(), "grad_img": local_img.grad, "grad_txt": local_txt.grad,
                "queue": queue.state_dict()}, out)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
