"""The pre-training evaluation: zero-shot retrieval (ITC, then ITM re-ranking of the top-k),
the fine-grained benchmark (ITM and ITC scorers) and retrieval examples, on an ``EvalSet``;
``evaluate(...)`` does it for a saved model and writes ``results.json`` and the report.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from mamo.core.files import disk_errors, write_json
from mamo.core.lock import check_free, exclusive
from mamo.data.index import require_intact
from mamo.evaluation.data import EvalSet
from mamo.evaluation.finegrained import build_items, evaluate_finegrained
from mamo.evaluation.report import CaptionHit, RetrievalExample, decode_jpeg
from mamo.evaluation.scoring import ModelScorer, score_retrieval
from mamo.run_dir import RunDir

log = logging.getLogger(__name__)


def run_evaluation(scorer: ModelScorer, data: EvalSet, k: int = 16, fg_seed: int = 0,
                   n_examples: int = 8, top_captions: int = 5) -> tuple[dict[str, Any], list[RetrievalExample]]:
    """Retrieval + fine-grained results dict, and retrieval examples for the report."""
    r = score_retrieval(scorer, data.images, [[c] for c in data.captions], k)
    img_emb, img_feat, texts, positives, s_i2t = r.image_embeds, r.image_feats, r.texts, r.positives, r.sim_i2t
    results: dict[str, Any] = {
        "n_images": len(data), "n_texts": len(texts),
        "retrieval": {"k": k, "itc": r.itc, "itm_rerank": r.itm_rerank},
    }

    # fine-grained benchmark on the images that carry a synthetic scene
    with_scene = [i for i, s in enumerate(data.scenes) if s is not None]
    if with_scene:
        t2 = time.time()
        items = build_items([data.keys[i] for i in with_scene], [data.scenes[i] for i in with_scene], fg_seed)

        def fg_itm(idx: np.ndarray, caps: list[str]) -> np.ndarray:
            rows = np.asarray([with_scene[int(i)] for i in idx])
            e, m, _ = scorer.texts(caps)
            return scorer.itm(img_emb[rows], e, m)

        def fg_itc(idx: np.ndarray, caps: list[str]) -> np.ndarray:
            rows = np.asarray([with_scene[int(i)] for i in idx])
            _, _, f = scorer.texts(caps)
            return (img_feat[rows] * f).sum(-1).numpy()

        results["finegrained"] = evaluate_finegrained(items, {"itm": fg_itm, "itc": fg_itc})
        log.info("fine-grained: %d items over %d images (%.1fs)", len(items), len(with_scene), time.time() - t2)

    examples = []
    for i in range(min(n_examples, len(data))):
        order = np.argsort(-s_i2t[i], kind="stable")[:top_captions]
        examples.append(RetrievalExample(
            data.keys[i], decode_jpeg(data.jpegs[i]), data.captions[i],
            [CaptionHit(texts[j], float(s_i2t[i, j]), bool(positives[i, j])) for j in order]))
    return results, examples


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
) -> tuple[dict[str, Any], Path]:
    """Evaluate a run (or a checkpoint + data version); returns (results, report path).

    The model is rebuilt from the checkpoint's own config (``mamo.loader``); the run config
    (``config_path``, default the one belonging to the checkpoint, with ``overrides``) gives
    the data settings: the eval version, the text length and the image normalisation.
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
    scorer = ModelScorer(model, TextTokenizer(cfg.data.max_text_len), device)
    results, examples = run_evaluation(scorer, evalset, k=k, fg_seed=fg_seed, n_examples=n_examples)
    results.update({"run": str(run.path) if run else "", "checkpoint": str(checkpoint or ckpt.dir.weights),
                    "data": str(version), "eval_seconds": round(time.time() - t0, 1)})
    config_text = Path(config_path).read_text(encoding="utf-8")
    name = run.path.name if run else ckpt.dir.path.name
    # One writer per output dir; a full or read-only disk is one line naming the stage and path
    # (results.json is atomic, the report's index.html is written after its figures).
    with disk_errors("evaluation", out.path), exclusive(out.path, "evaluation"):
        write_json(out.results, results)
        with disk_errors("report", out.report):
            report = write_report(out.report, results, run.metrics if run else None, examples, config_text,
                                  title=f"MAMO run report: {name}")
    return results, report
