"""The pre-training evaluation: zero-shot retrieval (ITC, then ITM re-ranking of the top-k),
the fine-grained benchmark (ITM and ITC scorers) and retrieval examples, on an ``EvalSet``;
``evaluate(...)`` does it for a saved model and writes ``results.json`` and the report.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from mamo.core.files import disk_errors, write_json
from mamo.core.lock import check_free, exclusive
from mamo.data.index import require_intact
from mamo.evaluation.data import EvalSet
from mamo.evaluation.finegrained import CHANGE_TYPES, accuracy_table, build_items
from mamo.evaluation.finegrained import items_per_type as count_items
from mamo.evaluation.masked_word import build_queries, score_by_head
from mamo.evaluation.masked_word import per_type as masked_word_table
from mamo.evaluation.probe import probe_accuracy, probe_split
from mamo.evaluation.report import CaptionHit, RetrievalExample, decode_jpeg
from mamo.evaluation.scoring import ModelScorer, score_retrieval
from mamo.run_dir import RunDir

log = logging.getLogger(__name__)


def _scene_rows(data: EvalSet) -> list[int]:
    return [i for i, s in enumerate(data.scenes) if s is not None]


def run_finegrained(scorer: ModelScorer, data: EvalSet, seed: int = 0, items_per_type: int | None = None,
                    probe_train_share: float = 0.5, concept_to_id: Mapping[str, int] | None = None,
                    image_embeds: torch.Tensor | None = None, image_feats: torch.Tensor | None = None,
                    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The fine-grained readouts of one model on the scenes of ``data``: the ITM and ITC
    scorers, linear probes on the fused and the unimodal features, masked-word scoring.

    Returns (results: ``finegrained``, ``probe``, ``masked_word``, ``finegrained_items_per_type``,
    ``finegrained_seconds``; per-item scores for the paired statistics: ``change`` and, per
    readout, a float array with 1 = correct, 0 = wrong, NaN = no score). ``image_embeds`` /
    ``image_feats``: the encoded images of ``data`` when the caller has them already.
    """
    t0 = time.time()
    rows_of = _scene_rows(data)
    items = build_items([data.keys[i] for i in rows_of], [data.scenes[i] for i in rows_of], seed, items_per_type)
    rows = np.asarray(rows_of)
    if image_embeds is None or image_feats is None:
        # encode only the images the (capped) items use; ``rows`` then points into that subset
        used = sorted({it.image_index for it in items})
        image_embeds, image_feats = scorer.images(data.images[rows[used]] if used else data.images[:0])
        remap = np.full(len(rows_of), -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        rows = remap
    timings = {"images": time.time() - t0}

    # one fusion pass per distinct (image, caption) pair gives the ITM score and the fused CLS
    pairs = sorted({(it.image_index, c) for it in items for c in (it.true_caption, it.negative_caption)})
    where = {p: n for n, p in enumerate(pairs)}
    itm = np.zeros(len(pairs))
    itc = np.zeros(len(pairs))
    fused_f: list[torch.Tensor] = []
    uni_f: list[torch.Tensor] = []
    step = 4 * scorer.batch_size
    with torch.inference_mode():
        for s in range(0, len(pairs), step):
            chunk = pairs[s : s + step]
            r = rows[[p[0] for p in chunk]]
            e, m, f = scorer.texts([p[1] for p in chunk])
            sc, ff = scorer.fuse_pairs(image_embeds[r], e, m)
            itm[s : s + len(chunk)] = sc
            im = image_feats[r]
            itc[s : s + len(chunk)] = (im * f).sum(-1).numpy()
            fused_f.append(ff)
            uni_f.append(torch.cat([im, f, im * f], -1))
    t_idx = np.array([where[(it.image_index, it.true_caption)] for it in items], dtype=np.int64)
    n_idx = np.array([where[(it.image_index, it.negative_caption)] for it in items], dtype=np.int64)
    timings["pairs"] = time.time() - t0 - sum(timings.values())
    per_item: dict[str, np.ndarray] = {
        "change": np.array([it.change for it in items]),
        "itm": (itm[t_idx] > itm[n_idx]).astype(float),
        "itc": (itc[t_idx] > itc[n_idx]).astype(float),
    }
    results: dict[str, Any] = {
        "finegrained": {"itm": accuracy_table(items, per_item["itm"] > 0),
                        "itc": accuracy_table(items, per_item["itc"] > 0)},
        "finegrained_items_per_type": count_items(items),
    }

    # linear probes: train on the items of one share of the images, score on the others
    train = probe_split(np.array([it.image_index for it in items]), probe_train_share, seed)
    probes: dict[str, dict[str, float | None]] = {}
    for name, feats in (("fused", torch.cat(fused_f).numpy() if fused_f else np.zeros((0, 1))),
                        ("unimodal", torch.cat(uni_f).numpy() if uni_f else np.zeros((0, 1)))):
        table: dict[str, float | None] = {}
        for change in [*CHANGE_TYPES, "overall"]:
            sel = np.ones(len(items), bool) if change == "overall" else per_item["change"] == change
            if not sel.any():
                continue
            acc, correct = probe_accuracy(feats[t_idx[sel]], feats[n_idx[sel]], train[sel])
            table[change] = acc
            per_item[f"probe_{name}/{change}"] = correct
        probes[name] = table
    results["probe"] = probes
    timings["probes"] = time.time() - t0 - sum(timings.values())
    results["probe_train_images"] = len({it.image_index for it, t in zip(items, train) if t})

    # masked-word scoring, for models with a text head
    target = scorer.text_target
    results["masked_word"] = None
    if target is not None and (target == "mlm" or concept_to_id is not None):
        queries = build_queries(items, scorer.tokenizer.tokenizer, scorer.tokenizer.max_len, target, concept_to_id)

        def logits_for(head: str):
            def logits_fn(idx: np.ndarray, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
                return scorer.text_logits(image_embeds[rows[idx]], ids, mask, pos, head)
            return logits_fn

        mw, by_head = score_by_head(queries, len(items), logits_for, scorer.batch_size)
        per_item["masked_word"] = mw
        results["masked_word"] = {"target": target, **masked_word_table(items, mw)}
        if target == "concept_mlm":  # how many items each head scored (concept / MLM fallback)
            results["masked_word"]["items_by_head"] = by_head
        timings["masked_word"] = time.time() - t0 - sum(timings.values())
    results["finegrained_seconds"] = round(time.time() - t0, 1)
    log.info("fine-grained readouts: %d items over %d images (%.1fs: %s)", len(items), len(rows_of),
             time.time() - t0, ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    return results, per_item


@dataclass(frozen=True)
class FineGrained:
    """Where and how the fine-grained readouts run.

    ``data``: a version dir (or a loaded ``EvalSet``) of synthetic scenes sized for the
    benchmark; None = the scenes of the evaluation set itself. ``items_per_type``: the cap per
    change type (None = every item). ``probe_train_share``: the share of images whose items
    train the probes (the others score them). ``max_images``: read at most this many."""

    data: str | Path | EvalSet | None = None
    items_per_type: int | None = None
    probe_train_share: float = 0.5
    max_images: int | None = None


# Per-item scores of the fine-grained readouts, beside results.json (for paired statistics).
ITEMS_FILE = "finegrained_items.npz"


def save_items(path: Path, per_item: dict[str, np.ndarray]) -> None:
    """Per-item scores as .npz ("/" in names stored as "__")."""
    from mamo.core.files import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **{k.replace("/", "__"): v for k, v in per_item.items()})


def load_items(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k.replace("__", "/"): z[k] for k in z.files}


def run_evaluation(scorer: ModelScorer, data: EvalSet, k: int = 16, fg_seed: int = 0,
                   n_examples: int = 8, top_captions: int = 5, fg: FineGrained | None = None,
                   concept_to_id: Mapping[str, int] | None = None,
                   ) -> tuple[dict[str, Any], list[RetrievalExample], dict[str, np.ndarray]]:
    """Retrieval + fine-grained results dict, retrieval examples for the report and the
    fine-grained per-item scores (empty without scenes)."""
    fg = fg or FineGrained()
    r = score_retrieval(scorer, data.images, [[c] for c in data.captions], k)
    img_emb, img_feat, texts, positives, s_i2t = r.image_embeds, r.image_feats, r.texts, r.positives, r.sim_i2t
    results: dict[str, Any] = {
        "n_images": len(data), "n_texts": len(texts),
        "retrieval": {"k": k, "itc": r.itc, "itm_rerank": r.itm_rerank},
    }

    # the fine-grained readouts: on their own held-out set when given, else on this one's scenes
    per_item: dict[str, np.ndarray] = {}
    if isinstance(fg.data, EvalSet):
        out, per_item = run_finegrained(scorer, fg.data, fg_seed, fg.items_per_type, fg.probe_train_share,
                                        concept_to_id)
        results.update(out)
        results["finegrained_images"] = len(fg.data)
    elif any(sc is not None for sc in data.scenes):
        out, per_item = run_finegrained(scorer, data, fg_seed, fg.items_per_type, fg.probe_train_share,
                                        concept_to_id, img_emb, img_feat)
        results.update(out)

    examples = []
    for i in range(min(n_examples, len(data))):
        order = np.argsort(-s_i2t[i], kind="stable")[:top_captions]
        examples.append(RetrievalExample(
            data.keys[i], decode_jpeg(data.jpegs[i]), data.captions[i],
            [CaptionHit(texts[j], float(s_i2t[i, j]), bool(positives[i, j])) for j in order]))
    return results, examples, per_item


def concept_vocab(ckpt: Any, data_cfg: Any) -> Mapping[str, int] | None:
    """The vocabulary a concept head predicts (word -> id); None when the model has no
    concept head or the vocabulary cannot be opened (masked-word scoring is then null)."""
    from concepts.store import ConceptStore, ConceptStoreError

    if ckpt.loss.text_target not in ("concept", "concept_mlm") or ckpt.num_concepts <= 0 or data_cfg.version_dir is None:
        return None
    try:
        store = ConceptStore(data_cfg.version_dir, data_cfg.vocab_id)
    except ConceptStoreError as e:
        log.warning("masked-word scoring off: %s", e)
        return None
    if store.num_concepts != ckpt.num_concepts:
        log.warning("masked-word scoring off: the vocabulary has %d concepts, the head %d",
                    store.num_concepts, ckpt.num_concepts)
        return None
    return store.concept_to_id


def load_fg_set(fg: FineGrained, image_size: int, mean: Any, std: Any, crop_fraction: float) -> EvalSet | None:
    """``fg.data`` read and preprocessed (None when it names no separate set)."""
    from mamo.evaluation.data import load_eval_set

    if fg.data is None or isinstance(fg.data, EvalSet):
        return fg.data
    require_intact(Path(fg.data))
    return load_eval_set(fg.data, image_size, mean, std, fg.max_images, crop_fraction)


def evaluate_finegrained_checkpoint(checkpoint: str | Path, fg_set: EvalSet, fg: FineGrained,
                                    seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Only the fine-grained readouts of one saved model (e.g. a checkpoint along the way) on
    a loaded set, preprocessed for this model's image size."""
    from mamo.loader import TextTokenizer, build, resolve
    from mamo.trainer.config import load_run_config

    ckpt = resolve(checkpoint)
    cfg = load_run_config(str(ckpt.config), []) if ckpt.config else None
    model = build(ckpt, device)
    scorer = ModelScorer(model, TextTokenizer(ckpt.max_text_len), device)
    vocab = concept_vocab(ckpt, cfg.data) if cfg is not None else None
    out, _ = run_finegrained(scorer, fg_set, seed, fg.items_per_type, fg.probe_train_share, vocab)
    return out


def evaluate(
    run_dir: str | Path | None = None,
    checkpoint: str | Path | None = None,
    data: str | Path | None = None,
    config_path: str | Path | None = None,
    out_dir: str | Path | None = None,
    k: int = 16,
    max_items: int | None = 500,
    fg_seed: int = 0,
    n_examples: int = 8,
    device: str = "cpu",
    overrides: tuple[str, ...] = (),
    threads: int = 0,
    fg: FineGrained | None = None,
) -> tuple[dict[str, Any], Path]:
    """Evaluate a run (or a checkpoint + data version); returns (results, report path).

    The model is rebuilt from the checkpoint's own config (``mamo.loader``); the run config
    (``config_path``, default the one belonging to the checkpoint, with ``overrides``) gives
    the data settings: the eval version, the text length and the image normalisation.
    ``fg``: the fine-grained readouts' own held-out set and sizes (default: on the eval set).
    Writes ``results.json``, the per-item scores (``finegrained_items.npz``) and the report.
    """
    import torch

    from mamo.evaluation.data import load_eval_set
    from mamo.evaluation.report import write_report
    from mamo.loader import Preprocess, TextTokenizer, build, resolve
    from mamo.trainer.config import load_run_config

    if run_dir is None and checkpoint is None:
        raise ValueError("give a run directory or a checkpoint")
    ckpt = resolve(checkpoint if checkpoint is not None else run_dir)  # type: ignore[arg-type]
    run = RunDir(run_dir) if run_dir is not None else ckpt.run
    if config_path is None:
        if ckpt.config is None:
            raise FileNotFoundError(f"no config.yaml beside the checkpoint {ckpt.dir.path}: pass --config")
        config_path = ckpt.config
    cfg = load_run_config(str(config_path), list(overrides))
    if threads > 0:
        torch.set_num_threads(threads)
    t0 = time.time()
    model = build(ckpt, device, cfg.model.attn_impl)  # e.g. model.attn_impl=sdpa to leave Triton
    version = Path(data) if data else cfg.data.version_for("eval")
    out = RunDir(out_dir) if out_dir else (run or RunDir(ckpt.dir.path))
    check_free(out.path)  # a training (or evaluation) writing there now: refused before the work
    require_intact(version, cfg.data.verify)  # every shard as its manifest says, before any is read
    log.info("model %s; data %s", ckpt.dir.weights, version)
    pre = Preprocess(cfg.model.vision.image_size, cfg.data.mean, cfg.data.std, cfg.data.augment.eval_crop_fraction)
    evalset = load_eval_set(version, pre.image_size, pre.mean, pre.std, max_items, pre.crop_fraction)
    fg = fg or FineGrained()
    if fg.data is not None and not isinstance(fg.data, EvalSet):
        fg = replace(fg, data=load_fg_set(fg, pre.image_size, pre.mean, pre.std, pre.crop_fraction))
    scorer = ModelScorer(model, TextTokenizer(cfg.data.max_text_len), device)
    with torch.inference_mode():
        results, examples, per_item = run_evaluation(scorer, evalset, k=k, fg_seed=fg_seed, n_examples=n_examples,
                                                     fg=fg, concept_to_id=concept_vocab(ckpt, cfg.data))
    results.update({"run": str(run.path) if run else "", "checkpoint": str(checkpoint or ckpt.dir.weights),
                    "data": str(version), "eval_seconds": round(time.time() - t0, 1)})
    config_text = Path(config_path).read_text(encoding="utf-8")
    name = run.path.name if run else ckpt.dir.path.name
    # One writer per output dir; a full or read-only disk is one line naming the stage and path
    # (results.json is atomic, the report's index.html is written after its figures).
    with disk_errors("evaluation", out.path), exclusive(out.path, "evaluation"):
        if per_item:
            save_items(out.path / ITEMS_FILE, per_item)
        write_json(out.results, results)
        with disk_errors("report", out.report):
            report = write_report(out.report, results, run.metrics if run else None, examples, config_text,
                                  title=f"MAMO run report: {name}")
    return results, report
