"""The trade-off plot: over-refusal (x) against refusal of harmful prompts (y), one point per model and condition.

Both rates are the judge's, pooled over the sets of each kind, with 95% Wilson intervals as error bars. The
ideal model sits top-left (answers every benign prompt, refuses every harmful one). An arrow runs from a base
model to each fine-tuned variant (`base:` in the config) under the same condition, so a good fine-tune points
left without dropping. Models sharing a `curve:` name (one model swept over a knob such as `refusal_bias`) share a
colour and are joined by a line per condition, in config order: the trade-off that one knob buys. matplotlib is imported lazily with the Agg backend (no display needed).
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _point(run: dict[str, Any]) -> tuple[float, float, list[float], list[float]] | None:
    """(x, y, x interval, y interval) in percent, or None when the run lacks a benign or a harmful set."""
    benign, harmful = run["summary"]["over_refusal"], run["summary"]["harmful_refusal"]
    if not benign or not harmful or benign["judge"]["rate"] is None or harmful["judge"]["rate"] is None:
        return None
    x, y = 100 * benign["judge"]["rate"], 100 * harmful["judge"]["rate"]
    return x, y, [100 * v for v in benign["judge"]["ci"]], [100 * v for v in harmful["judge"]["ci"]]


def _style(runs: list[dict[str, Any]]) -> dict[str, tuple[Any, str]]:
    """A colour per model name (per curve for the models of one curve) and a marker per condition, by run label."""
    from matplotlib import colormaps

    from evoalign.eval.report import run_label

    palette = colormaps["tab10"].colors
    names = list(dict.fromkeys(run.get("curve") or run["name"] for run in runs))
    conditions = list(dict.fromkeys(run["condition"] for run in runs))
    return {
        run_label(run): (
            palette[names.index(run.get("curve") or run["name"]) % len(palette)],
            MARKERS[conditions.index(run["condition"]) % len(MARKERS)],
        )
        for run in runs
    }


def _arrows(ax: Any, runs: list[dict[str, Any]], points: dict[str, tuple], styles: dict[str, tuple]) -> None:
    from evoalign.eval.report import run_label

    by_key = {(run["name"], run["condition"]): run_label(run) for run in runs}
    for run in runs:
        start = by_key.get((run["base"], run["condition"])) if run.get("base") else None
        end = run_label(run)
        if start in points and end in points:
            ax.annotate(
                "",
                xy=points[end][:2],
                xytext=points[start][:2],
                arrowprops={"arrowstyle": "-|>", "lw": 1.8, "color": styles[end][0], "shrinkA": 7, "shrinkB": 7},
                zorder=2,
            )


def _curves(ax: Any, runs: list[dict[str, Any]], points: dict[str, tuple], styles: dict[str, tuple]) -> None:
    """A line through the points of each (curve, condition), in config order."""
    from evoalign.eval.report import run_label

    lines: dict[tuple[str, str], list[str]] = {}
    for run in runs:
        if run.get("curve") and run_label(run) in points:
            lines.setdefault((run["curve"], run["condition"]), []).append(run_label(run))
    for labels in lines.values():
        if len(labels) > 1:
            xs, ys = zip(*(points[label][:2] for label in labels))
            ax.plot(xs, ys, color=styles[labels[0]][0], lw=1.4, alpha=0.7, zorder=2)


def tradeoff_plot(report: dict[str, Any], path: str | Path) -> Path | None:
    """Draw the plot into `path` (PNG); None (and no file) when no run has both a benign and a harmful rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from evoalign.eval.report import run_label

    runs = report["runs"]
    points = {run_label(run): point for run in runs if (point := _point(run))}
    if not points:
        return None
    styles = _style(runs)
    fig, ax = plt.subplots(figsize=(8, 6.5), dpi=150)
    ax.scatter([0], [100], marker="*", s=320, color="gold", edgecolor="black", zorder=1)
    ax.annotate("ideal", (0, 100), xytext=(10, -4), textcoords="offset points", fontsize=10, va="top")
    for label, (x, y, x_ci, y_ci) in points.items():
        colour, marker = styles[label]
        ax.errorbar(
            x,
            y,
            xerr=[[x - x_ci[0]], [x_ci[1] - x]],
            yerr=[[y - y_ci[0]], [y_ci[1] - y]],
            fmt=marker,
            color=colour,
            markersize=9,
            markeredgecolor="black",
            elinewidth=1.2,
            capsize=4,
            alpha=0.9,
            label=label,
            zorder=3,
        )
    _arrows(ax, runs, points, styles)
    _curves(ax, runs, points, styles)
    ax.set_xlim(-4, 104)
    ax.set_ylim(-4, 104)
    ax.set_xlabel("Over-refusal: refusal rate on benign sets (%)  ← lower is better", fontsize=11)
    ax.set_ylabel("Safety: refusal rate on harmful sets (%)  ↑ higher is better", fontsize=11)
    sizes = textwrap.fill(", ".join(f"{i['title']} n={i['n']}" for i in report["benchmarks"].values()), 100)
    ax.set_title(f"Over-refusal vs safety (judge: {report['judge']}; 95% Wilson intervals)\n{sizes}", fontsize=10)
    ax.grid(True, alpha=0.3)
    handles, _ = ax.get_legend_handles_labels()
    if any(run.get("base") for run in runs):
        handles.append(Line2D([], [], color="grey", lw=1.8, marker=">", markevery=[1], label="base → fine-tuned"))
    ax.legend(handles=handles, loc="best", fontsize=9, framealpha=0.9, title="model (condition)", title_fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    fig.savefig(staging, format="png")
    plt.close(fig)
    os.replace(staging, path)  # atomic: readers never see a half-written image
    return path
