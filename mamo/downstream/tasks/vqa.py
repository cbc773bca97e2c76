"""VQA v2: answer classification on the fused [CLS] of (image, question).

Answer vocabulary: the ``options.vqa_max_answers`` most frequent (normalised) training answers.
Targets: ``min(count/3, 1)`` per answer (soft BCE). Metric: the VQA score of the arg-max
answer (``min(count/3, 1)``; the official leave-one-out average is reported too), overall and
per answer type. Baseline: the majority training answer for every question.
"""
from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import torch

from mamo.downstream.heads import VQAHead
from mamo.downstream.metrics import normalize_answer, vqa_answer_scores, vqa_score, vqa_score_official
from mamo.downstream.readers import VQAQuestion, read_vqa
from mamo.downstream.tasks.common import Context, TaskState, TaskTraining

log = logging.getLogger(__name__)


def load_split(ctx: Context, split: str) -> list[VQAQuestion]:
    f = ctx.cfg.data.files
    ann = ctx.path(f.vqa_annotations, split)
    qs = read_vqa(ctx.path(f.vqa_questions, split), ann if ann.is_file() else None)
    missing = [q for q in qs if q.image_file not in ctx.images]
    if missing:
        raise ValueError(f"VQA {split}: question_id {missing[0].question_id} refers to image "
                         f"{missing[0].image_file!r}, which is not among the images")
    return qs


def answer_vocab(questions: list[VQAQuestion], max_answers: int) -> list[str]:
    counts = Counter(normalize_answer(a) for q in questions for a in q.answers)
    # deterministic: by count, then alphabetically
    return [a for a, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_answers]]


def fused_cls(ctx: Context, model, image_files: list[str], texts: list[str]) -> torch.Tensor:
    img_emb, _ = model.encode_image(ctx.image_tensor(image_files))
    ids, mask = ctx.text(texts)
    txt_emb, _ = model.encode_text(ids, mask)
    return model.fuse(img_emb, txt_emb, mask).text_cls


def training(ctx: Context, model) -> TaskTraining:
    """The answer vocabulary, soft targets, a fresh head and its BCE step."""
    cfg = ctx.cfg
    train = [q for q in load_split(ctx, cfg.data.train_split) if q.answers]
    answers = answer_vocab(train, cfg.options.vqa_max_answers)
    index = {a: i for i, a in enumerate(answers)}
    targets = torch.zeros(len(train), len(answers))
    for i, q in enumerate(train):
        for a, s in vqa_answer_scores(q.answers).items():
            if a in index:
                targets[i, index[a]] = s
    head = VQAHead(model.model_cfg.text.width, len(answers)).to(ctx.device)
    log.info("vqa: %d training questions, %d answers", len(train), len(answers))

    def step(idx: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
        qs = [train[i] for i in idx.tolist()]
        logits = head(fused_cls(ctx, model, [q.image_file for q in qs], [q.question for q in qs]))
        loss = VQAHead.loss(logits, targets[idx].to(ctx.device))
        return {"loss": loss}

    majority = Counter(normalize_answer(q.multiple_choice_answer or q.answers[0]) for q in train).most_common(1)[0][0]
    # a stronger blind baseline: the most frequent answer of each question type (language prior)
    by_type: dict[str, Counter] = {}
    for q in train:
        by_type.setdefault(q.question_type or "", Counter())[normalize_answer(q.multiple_choice_answer or q.answers[0])] += 1
    prior = {t: c.most_common(1)[0][0] for t, c in sorted(by_type.items())}
    return TaskTraining(n_examples=len(train), step=step, head=head,
                        meta={"answers": answers, "majority_answer": majority, "prior_by_question_type": prior})


def build_head(model, meta: dict[str, Any]) -> VQAHead:
    return VQAHead(model.model_cfg.text.width, len(meta["answers"]))


@torch.no_grad()
def evaluate(ctx: Context, model, state: TaskState, batch_size: int = 64) -> dict[str, Any]:
    qs = [q for q in load_split(ctx, ctx.cfg.data.eval_split) if q.answers]
    answers = state.meta["answers"]
    majority = state.meta["majority_answer"]
    prior = state.meta.get("prior_by_question_type", {})
    model.eval()
    state.head.eval()
    preds: list[str] = []
    for s in range(0, len(qs), batch_size):
        chunk = qs[s: s + batch_size]
        logits = state.head(fused_cls(ctx, model, [q.image_file for q in chunk], [q.question for q in chunk]))
        preds += [answers[i] for i in logits.argmax(-1).tolist()]
    score = [vqa_score(p, q.answers) for p, q in zip(preds, qs)]
    by_type: dict[str, list[float]] = {}
    for sc, q in zip(score, qs):
        by_type.setdefault(q.answer_type or "all", []).append(sc)
    n = max(1, len(qs))
    return {
        "task": "vqa", "split": ctx.cfg.data.eval_split, "n": len(qs),
        "vqa_score": 100.0 * sum(score) / n,
        "vqa_score_official": 100.0 * sum(vqa_score_official(p, q.answers) for p, q in zip(preds, qs)) / n,
        "by_answer_type": {k: 100.0 * sum(v) / len(v) for k, v in sorted(by_type.items())},
        "baseline_majority": 100.0 * sum(vqa_score(majority, q.answers) for q in qs) / n,
        "majority_answer": majority,
        "baseline_question_type_prior": 100.0 * sum(
            vqa_score(prior.get(q.question_type or "", majority), q.answers) for q in qs) / n,
        "examples": [{"question": q.question, "prediction": p, "answer": q.multiple_choice_answer}
                     for q, p in list(zip(qs, preds))[:10]],
    }
