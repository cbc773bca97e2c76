"""Per-run HTML report: loss curves per term, evaluation tables, retrieval examples.

``write_report(out_dir, results, metrics_path=..., examples=..., config_text=...)`` writes
``out_dir/index.html`` plus PNG figures beside it (matplotlib, Agg backend: no display
needed). The page is self-contained static HTML with relative image links, so the folder can
be copied or served as is. Section ids (stable, tests rely on them): ``summary``, ``losses``,
``retrieval``, ``finegrained``, ``examples``, ``config``.
"""
from __future__ import annotations

import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: never look for a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mamo.core.files import atomic_path, write_text  # noqa: E402

SECTIONS: tuple[str, ...] = ("summary", "losses", "retrieval", "finegrained", "examples", "config")
# Keys of results["masked_word"] that are not accuracies per change type.
MASKED_WORD_INFO = ("target", "items_by_head")
# Loss terms of the model contract (docs/ARCHITECTURE.md section 4), plotted in this order.
LOSS_TERMS: tuple[str, ...] = ("loss", "itc", "itm", "mmm", "mmm_implicit", "mmm_visual", "mmm_concept", "mmm_mlm")
# Non-loss series that are worth a panel when present.
AUX_TERMS: tuple[str, ...] = ("lr", "grad_norm", "temperature", "samples_per_s", "mfu")


@dataclass
class CaptionHit:
    text: str
    score: float
    correct: bool


@dataclass
class RetrievalExample:
    """One image with its ranked captions (text retrieval), for the examples grid."""

    key: str
    image: np.ndarray  # uint8 [H, W, 3]
    true_caption: str
    top: list[CaptionHit] = field(default_factory=list)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a metrics.jsonl (blank or broken trailing lines are skipped: a run may be live)."""
    rows = []
    p = Path(path)
    if not p.is_file():
        return rows
    for line in p.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _series(rows: Sequence[dict[str, Any]], name: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for i, r in enumerate(rows):
        v = r.get(name)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            xs.append(r.get("step", i))
            ys.append(float(v))
    return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or y.size < window:
        return y
    kernel = np.ones(window) / window
    # 'valid' would shorten the curve; pad with edge values so it stays aligned with x
    pad = np.concatenate([np.full(window // 2, y[0]), y, np.full(window - 1 - window // 2, y[-1])])
    return np.convolve(pad, kernel, mode="valid")


def plot_losses(rows: Sequence[dict[str, Any]], out_png: str | Path) -> list[str]:
    """One panel per loss term (raw, light; smoothed, dark). Returns the terms plotted."""
    # training rows only: evaluation rows (if the trainer logs any) carry a "split" key
    rows = [r for r in rows if r.get("split", "train") == "train"]
    terms = [t for t in LOSS_TERMS if _series(rows, t)[0].size]
    terms += [t for t in AUX_TERMS if _series(rows, t)[0].size]
    if not terms:
        return []
    ncol = min(3, len(terms))
    nrow = math.ceil(len(terms) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 2.8 * nrow), squeeze=False)
    for ax, term in zip(axes.flat, terms):
        x, y = _series(rows, term)
        window = max(1, len(y) // 30)
        ax.plot(x, y, color="tab:blue", alpha=0.3, lw=0.8)
        ax.plot(x, _smooth(y, window), color="tab:blue", lw=1.6)
        ax.set_title(term)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(terms):]:
        ax.axis("off")
    fig.tight_layout()
    _save(fig, out_png)
    plt.close(fig)
    return terms


def throughput(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Medians over the steps after the first (compilation, tuning, FLOP counting) of
    samples/s and, where the trainer knew the GPU's peak, MFU (%); TFLOP per step."""
    rows = [r for r in rows if r.get("split", "train") == "train"][1:]
    out: dict[str, float] = {}
    for name, label, scale in (("samples_per_s", "samples/s", 1.0), ("mfu", "MFU %", 100.0),
                               ("data_wait_share", "data wait %", 100.0), ("flops", "TFLOP/step", 1e-12)):
        _, y = _series(rows, name)
        if y.size:
            out[label] = float(np.median(y)) * scale
    return out


def plot_examples(examples: Sequence[RetrievalExample], out_png: str | Path) -> None:
    """Grid: each row an image and its top captions; the true caption green with a check."""
    n = len(examples)
    if n == 0:
        return
    ncol = 2
    nrow = math.ceil(n / ncol)
    fig = plt.figure(figsize=(7.0 * ncol, 1.9 * nrow))
    for idx, ex in enumerate(examples):
        r, c = divmod(idx, ncol)
        ax_img = fig.add_axes([c / ncol + 0.005, 1 - (r + 1) / nrow + 0.02 / nrow, 0.22 / ncol, 0.92 / nrow])
        ax_img.imshow(ex.image)
        ax_img.set_xticks([])
        ax_img.set_yticks([])
        ax_img.set_title(ex.key, fontsize=7)
        ax_txt = fig.add_axes([c / ncol + 0.25 / ncol, 1 - (r + 1) / nrow, 0.74 / ncol, 1 / nrow])
        ax_txt.axis("off")
        lines = [(f"true: {ex.true_caption}", "black", "normal")]
        for rank, hit in enumerate(ex.top, 1):
            mark = "\u2713" if hit.correct else "\u2717"
            color = "tab:green" if hit.correct else "tab:red"
            lines.append((f"{rank}. {mark} {hit.text}  ({hit.score:.2f})", color,
                          "bold" if hit.correct else "normal"))
        for li, (text, color, weight) in enumerate(lines):
            ax_txt.text(0.0, 0.92 - li * min(0.15, 0.85 / len(lines)), text, fontsize=8, color=color,
                        fontweight=weight, va="top", transform=ax_txt.transAxes, family="DejaVu Sans")
    _save(fig, out_png)
    plt.close(fig)


