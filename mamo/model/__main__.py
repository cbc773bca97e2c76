"""``python -m mamo.model --preset base --summary``: sizes of a preset, built on the meta
device (no memory, no weights loaded)."""
from __future__ import annotations

import argparse
import json
import sys

from mamo.core.config import ConfigError


def parameter_summary(preset: str, overrides: list[str] = (), num_concepts: int = 1000,
                      loss_overrides: list[str] = ()) -> dict:
    """Parameter counts per component of ``MAMO`` for a preset (built on the meta device)."""
    import torch

    from mamo.model.config import loss_config, model_config
    from mamo.model.mamo import MAMO

    mcfg = model_config(preset, overrides)
    lcfg = loss_config(loss_overrides)
    with torch.device("meta"):
        model = MAMO(mcfg, lcfg, num_concepts=num_concepts, load_pretrained=False)

    def count(module) -> int:
        return sum(p.numel() for p in module.parameters()) if module is not None else 0

    enc = model.enc
    parts = {
        "vision": count(enc.vision),
        "text": count(enc.text),
        "text_embeddings": count(enc.text.embeddings),
        "fusion": count(enc.fusion),
        "itc_projections": count(enc.vision_proj) + count(enc.text_proj),
        "itm_head": count(model.itm_head),
        "implicit_head": count(model.implicit_head),
        "visual_head": count(model.visual_head),
        "text_head": count(model.text_head),
    }
    if model.mlm_head is not None:  # text_target=concept_mlm: the MLM fallback head
        parts["mlm_head"] = count(model.mlm_head)
    trainable = sum(p.numel() for p in model.parameters())
    momentum = sum(b.numel() for b in model.momentum.buffers())
    queue = model.queue.image_queue.numel() + model.queue.text_queue.numel()
    return {
        "preset": preset,
        "image_size": mcfg.vision.image_size, "patch_size": mcfg.vision.patch_size,
        "vision": f"{mcfg.vision.depth}x{mcfg.vision.width}",
        "text": f"{mcfg.text.depth}x{mcfg.text.width}",
        "fusion": f"{mcfg.fusion.depth}x{mcfg.text.width}",
        "num_concepts": num_concepts, "text_target": lcfg.text_target,
        "params": parts, "trainable": trainable, "momentum_buffers": momentum,
        "queue_entries": queue, "queue_size": mcfg.queue_size,
    }


def _print(summary: dict) -> None:
    s = summary
    print(f"MAMO preset {s['preset']}: image {s['image_size']}px/patch {s['patch_size']}, "
          f"vision {s['vision']}, text {s['text']}, fusion {s['fusion']}")
    for name, n in s["params"].items():
        print(f"  {name:<18} {n / 1e6:9.2f} M")
    print(f"  {'trainable total':<18} {s['trainable'] / 1e6:9.2f} M")
    print(f"  {'momentum copy':<18} {s['momentum_buffers'] / 1e6:9.2f} M (buffers)")
    print(f"  {'ITC queue':<18} {s['queue_entries'] / 1e6:9.2f} M (buffers, size {s['queue_size']})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mamo.model", description=__doc__)
    ap.add_argument("--preset", default="tiny", help="tiny | small | base")
    ap.add_argument("--summary", action="store_true", help="print parameter counts")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    ap.add_argument("--num-concepts", type=int, default=1000)
    ap.add_argument("overrides", nargs="*", help="dotted model-config overrides, e.g. fusion.depth=2")
    args = ap.parse_args(argv)
    if not (args.summary or args.json):
        ap.print_help()
        return 0
    try:
        summary = parameter_summary(args.preset, args.overrides, args.num_concepts)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
