"""The ablation's summary: each metric's mean ± sample std and range over seeds, the
side-by-side table (text or markdown) and the figures. ``flows.ablation`` trains and
evaluates the runs; this turns their ``results.json`` and ``metrics.jsonl`` into the answer,
and (results as data) into ``ablation.json``: per-seed metrics, the paired differences with
their bootstrap intervals (``differences``), the markdown block of docs/ablation.md and the
plots of the differences and of accuracy versus steps."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

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


# ---------------------------------------------------------------- results as data

READOUTS: tuple[str, ...] = ("itm", "itc", "probe_fused", "probe_unimodal", "masked_word")
RETRIEVAL: tuple[tuple[str, str], ...] = (("retrieval_itm/r_mean", "retrieval.itm_rerank.r_mean"),
                                          ("retrieval_itc/r_mean", "retrieval.itc.r_mean"))


def flat_metrics(results: dict[str, Any]) -> dict[str, float | None]:
    """One run's results.json as ``{"<readout>/<change type or overall>": %}``; null where a
    readout does not apply (e.g. masked words without a text head)."""
    from mamo.evaluation.finegrained import CHANGE_TYPES

    out: dict[str, float | None] = {}
    fg = results.get("finegrained") or {}
    tables = {"itm": fg.get("itm"), "itc": fg.get("itc"),
              "probe_fused": (results.get("probe") or {}).get("fused"),
              "probe_unimodal": (results.get("probe") or {}).get("unimodal"),
              "masked_word": results.get("masked_word")}
    types = [c for c in (*CHANGE_TYPES, "overall") if c in (tables["itm"] or {})]
    for name, table in tables.items():
        for c in types:
            v = (table or {}).get(c)
            out[f"{name}/{c}"] = float(v) if isinstance(v, (int, float)) else None
    for name, path in RETRIEVAL:
        out[name] = _get(results, path)
    return out


def _item_scores(items: dict[str, np.ndarray], metric: str) -> np.ndarray | None:
    """The per-item scores behind one flat metric (None: not scored per item, or absent)."""
    readout, _, change = metric.partition("/")
    if readout.startswith("probe_"):
        return items.get(metric)
    if readout not in items:
        return None
    v = np.asarray(items[readout], dtype=float)
    return v if change == "overall" else v[items["change"] == change]


def differences(per_seed: dict[str, list[dict[str, float | None]]],
                items: dict[str, list[dict[str, np.ndarray]]], reference: str,
                n_boot: int = 2000, seed: int = 0) -> dict[str, dict[str, dict[str, Any] | None]]:
    """``{"<reference>-<other>": {metric: {mean, ci95, n_seeds, n_items} or None}}``.

    Seeds are paired by position (the same seed list for every variant). Fine-grained metrics
    resample seeds and, inside, items (the same items for both variants); retrieval metrics
    have one number per run and resample seeds only."""
    from mamo.evaluation.stats import paired_bootstrap

    out: dict[str, dict[str, dict[str, Any] | None]] = {}
    if reference not in per_seed:
        return out
    metrics = list(per_seed[reference][0]) if per_seed[reference] else []
    for other in per_seed:
        if other == reference:
            continue
        table: dict[str, dict[str, Any] | None] = {}
        for m in metrics:
            a = [_item_scores(it, m) for it in items.get(reference, [])]
            b = [_item_scores(it, m) for it in items.get(other, [])]
            if a and b and all(x is not None for x in a + b) and len({len(x) for x in a + b}) == 1:
                table[m] = paired_bootstrap(np.stack(a), np.stack(b), n_boot, seed)
                continue
            va = [r.get(m) for r in per_seed[reference]]
            vb = [r.get(m) for r in per_seed[other]]
            if any(v is None for v in va + vb) or "/" not in m or m.split("/")[0] in READOUTS:
                table[m] = None  # a readout one variant lacks: no difference, never a made-up one
                continue
            table[m] = paired_bootstrap(np.array(va)[:, None] / 100.0, np.array(vb)[:, None] / 100.0,
                                        n_boot, seed)
        out[f"{reference}-{other}"] = table
    return out


def summary_of(per_seed: list[dict[str, float | None]]) -> dict[str, dict[str, float] | None]:
    """``{metric: {mean, std, n}}`` over seeds (None where no seed has the metric)."""
    from mamo.evaluation.stats import mean_std

    names = list(dict.fromkeys(k for r in per_seed for k in r))
    return {m: mean_std([r.get(m) for r in per_seed]) for m in names}


def results_markdown(data: dict[str, Any], figures: dict[str, str] | None = None) -> str:
    """The ablation's results as a markdown block: the setting, mean ± std per variant and the
    paired differences with their 95% intervals, from the results data (``ablation.json``)."""
    variants = list(data["variants"])
    lines = [f"{data['steps']} steps x batch {data['batch_size']} per run, seeds {data['seeds']} "
             f"(paired); fine-grained items per type: {data['items_per_type']}. "
             "Accuracy in %, mean ± std over seeds; chance 50%.", ""]
    metrics = list(dict.fromkeys(m for v in variants for m in data["variants"][v]["summary"]))
    diffs = list(data.get("differences", {}))
    lines.append("| metric | " + " | ".join(variants) + " | " + " | ".join(f"{d} (95% CI)" for d in diffs) + " |")
    lines.append("|---|" + "---|" * (len(variants) + len(diffs)))
    for m in metrics:
        cells = []
        for v in variants:
            s = data["variants"][v]["summary"].get(m)
            cells.append("n/a" if not s else f"{s['mean']:.1f} ± {s['std']:.1f}")
        for d in diffs:
            r = data["differences"][d].get(m)
            cells.append("n/a" if not r else f"{r['mean']:+.1f} [{r['ci95'][0]:+.1f}, {r['ci95'][1]:+.1f}]")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    for title, path in (figures or {}).items():
        lines += ["", f"![{title}]({path})"]
    return "\n".join(lines)


BEGIN, END = "<!-- ablation-results:begin -->", "<!-- ablation-results:end -->"


def refresh_docs_block(page: Path, block: str) -> bool:
    """Replace the text between the ablation-results markers of ``page``; False (page left
    as it is) when it has no markers."""
    from mamo.core.files import write_text

    text = page.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        return False
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    write_text(page, f"{head}{BEGIN}\n{block}\n{END}{tail}")
    return True


def plot_differences(data: dict[str, Any], out_png: Path) -> None:
    """Each difference per metric with its 95% interval (fine-grained readouts only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    diffs = data.get("differences") or {}
    metrics = [m for m in dict.fromkeys(m for d in diffs.values() for m in d)
               if m.split("/")[0] in READOUTS and any(diffs[d].get(m) for d in diffs)]
    if not metrics:
        return
    fig, ax = plt.subplots(figsize=(7, max(3, 0.22 * len(metrics) * max(1, len(diffs)))))
    y = np.arange(len(metrics))
    for i, (name, table) in enumerate(diffs.items()):
        off = (i - (len(diffs) - 1) / 2) * 0.3
        for j, m in enumerate(metrics):
            r = table.get(m)
            if r:
                ax.errorbar(r["mean"], y[j] + off, xerr=[[r["mean"] - r["ci95"][0]], [r["ci95"][1] - r["mean"]]],
                            fmt="o", ms=3, color=f"C{i}")
    ax.axvline(0, color="gray", lw=0.8)
    ax.set_yticks(y, metrics, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("difference (points), 95% paired bootstrap CI")
    handles = [plt.Line2D([], [], color=f"C{i}", marker="o", ls="", label=n) for i, n in enumerate(diffs)]
    ax.legend(handles=handles, fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


CURVE_METRICS: tuple[str, ...] = ("itm/overall", "probe_fused/overall", "masked_word/overall",
                                  "itm/left_right", "probe_fused/left_right", "masked_word/left_right")


def plot_curves(curves: dict[str, dict[str, dict[str, list[float | None]]]], out_png: Path) -> None:
    """Accuracy vs training step per variant (mean over seeds; ``curves[variant][metric][step]``
    is the list of per-seed values at that step)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in CURVE_METRICS if any(m in c for c in curves.values())]
    if not metrics:
        return
    cols = 3
    rows = (len(metrics) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3 * rows), squeeze=False)
    for ax, m in zip(axes.flat, metrics):
        for i, (v, c) in enumerate(curves.items()):
            pts = sorted((int(s), [x for x in vals if x is not None]) for s, vals in c.get(m, {}).items())
            pts = [(s, float(np.mean(x)), float(np.std(x, ddof=1)) if len(x) > 1 else 0.0) for s, x in pts if x]
            if pts:
                xs, ys, es = zip(*pts)
                ax.errorbar(xs, ys, yerr=es, marker="o", ms=3, capsize=2, label=v, color=f"C{i}")
        ax.axhline(50, color="gray", ls="--", lw=0.8)
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