def plot_finegrained(fg: dict[str, dict[str, float]], out_png: str | Path) -> None:
    """Grouped bars: accuracy per change type, one bar per scorer, chance line at 50%."""
    from mamo.evaluation.finegrained import CHANGE_TYPES

    scorers = list(fg)
    cats = [c for c in (*CHANGE_TYPES, "overall") if any(c in fg[s] for s in scorers)]
    if not cats:
        return
    fig, ax = plt.subplots(figsize=(1.1 * len(cats) + 2, 3.2))
    width = 0.8 / max(len(scorers), 1)
    for si, s in enumerate(scorers):
        vals = [fg[s].get(c, float("nan")) for c in cats]
        ax.bar(np.arange(len(cats)) + (si - (len(scorers) - 1) / 2) * width, vals, width, label=s)
    ax.axhline(50, color="gray", ls="--", lw=1, label="chance")
    ax.set_xticks(np.arange(len(cats)), cats, rotation=20)
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _save(fig, out_png)
    plt.close(fig)


def _save(fig: Any, out_png: str | Path) -> None:
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=90, format="png")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 1 or v == 0 else f"{v:.3g}"
    return html.escape(str(v))


def table_html(rows: dict[str, dict[str, Any]], columns: Sequence[str] | None = None,
               row_header: str = "") -> str:
    """A table with one row per key of ``rows`` and one column per metric."""
    if not rows:
        return "<p><em>no results</em></p>"
    if columns is None:
        columns = []
        for r in rows.values():
            columns += [c for c in r if c not in columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        f"<tr><th>{html.escape(name)}</th>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in columns) + "</tr>"
        for name, r in rows.items()
    )
    return f"<table><thead><tr><th>{html.escape(row_header)}</th>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
