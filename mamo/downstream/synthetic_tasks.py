"""Turn a synthetic dataset version's ground-truth scenes into downstream task files in the
SAME public formats the readers parse (Karpathy JSON, VQA v2, NLVR2 JSON lines, RefCOCO+
refs JSON export + instances.json), so fine-tuning code has one path for real and synthetic.

Layout written under ``out``::

    image_map.json                  public file name -> shard key (images stay in the shards)
    karpathy/dataset_synthetic.json
    vqa/v2_OpenEnded_mscoco_<split>_questions.json, vqa/v2_mscoco_<split>_annotations.json
    nlvr2/<train|dev|test1>.json    (JSON lines)
    refcoco+/refs.json, refcoco+/instances.json
    meta.json                       source version, counts, splits

Every image gets an integer id (1-based, in key order) and the COCO-style name
``COCO_synth_<id:012d>.jpg``; NLVR2 uses its own ``<split>-<set>-<pair>-img{0,1}.png`` names,
also listed in ``image_map.json``. Splits are a pure function of the key (sha1): ~80% train,
10% val, 10% test. Labels are computed from the scenes, never sampled blindly.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import sys
from pathlib import Path
from typing import Any, Iterator

from ingest.shards import iter_version_samples
from ingest.synthetic import COLORS, PLURALS, RELATIONS, SHAPES, describe, relation_holds
from mamo.core.files import write_text

SPLITS = ("train", "val", "test")
NLVR2_FILES = {"train": "train", "val": "dev", "test": "test1"}   # upstream file names
VQA_SUBTYPE = "synth"   # data_subtype: image files are COCO_synth_<id>.jpg in every split
N_ANNOTATORS = 10       # VQA v2 has ten human answers per question


log = logging.getLogger(__name__)

def image_file(image_id: int) -> str:
    return f"COCO_{VQA_SUBTYPE}_{image_id:012d}.jpg"


def split_of(key: str, val_frac: float = 0.1, test_frac: float = 0.1) -> str:
    """Deterministic split of a sample key (stable when the version grows)."""
    u = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if u < test_frac:
        return "test"
    if u < test_frac + val_frac:
        return "val"
    return "train"


def iter_scenes(version_dir: str | Path) -> Iterator[dict[str, Any]]:
    """``{"key", "width", "height", "caption", "scene"}`` for every sample of a version."""
    for sample in iter_version_samples(version_dir, exts=("json",)):
        if "json" not in sample:
            continue
        meta = json.loads(sample["json"])
        if "synthetic" not in meta:
            raise ValueError(f"{sample['__shard__']}: {sample['__key__']}.json has no 'synthetic'"
                             " ground truth; is this a synthetic dataset version?")
        yield {"key": meta["key"], "width": int(meta["width"]),
               "height": int(meta["height"]), "caption": meta["caption"],
               "scene": meta["synthetic"]}


# ------------------------------------------------------------------------- VQA

def vqa_questions(scene: dict[str, Any], rng: random.Random) -> list[tuple[str, str, str, str]]:
    """(question, answer, answer_type, question_type) about colour, shape, count, position."""
    objs = scene["objects"]
    out: list[tuple[str, str, str, str]] = []
    shapes = [o["shape"] for o in objs]
    colors = [o["color"] for o in objs]
    # colour of a shape that is unambiguous (all objects of that shape share one colour)
    for shape in sorted(set(shapes)):
        cs = {o["color"] for o in objs if o["shape"] == shape}
        if len(cs) == 1:
            noun = shape if shapes.count(shape) == 1 else PLURALS[shape]
            verb = "is" if shapes.count(shape) == 1 else "are"
            out.append((f"what color {verb} the {noun}?", cs.pop(), "other", "what color is the"))
    # shape of an object named by its colour
    for color in sorted(set(colors)):
        ss = {o["shape"] for o in objs if o["color"] == color}
        if len(ss) == 1:
            out.append((f"what shape is the {color} object?", ss.pop(), "other", "what shape is the"))
    # count: one present shape, and sometimes an absent one
    shape = rng.choice(shapes) if rng.random() < 0.75 else rng.choice(SHAPES)
    out.append((f"how many {PLURALS[shape]} are there?", str(shapes.count(shape)), "number", "how many"))
    # existence, balanced yes/no
    if rng.random() < 0.5:
        o = rng.choice(objs)
        c, s = o["color"], o["shape"]
    else:
        c, s = rng.choice(COLORS), rng.choice(SHAPES)
    present = any(o["color"] == c and o["shape"] == s for o in objs)
    out.append((f"is there a {c} {s}?", "yes" if present else "no", "yes/no", "is there a"))
    # position between two described objects (relation scenes)
    spec = scene["spec"]
    if spec["kind"] == "relation":
        a, b = objs[spec["subject"]], objs[spec["object"]]
        if rng.random() < 0.5:
            a, b = b, a
        rel = rng.choice(RELATIONS)
        ans = "yes" if relation_holds(a["box"], b["box"], rel) else "no"
        out.append((f"is the {describe(a)} {rel} the {describe(b)}?", ans, "yes/no", "is the"))
    return out


# ------------------------------------------------------------------------- NLVR2

def _has(scene: dict[str, Any], color: str | None, shape: str | None) -> bool:
    return any((color is None or o["color"] == color) and (shape is None or o["shape"] == shape)
               for o in scene["objects"])


def nlvr2_statement(left: dict[str, Any], right: dict[str, Any], rng: random.Random) -> tuple[str, bool]:
    """A statement about a pair of scenes and its truth, computed from the scenes."""
    pool = left["objects"] + right["objects"]
    o = rng.choice(pool)
    c = o["color"] if rng.random() < 0.7 else rng.choice(COLORS)
    s = o["shape"] if rng.random() < 0.7 else rng.choice(SHAPES)
    kind = rng.randrange(5)
    if kind == 0:
        return f"both images contain a {c} {s}.", _has(left, c, s) and _has(right, c, s)
    if kind == 1:
        nl, nr = len(left["objects"]), len(right["objects"])
        return "the left image contains more objects than the right image.", nl > nr
    if kind == 2:
        return (f"the left image contains a {c} {s} and the right image does not.",
                _has(left, c, s) and not _has(right, c, s))
    if kind == 3:
        return f"exactly one image contains a {c} object.", _has(left, c, None) != _has(right, c, None)
    n = sum(1 for x in pool if x["shape"] == s)
    k = n if rng.random() < 0.5 else rng.choice([v for v in range(0, 6) if v != n])
    return f"there are {k} {PLURALS[s]} in total.", n == k


# ------------------------------------------------------------------------- writer

def write_synthetic_tasks(version_dir: str | Path, out: str | Path, seed: int = 0,
                          nlvr2_pairs_per_image: float = 2.0) -> dict[str, Any]:
    """Write every task's files for a synthetic version under ``out``; returns meta.json."""
    version_dir, out = Path(version_dir), Path(out)
    samples = sorted(iter_scenes(version_dir), key=lambda s: s["key"])
    if not samples:
        raise ValueError(f"{version_dir}: no samples")
    rng = random.Random(seed)
    image_map: dict[str, str] = {}
    by_split: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for i, s in enumerate(samples, 1):
        s["image_id"] = i
        s["file"] = image_file(i)
        s["split"] = split_of(s["key"])
        image_map[s["file"]] = s["key"]
        by_split[s["split"]].append(s)
    counts: dict[str, Any] = {"images": {k: len(v) for k, v in by_split.items()}}

    # Karpathy: one caption per image (the scene's caption)
    kp = {"dataset": "synthetic", "images": [
        {"filepath": "", "filename": s["file"], "imgid": s["image_id"], "split": s["split"],
         "sentids": [s["image_id"]],
         "sentences": [{"raw": s["caption"], "tokens": s["caption"].split(),
                        "imgid": s["image_id"], "sentid": s["image_id"]}]} for s in samples]}
    _write_json(out / "karpathy" / "dataset_synthetic.json", kp)

    # VQA v2
    qid = 0
    counts["vqa_questions"] = {}
    for split in SPLITS:
        questions, annotations = [], []
        for s in by_split[split]:
            for q, a, atype, qtype in vqa_questions(s["scene"], rng):
                qid += 1
                questions.append({"image_id": s["image_id"], "question": q, "question_id": qid})
                annotations.append({
                    "question_id": qid, "image_id": s["image_id"], "question_type": qtype,
                    "answer_type": atype, "multiple_choice_answer": a,
                    "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": j + 1}
                                for j in range(N_ANNOTATORS)]})
        info = {"description": f"synthetic VQA from {version_dir}", "version": "2.0"}
        _write_json(out / "vqa" / f"v2_OpenEnded_mscoco_{split}_questions.json",
                    {"info": info, "task_type": "Open-Ended", "data_type": "mscoco",
                     "data_subtype": VQA_SUBTYPE, "license": {}, "questions": questions})
        _write_json(out / "vqa" / f"v2_mscoco_{split}_annotations.json",
                    {"info": info, "data_type": "mscoco", "data_subtype": VQA_SUBTYPE,
                     "license": {}, "annotations": annotations})
        counts["vqa_questions"][split] = len(questions)

    # NLVR2: pairs within a split, labels balanced by rejection (at most a few tries)
    counts["nlvr2"] = {}
    (out / "nlvr2").mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        pool = by_split[split]
        n_pairs = int(len(pool) * nlvr2_pairs_per_image) if len(pool) >= 2 else 0
        lines = []
        for p in range(n_pairs):
            want = p % 2 == 0
            for _ in range(20):
                left, right = rng.sample(pool, 2)
                sentence, label = nlvr2_statement(left["scene"], right["scene"], rng)
                if label == want:
                    break
            ident = f"{NLVR2_FILES[split]}-{p}-0-0"
            stem = ident.rsplit("-", 1)[0]
            image_map[f"{stem}-img0.png"] = left["key"]
            image_map[f"{stem}-img1.png"] = right["key"]
            lines.append(json.dumps({"identifier": ident, "sentence": sentence,
                                     "label": "True" if label else "False",
                                     "left_url": left["file"], "right_url": right["file"],
                                     "synset": "synthetic", "query": "", "writer": "synthetic"}))
        (out / "nlvr2" / f"{NLVR2_FILES[split]}.json").write_text(
            "".join(line + "\n" for line in lines), encoding="utf-8")
        counts["nlvr2"][split] = len(lines)

    # RefCOCO+: every object is an instance; a ref for each object that its description
    # (size colour shape, no location words as in RefCOCO+) singles out among >= 2 objects
    images, anns, refs = [], [], []
    cats = {s: i + 1 for i, s in enumerate(SHAPES)}
    ann_id = ref_id = 0
    counts["refs"] = {s: 0 for s in SPLITS}
    for s in samples:
        images.append({"id": s["image_id"], "file_name": s["file"], "width": s["width"],
                       "height": s["height"]})
        objs = s["scene"]["objects"]
        descs = [describe(o) for o in objs]
        for o, d in zip(objs, descs):
            ann_id += 1
            x0, y0, x1, y1 = o["box"]
            w, h = s["width"], s["height"]
            bbox = [round(x0 * w, 2), round(y0 * h, 2), round((x1 - x0) * w, 2), round((y1 - y0) * h, 2)]
            anns.append({"id": ann_id, "image_id": s["image_id"], "bbox": bbox,
                         "area": round(bbox[2] * bbox[3], 2), "category_id": cats[o["shape"]],
                         "iscrowd": 0})
            if len(objs) >= 2 and descs.count(d) == 1:
                ref_id += 1
                refs.append({"ref_id": ref_id, "image_id": s["image_id"], "ann_id": ann_id,
                             "split": s["split"], "category_id": cats[o["shape"]],
                             "file_name": s["file"],
                             "sentences": [{"sent": f"the {d}", "raw": f"the {d}",
                                            "tokens": ["the", *d.split()], "sent_id": ref_id}]})
                counts["refs"][s["split"]] += 1
    _write_json(out / "refcoco+" / "instances.json",
                {"images": images, "annotations": anns,
                 "categories": [{"id": i, "name": n, "supercategory": "shape"} for n, i in cats.items()]})
    _write_json(out / "refcoco+" / "refs.json", refs)

    _write_json(out / "image_map.json", image_map)
    meta = {"source": str(version_dir), "seed": seed, "counts": counts,
            "splits": {"karpathy": list(SPLITS), "vqa": list(SPLITS),
                       "nlvr2": [NLVR2_FILES[s] for s in SPLITS], "refcoco+": list(SPLITS)}}
    _write_json(out / "meta.json", meta)
    log.info("synthetic tasks -> %s: %s", out, json.dumps(counts))
    return meta


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(obj))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m mamo.downstream.synthetic_tasks",
        description="Write retrieval/VQA/NLVR2/grounding files (public formats) from a "
                    "synthetic dataset version's ground-truth scenes.")
    ap.add_argument("--version-dir", required=True, help="<root>/<dataset>/<version> of a synthetic version")
    ap.add_argument("--out", required=True, help="output folder (default layout in the module doc)")
    ap.add_argument("--seed", type=int, default=0, help="seed of question/statement sampling")
    args = ap.parse_args(argv)
    write_synthetic_tasks(args.version_dir, args.out, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
