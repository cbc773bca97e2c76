"""The ablation's summary: each metric's mean ± sample std and range over seeds, the
side-by-side table (text or markdown) and the figures. ``flows.ablation`` trains and
evaluates the runs; this turns their ``results.json`` and ``metrics.jsonl`` into the answer."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mamo.core.files import atomic_path

# The rows of the side-by-side table: (results path, label).
ROWS: tuple[tuple[str, str], ...] = (
    ("finegrained.itm.overall", "FG ITM overall"),
    ("finegrained.itm.color", "FG ITM color"),
    ("finegrained.itm.shape", "FG ITM shape"),
    ("finegrained.itm.size", "FG ITM size"),
    ("finegrained.itm.count", "FG ITM count"),
    ("finegrained.itm.left_right", "FG ITM left/right"),
    ("finegrained.itm.above_below", "FG ITM above/below"),
    ("finegrained.itc.overall", "FG ITC overall"),
    ("retrieval.itm_rerank.r_mean", "Ret ITM R@mean"),
    ("retrieval.itm_rerank.tr@1", "Ret ITM TR@1"),
    ("retrieval.itm_rerank.ir@1", "Ret ITM IR@1"),
    ("retrieval.itc.r_mean", "Ret ITC R@mean"),
)


def _get(d: dict[str, Any], path: str) -> float | None:
    # paths split on "." but metric names contain "@" only, so a plain split is safe
    node: Any = d
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, (int, float)) else None


def summarize(results: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, dict[str, float]]]:
    """``{variant: {row_label: {mean, std, min, max, n}}}`` over seeds (std: sample, ddof=1)."""
    import numpy as np

    out: dict[str, dict[str, dict[str, float]]] = {}
    for variant, runs in results.items():
        out[variant] = {}
        for path, label in ROWS:
            vals = [v for v in (_get(r, path) for r in runs) if v is not None]
            if not vals:
                continue
            a = np.asarray(vals, dtype=float)
            out[variant][label] = {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
                                   "min": float(a.min()), "max": float(a.max()), "n": float(a.size)}
    return out


def format_table(summary: dict[str, dict[str, dict[str, float]]], markdown: bool = False) -> str:
    variants = list(summary)
    labels = [label for _, label in ROWS if any(label in summary[v] for v in variants)]

    def cell(v: str, label: str) -> str:
        s = summary[v].get(label)
        if not s:
            return "-"
        return f"{s['mean']:.1f} ± {s['std']:.1f} [{s['min']:.0f}-{s['max']:.0f}]"

    if markdown:
        lines = ["| metric (%) | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
        lines += [f"| {label} | " + " | ".join(cell(v, label) for v in variants) + " |" for label in labels]
        return "\n".join(lines)
    w = 26
    lines = ["metric (%)".ljust(22) + "".join(v.rjust(w) for v in variants)]
    lines += [label.ljust(22) + "".join(cell(v, label).rjust(w) for v in variants) for label in labels]
    return "\n".join(lines)


def plot_summary(summary: dict[str, dict[str, dict[str, float]]], out_png: Path) -> None:
    """Bars with the seed spread (std) as error bars, and every seed as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    variants = list(summary)
    labels = [label for _, label in ROWS if all(label in summary[v] for v in variants)]
    if not labels:
        return
    fig, ax = plt.subplots(figsize=(max(8, 1.0 * len(labels) * len(variants) / 2), 4))
    width = 0.8 / len(variants)
    x = np.arange(len(labels))
    for i, v in enumerate(variants):
        means = [summary[v][lab]["mean"] for lab in labels]
        stds = [summary[v][lab]["std"] for lab in labels]
        ax.bar(x + (i - (len(variants) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=v)
    ax.axhline(50, color="gray", ls="--", lw=0.8)
    ax.set_xticks(x, labels, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("%  (mean ± std over seeds)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=90, format="png")  # the temp name has no .png suffix
    plt.close(fig)


def plot_loss_curves(metrics: dict[str, list[Path]], out_png: Path) -> None:
    """Shared loss terms (total, ITC, ITM) per variant, mean over seeds, smoothed.

    ``metrics``: each variant's ``metrics.jsonl`` files, one per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from mamo.evaluation.report import read_metrics

    terms = ("loss", "itc", "itm")
    fig, axes = plt.subplots(1, len(terms), figsize=(4.2 * len(terms), 3))
    for v, files in metrics.items():
        curves: dict[str, list[list[float]]] = {t: [] for t in terms}
        for f in files:
            rows = read_metrics(f)
            for t in terms:
                ys = [r[t] for r in rows if isinstance(r.get(t), (int, float))]
                if ys:
                    curves[t].append(ys)
        for ax, t in zip(axes, terms):
            if not curves[t]:
                continue
            n = min(len(c) for c in curves[t])
            y = np.mean([c[:n] for c in curves[t]], axis=0)
            w = max(1, n // 40)
            y = np.convolve(y, np.ones(w) / w, mode="valid")
            ax.plot(np.arange(len(y)) + w // 2 + 1, y, label=v)
    for ax, t in zip(axes, terms):
        ax.set_title(t if t != "loss" else "total loss (different objectives!)")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=90, format="png")  # the temp name has no .png suffix
    plt.close(fig)
