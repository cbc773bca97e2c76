"""Evaluate a model on an ``EvalSet``: zero-shot retrieval (ITC, then ITM re-ranking of the
top-k) and the fine-grained benchmark (ITM and ITC scorers), plus retrieval examples.

The model is reached only through ``ModelScorer`` (image/text features and the ITM score),
so that the metric code stays independent of the model's internals.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import torch

from mamo.evaluation.data import EvalSet
from mamo.evaluation.finegrained import build_items, evaluate_finegrained
from mamo.evaluation.report import CaptionHit, RetrievalExample, decode_jpeg
from mamo.evaluation.retrieval import reranked_metrics, rerank_with_itm, retrieval_metrics


def _log(msg: str) -> None:
    print(f"[evaluate] {msg}", flush=True)


class ModelScorer:
    """Wraps ``mamo.model.MAMO`` for scoring: caches text encodings by caption string."""

    def __init__(self, model: Any, tokenizer: Any, max_len: int, device: str | torch.device = "cpu",
                 batch_size: int = 64):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_len = max_len
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._text: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    @torch.no_grad()
    def images(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(embeds [N, 1+P, D], feats [N, E])`` (feats L2-normalised), kept on the CPU."""
        embs, feats = [], []
        for s in range(0, len(images), self.batch_size):
            e, f = self.model.encode_image(images[s : s + self.batch_size].to(self.device))
            embs.append(e.float().cpu())
            feats.append(f.float().cpu())
        return torch.cat(embs), torch.cat(feats)

    @torch.no_grad()
    def texts(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(embeds [T, L, D], attention_mask [T, L], feats [T, E])`` for the captions."""
        from concepts.encode import encode_batch

        missing = [c for c in dict.fromkeys(captions) if c not in self._text]
        for s in range(0, len(missing), self.batch_size):
            chunk = missing[s : s + self.batch_size]
            enc = encode_batch(list(chunk), [[] for _ in chunk], self.tokenizer, self.max_len)
            ids = enc["input_ids"].to(self.device)
            mask = enc["attention_mask"].to(self.device)
            e, f = self.model.encode_text(ids, mask)
            for i, c in enumerate(chunk):
                self._text[c] = (e[i].float().cpu(), mask[i].cpu(), f[i].float().cpu())
        rows = [self._text[c] for c in captions]
        return (torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows]),
                torch.stack([r[2] for r in rows]))

    @torch.no_grad()
    def itm(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor,
            attention_mask: torch.Tensor) -> np.ndarray:
        """Matching score per (image, text) row pair (the model's ITM "match" logit/prob)."""
        out = []
        for s in range(0, len(image_embeds), self.batch_size):
            sc = self.model.itm_score(image_embeds[s : s + self.batch_size].to(self.device),
                                      text_embeds[s : s + self.batch_size].to(self.device),
                                      attention_mask[s : s + self.batch_size].to(self.device))
            out.append(sc.float().cpu())
        return torch.cat(out).numpy() if out else np.zeros(0)


def run_evaluation(scorer: ModelScorer, data: EvalSet, k: int = 16, fg_seed: int = 0,
                   n_examples: int = 8, top_captions: int = 5) -> tuple[dict[str, Any], list[RetrievalExample]]:
    """Retrieval + fine-grained results dict, and retrieval examples for the report."""
    t0 = time.time()
    img_emb, img_feat = scorer.images(data.images)
    # Synthetic captions repeat: retrieve among distinct texts; a text is correct for every
    # image whose caption it is.
    texts = list(dict.fromkeys(data.captions))
    txt_emb, txt_mask, txt_feat = scorer.texts(texts)
    text_index = {t: j for j, t in enumerate(texts)}
    positives = np.zeros((len(data), len(texts)), dtype=bool)
    for i, c in enumerate(data.captions):
        positives[i, text_index[c]] = True
    sim = (img_feat @ txt_feat.T).numpy()
    _log(f"features: {len(data)} images, {len(texts)} distinct texts ({time.time() - t0:.1f}s)")

    itc = retrieval_metrics(sim, positives)

    def score_pairs(ii: np.ndarray, jj: np.ndarray) -> np.ndarray:
        return scorer.itm(img_emb[ii], txt_emb[jj], txt_mask[jj])

    t1 = time.time()
    s_i2t, s_t2i = rerank_with_itm(sim, score_pairs, k=k)
    rerank = reranked_metrics(s_i2t, s_t2i, positives)
    _log(f"ITM re-ranking of the top-{k}: {time.time() - t1:.1f}s")
    results: dict[str, Any] = {
        "n_images": len(data), "n_texts": len(texts),
        "retrieval": {"k": k, "itc": itc, "itm_rerank": rerank},
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
        _log(f"fine-grained: {len(items)} items over {len(with_scene)} images ({time.time() - t2:.1f}s)")

    examples = []
    for i in range(min(n_examples, len(data))):
        order = np.argsort(-s_i2t[i], kind="stable")[:top_captions]
        examples.append(RetrievalExample(
            data.keys[i], decode_jpeg(data.jpegs[i]), data.captions[i],
            [CaptionHit(texts[j], float(s_i2t[i, j]), bool(positives[i, j])) for j in order]))
    return results, examples
