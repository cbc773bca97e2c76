"""Tiny, structured batches for the model tests: a coloured square per image and a caption
naming its colour and shape, so that every objective has something learnable."""
from __future__ import annotations

import torch

COLORS = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 0],
                       [1.0, 0, 1.0], [0, 1.0, 1.0], [1.0, 0.5, 0], [0.5, 0, 1.0]])
NUM_CONCEPTS = 12  # 8 colours + 4 shapes


def make_batch(batch: int = 8, size: int = 64, length: int = 12, seed: int = 0) -> dict:
    """Image i: a square of colour c_i at a random place on a dim noisy background; caption
    ``[CLS] a <colour c_i> <shape s_i> [SEP] [PAD]...`` with concepts on colour and shape."""
    g = torch.Generator().manual_seed(seed)
    colors = torch.randperm(8, generator=g)[:batch] if batch <= 8 else torch.randint(0, 8, (batch,), generator=g)
    shapes = torch.randint(0, 4, (batch,), generator=g)
    image = 0.1 * torch.randn(batch, 3, size, size, generator=g)
    ids = torch.zeros(batch, length, dtype=torch.long)
    labels = torch.full((batch, length), -100, dtype=torch.long)
    for i in range(batch):
        s = size // 3 + 4 * int(shapes[i])
        y, x = torch.randint(0, size - s, (2,), generator=g).tolist()
        image[i, :, y:y + s, x:x + s] = (COLORS[colors[i]] * 2 - 1)[:, None, None]
        extra = int(i % 3)  # captions of different lengths exercise padding
        words = [1037, 2000 + int(colors[i]), 3000 + int(shapes[i])] + [4000 + j for j in range(extra)]
        row = [101] + words + [102]
        ids[i, :len(row)] = torch.tensor(row)
        labels[i, 2] = int(colors[i])
        labels[i, 3] = 8 + int(shapes[i])
    return {"image": image, "input_ids": ids, "attention_mask": (ids != 0).long(),
            "concept_labels": labels, "keys": [f"k{i}" for i in range(batch)],
            "captions": ["" for _ in range(batch)]}


# A reduced tiny model (32 px, width 64, 1+1+2 layers) for the loops that train a few steps.
MICRO = ["vision.image_size=32", "vision.width=64", "vision.depth=1", "vision.heads=2",
         "vision.mlp_dim=128", "text.width=64", "text.depth=1", "text.heads=2", "text.mlp_dim=128",
         "fusion.depth=2", "fusion.heads=2", "fusion.mlp_dim=128", "embed_dim=32", "queue_size=32"]



def micro_model(loss_overrides=(), model_overrides=(), seed: int = 0):
    from mamo.model import MAMO, loss_config, model_config

    torch.manual_seed(seed)
    return MAMO(model_config("tiny", MICRO + list(model_overrides)), loss_config(list(loss_overrides)),
                NUM_CONCEPTS)