thead th{background:#f0f0f0}tbody th{text-align:left}img{max-width:100%}
pre{background:#f6f6f6;padding:.8em;overflow:auto;font-size:12px}.muted{color:#777}
"""


def headline(results: dict[str, Any]) -> dict[str, float]:
    """The few numbers printed at the end of a demo and shown first in the report."""
    out: dict[str, float] = {}
    ret = results.get("retrieval", {})
    for name in ("itc", "itm_rerank"):
        if name in ret and "r_mean" in ret[name]:
            out[f"retrieval {name} R@mean"] = ret[name]["r_mean"]
            out[f"retrieval {name} TR@1"] = ret[name]["tr@1"]
            out[f"retrieval {name} IR@1"] = ret[name]["ir@1"]
    for name, tab in results.get("finegrained", {}).items():
        if "overall" in tab:
            out[f"fine-grained {name} accuracy"] = tab["overall"]
    return out


def print_headline(results: dict[str, Any], report: Path | None = None) -> None:
    """The headline figures on stdout (the evaluation command's output, not a log)."""
    for name, v in headline(results).items():
        print(f"  {name:38s} {v:6.1f}")
    fg = results.get("finegrained", {}).get("itm")
    if fg:
        per = ", ".join(f"{c} {v:.0f}" for c, v in fg.items() if c not in ("overall", "n_items"))
        print(f"  fine-grained itm per change (%): {per}")
    for name, table in (results.get("probe") or {}).items():
        per = ", ".join(f"{c} {v:.0f}" for c, v in table.items() if v is not None)
        print(f"  probe {name} (%): {per}")
    mw = results.get("masked_word")
    if mw:
        per = ", ".join(f"{c} {'-' if v is None else f'{v:.0f}'}" for c, v in mw.items()
                        if c not in MASKED_WORD_INFO)
        by_head = mw.get("items_by_head")
        heads = f" (items by head: {', '.join(f'{h} {n}' for h, n in by_head.items())})" if by_head else ""
        print(f"  masked word ({mw['target']} head, %): {per}{heads}")
    if "finegrained_items_per_type" in results:
        print(f"  fine-grained items per type: {results['finegrained_items_per_type']} "
              f"({results.get('finegrained_seconds', 0):.0f} s)")
    if report:
        print(f"  report: {report}")


def write_report(
    out_dir: str | Path,
    results: dict[str, Any],
    metrics_path: str | Path | None = None,
    examples: Sequence[RetrievalExample] = (),
    config_text: str | None = None,
    title: str = "MAMO run report",
) -> Path:
    """Write ``out_dir/index.html`` and its figures; returns the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts: list[str] = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
                        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]

    # summary
    meta = {k: results[k] for k in ("run", "checkpoint", "data", "n_images", "n_texts", "step") if k in results}
    parts.append("<section id='summary'><h2>Summary</h2>")
    parts.append(table_html({"": meta}) if meta else "")
    parts.append(table_html({"value": headline(results)}, row_header="headline"))
    parts.append("</section>")

    # losses
    parts.append("<section id='losses'><h2>Training losses</h2>")
    rows = read_metrics(metrics_path) if metrics_path else []
    terms = plot_losses(rows, out / "losses.png") if rows else []
    if terms:
        last = {t: _series(rows, t)[1][-1] for t in terms}
        parts.append(f"<p>{len(rows)} logged steps; terms: {', '.join(terms)}.</p>")
        parts.append("<img src='losses.png' alt='loss curves per term'>")
        parts.append(table_html({"last": last}, row_header="term"))
        if speed := throughput(rows):
            parts.append("<p>Throughput, median over the steps after the first:</p>")
            parts.append(table_html({"median": speed}, row_header="throughput"))
    else:
        parts.append("<p class='muted'>no metrics.jsonl rows found</p>")
    parts.append("</section>")

    # retrieval
    ret = results.get("retrieval", {})
    parts.append("<section id='retrieval'><h2>Image-text retrieval</h2>")
    parts.append("<p>R@k in percent; TR = image&rarr;text, IR = text&rarr;image; ties count against "
                 "the model. <code>itm_rerank</code>: ITC ranking, top-k re-ranked by ITM "
                 f"(k = {html.escape(str(ret.get('k', '?')))}).</p>")
    parts.append(table_html({k: v for k, v in ret.items() if isinstance(v, dict)}, row_header="scoring"))
    parts.append("</section>")

    # fine-grained
    fg = results.get("finegrained", {})
    parts.append("<section id='finegrained'><h2>Fine-grained benchmark</h2>")
    parts.append("<p>Accuracy (%) of scoring the true caption above a caption with exactly one thing "
                 "changed (colour, shape, size, count, left/right, above/below); chance is 50%.</p>")
    parts.append(table_html(fg, row_header="scorer"))
    if fg:
        plot_finegrained(fg, out / "finegrained.png")
        parts.append("<img src='finegrained.png' alt='fine-grained accuracy per change type'>")
    more = {f"probe {k}": {c: ("n/a" if x is None else x) for c, x in v.items()}
            for k, v in (results.get("probe") or {}).items()}
    if results.get("masked_word"):
        more[f"masked word ({results['masked_word']['target']})"] = {
            k: ("n/a" if v is None else v) for k, v in results["masked_word"].items() if k not in MASKED_WORD_INFO}
    if more:
        parts.append("<p>Linear probes on frozen features (fused [CLS]; unimodal CLS features), "
                     "trained on one half of the images and scored on the other, and masked-word "
                     "scoring (the text head's probability of the true word against its swap); "
                     f"items per change type: {html.escape(str(results.get('finegrained_items_per_type', '')))}.</p>")
        parts.append(table_html(more, row_header="readout"))
    parts.append("</section>")

    # examples
    parts.append("<section id='examples'><h2>Retrieval examples</h2>")
    if examples:
        plot_examples(examples, out / "examples.png")
        parts.append("<p>Each image with its top captions by the final ranking; correct ones are "
                     "green with &#10003;.</p><img src='examples.png' alt='retrieval examples'>")
    else:
        parts.append("<p class='muted'>no examples</p>")
    parts.append("</section>")

    # config
    parts.append("<section id='config'><h2>Configuration</h2>")
    parts.append(f"<pre>{html.escape(config_text)}</pre>" if config_text else "<p class='muted'>not recorded</p>")
    parts.append("</section></body></html>")

    return write_text(out / "index.html", "\n".join(parts))


def decode_jpeg(data: bytes) -> np.ndarray:
    """JPEG bytes -> uint8 [H, W, 3] (for examples)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def check_report(path: str | Path, sections: Iterable[str] = SECTIONS) -> list[str]:
    """Problems with a written report (empty list = fine): parses the HTML, checks every section
    is there and every linked PNG exists and decodes. Used by tests and the demo."""
    from html.parser import HTMLParser

    from PIL import Image

    class _P(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.ids: set[str] = set()
            self.imgs: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            a = dict(attrs)
            if a.get("id"):
                self.ids.add(str(a["id"]))
            if tag == "img" and a.get("src"):
                self.imgs.append(str(a["src"]))

    p = Path(path)
    if not p.is_file():
        return [f"missing {p}"]
    parser = _P()
    parser.feed(p.read_text(encoding="utf-8"))
    problems = [f"section '{s}' missing" for s in sections if s not in parser.ids]
    for src in parser.imgs:
        f = p.parent / src
        try:
            with Image.open(f) as im:
                im.load()
        except Exception as e:  # noqa: BLE001 - any decode failure is a problem to report
            problems.append(f"figure {src} does not decode: {e}")
    return problems
