"""Scoring a model: image/text features and ITM scores (``ModelScorer``), and zero-shot
retrieval from them (ITC ranking, ITM re-ranking of the top-k), shared by the pre-training
evaluation and the downstream retrieval task.

The model is reached only through ``ModelScorer``, so the metric code stays independent of
the model's internals.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from mamo.evaluation.retrieval import reranked_metrics, rerank_with_itm, retrieval_metrics

log = logging.getLogger(__name__)


class ModelScorer:
    """Wraps ``mamo.model.MAMO`` for scoring: caches text encodings by caption string.

    ``tokenizer`` is a ``mamo.loader.TextTokenizer`` (captions -> ids and mask padded to the
    model's text length), the one the public ``mamo.load`` hands out.
    """

    def __init__(self, model: Any, tokenizer: Any, device: str | torch.device = "cpu", batch_size: int = 64):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._text: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    @torch.no_grad()
    def images(self, images: torch.Tensor | Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(embeds [N, 1+P, D], feats [N, E])`` (feats L2-normalised), kept on the CPU.

        ``images``: one ``[N, 3, H, W]`` tensor, or batches of them (read lazily, so a large
        split never sits in memory whole)."""
        batches = (images[s : s + self.batch_size] for s in range(0, len(images), self.batch_size)) \
            if isinstance(images, torch.Tensor) else images
        embs, feats = [], []
        for batch in batches:
            e, f = self.model.encode_image(batch.to(self.device))
            embs.append(e.float().cpu())
            feats.append(f.float().cpu())
        return torch.cat(embs), torch.cat(feats)

    @torch.no_grad()
    def texts(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(embeds [T, L, D], attention_mask [T, L], feats [T, E])`` for the captions."""
        missing = [c for c in dict.fromkeys(captions) if c not in self._text]
        for s in range(0, len(missing), self.batch_size):
            chunk = missing[s : s + self.batch_size]
            enc = self.tokenizer(chunk)
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
        """Matching score per (image, text) row pair (the model's ITM log-odds)."""
        out = []
        for s in range(0, len(image_embeds), self.batch_size):
            sc = self.model.itm_score(image_embeds[s : s + self.batch_size].to(self.device),
                                      text_embeds[s : s + self.batch_size].to(self.device),
                                      attention_mask[s : s + self.batch_size].to(self.device))
            out.append(sc.float().cpu())
        return torch.cat(out).numpy() if out else np.zeros(0)

    @torch.inference_mode()
    def fuse_pairs(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor,
                   attention_mask: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
        """One fusion pass per (image, text) row pair: ``(ITM log-odds [B], fused CLS
        features [B, 2D])``, the features being the fusion output at position 0 (the image
        [CLS]) and at the text [CLS] (what the ITM head reads), concatenated."""
        scores, feats = [], []
        for s in range(0, len(image_embeds), self.batch_size):
            fused = self.model.fuse(image_embeds[s : s + self.batch_size].to(self.device),
                                    text_embeds[s : s + self.batch_size].to(self.device),
                                    attention_mask[s : s + self.batch_size].to(self.device))
            logits = self.model.itm_head(fused.text_cls)
            scores.append((logits[:, 1] - logits[:, 0]).float().cpu())
            feats.append(torch.cat([fused.hidden[:, 0], fused.text_cls], -1).float().cpu())
        if not scores:
            return np.zeros(0), torch.zeros(0)
        return torch.cat(scores).numpy(), torch.cat(feats)

    @property
    def text_target(self) -> str | None:
        """What the model's text heads predict ("mlm", "concept", or "concept_mlm": a concept
        head and the MLM fallback head); None without a text head. A concept_mlm model
        trained without its MLM head (``lambda_t_mlm=0``) counts as "concept"."""
        if getattr(self.model, "text_head", None) is None:
            return None
        target = str(self.model.loss_cfg.text_target)
        if target == "concept_mlm" and getattr(self.model, "mlm_head", None) is None:
            return "concept"
        return target

    def text_head(self, kind: str) -> torch.nn.Module:
        """The head that predicts ``kind`` targets ("concept" or "mlm"): ``text_head``, or
        under concept_mlm ``mlm_head`` for "mlm"."""
        from mamo.model.mamo import text_head_kind

        if kind == text_head_kind(self.model.loss_cfg.text_target) and self.model.text_head is not None:
            return self.model.text_head
        if kind == "mlm" and getattr(self.model, "mlm_head", None) is not None:
            return self.model.mlm_head
        raise ValueError(f"the model (text_target={self.model.loss_cfg.text_target!r}) has no head "
                         f"for {kind!r} targets")

    @torch.inference_mode()
    def text_logits(self, image_embeds: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    positions: torch.Tensor, head: str | None = None) -> torch.Tensor:
        """The text head's logits ``[B, P, C]`` at text ``positions [B, P]`` of the fused
        student on (image, caption); the caption is taken as given (masks included).
        ``head``: the kind of targets ("concept"/"mlm", :meth:`text_head`); None = ``text_head``."""
        dev = self.device
        e, _ = self.model.encode_text(input_ids.to(dev), attention_mask.to(dev))
        fused = self.model.fuse(image_embeds.to(dev), e, attention_mask.to(dev))
        h = fused.text_hidden.gather(1, positions.to(dev)[..., None].expand(-1, -1, fused.hidden.shape[-1]))
        module = self.model.text_head if head is None else self.text_head(head)
        return module(h).float().cpu()


@dataclass
class Retrieval:
    """Zero-shot retrieval of a set of images against their distinct captions."""

    texts: list[str]  # the distinct captions, in first-seen order
    positives: np.ndarray  # bool [n_images, n_texts]
    sim: np.ndarray  # ITC cosine similarities [n_images, n_texts]
    sim_i2t: np.ndarray  # after ITM re-ranking, for text retrieval
    sim_t2i: np.ndarray  # after ITM re-ranking, for image retrieval
    itc: dict[str, float]
    itm_rerank: dict[str, float]
    image_embeds: torch.Tensor
    image_feats: torch.Tensor


def score_retrieval(scorer: ModelScorer, images: torch.Tensor | Iterable[torch.Tensor],
                    captions: Sequence[Sequence[str]], k: int) -> Retrieval:
    """ITC retrieval and its ITM re-ranking of the top ``k``.

    ``captions[i]`` are image i's correct captions. Captions repeat in synthetic data, so
    retrieval runs among the distinct texts; a text is correct for every image it describes.
    """
    t0 = time.time()
    img_emb, img_feat = scorer.images(images)
    texts = list(dict.fromkeys(c for caps in captions for c in caps))
    txt_emb, txt_mask, txt_feat = scorer.texts(texts)
    index = {t: j for j, t in enumerate(texts)}
    positives = np.zeros((len(captions), len(texts)), dtype=bool)
    for i, caps in enumerate(captions):
        for c in caps:
            positives[i, index[c]] = True
    sim = (img_feat @ txt_feat.T).numpy()
    log.info("features: %d images, %d distinct texts (%.1fs)", len(captions), len(texts), time.time() - t0)

    def score_pairs(ii: np.ndarray, jj: np.ndarray) -> np.ndarray:
        return scorer.itm(img_emb[ii], txt_emb[jj], txt_mask[jj])

    t1 = time.time()
    s_i2t, s_t2i = rerank_with_itm(sim, score_pairs, k=k)
    log.info("ITM re-ranking of the top-%d: %.1fs", k, time.time() - t1)
    return Retrieval(texts, positives, sim, s_i2t, s_t2i, retrieval_metrics(sim, positives),
                     reranked_metrics(s_i2t, s_t2i, positives), img_emb, img_feat)
