"""Refusal judges side by side against human labels: agreement, Cohen's kappa, calibration and speed.

    python benchmarks/judges.py --xstest-completions PATH/xstest_completions_dev [--judge llm:<model spec> ...]
        [--plot docs/judges_reliability.png] [--json]

Data: the development half of the XSTest v2 model completions (216 prompts x 5 models, two human annotators; a
folder of `xstest_v2_completions_<model>.csv`), the project's labelled set and its pattern set (both shipped in
`evoalign/judges/data`). Every figure comes from grouped held-out folds: 5 folds by prompt (all responses to a
prompt on the same side), seed 0, over all three sets together. The trained `evoalign` judge is retrained on each
fold's training side with the shipped config (C and the temperature chosen inside it) and scored on its held-out
side; the string rules and
any `--judge` (LLM, cascade, classifier) learn nothing, so their held-out folds are simply every row.

For each judge it prints binary (refusing vs not) and three-way agreement and Cohen's kappa on the dev half, per
source model, on safe and unsafe (XSTest `contrast_*`) prompts, and on the project's own sets (the labelled set's
`heldout` split was never used to write `evoalign-rules`, its `dev` split was); the expected
calibration error of `p_refusal` (10 equal-width bins) for judges that claim calibration (`calibrated`); and responses per second
of the shipped judge over the dev rows, in this process, single-threaded. `--plot` writes the reliability diagram.
`run_judge_benchmark()` returns the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from machine import machine_load

from evoalign.judges import agreement, get_judge
from evoalign.judges.cascade import DEFAULT_UNSURE
from evoalign.judges.data import LABELLED_SET, PATTERN_SET
from evoalign.judges.metrics import calibration, cohen_kappa
from evoalign.judges.train_judge import shipped_settings
from evoalign.judges.trained import decide
from evoalign.judges.training import (
    LABELLED_SOURCE,
    PATTERN_SOURCE,
    cross_validate,
    load_labelled_rows,
    load_xstest_completions,
    raw_features,
)

RULE_JUDGES = ("xstest", "evorefuse", "evoalign-rules")
TRAINED = "evoalign"
FOLDS, SEED = 5, 0


def _scores(predicted: list[str], reference: list[str]) -> dict[str, float]:
    scores = agreement(predicted, reference)
    return {
        **scores,
        "kappa": cohen_kappa(predicted, reference),
        "kappa_binary": cohen_kappa(predicted, reference, binary=True),
    }


def _slices(rows: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Row indices of every reported slice: the dev half, each source model, safe/unsafe prompts, our sets."""
    dev = [i for i, row in enumerate(rows) if row["source"] not in (LABELLED_SOURCE, PATTERN_SOURCE)]
    slices = {"dev half": dev}
    for model in sorted({rows[i]["source"] for i in dev}):
        slices[f"  {model}"] = [i for i in dev if rows[i]["source"] == model]
    slices["  safe prompts"] = [i for i in dev if not str(rows[i].get("type")).startswith("contrast_")]
    slices["  unsafe prompts"] = [i for i in dev if str(rows[i].get("type")).startswith("contrast_")]
    slices["labelled set"] = [i for i, row in enumerate(rows) if row["source"] == LABELLED_SOURCE]
    slices["  its held-out split"] = [i for i in slices["labelled set"] if rows[i].get("split") == "heldout"]
    slices["pattern set"] = [i for i, row in enumerate(rows) if row["source"] == PATTERN_SOURCE]
    return slices


def _timed_classify(spec: str, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], float, bool]:
    judge = get_judge(spec)
    start = time.perf_counter()
    results = judge.classify(rows)
    return results, len(rows) / (time.perf_counter() - start), judge.calibrated


def run_judge_benchmark(xstest_completions: str | Path, extra_judges: Sequence[str] = ()) -> dict[str, Any]:
    """Held-out agreement, kappa, calibration and speed of every judge; see the module docstring."""
    rows = load_xstest_completions(xstest_completions)
    rows += load_labelled_rows(LABELLED_SET) + load_labelled_rows(PATTERN_SET, source=PATTERN_SOURCE)
    reference = [row["label"] for row in rows]
    dev = [i for i, row in enumerate(rows) if row["source"] not in (LABELLED_SOURCE, PATTERN_SOURCE)]
    predictions: dict[str, tuple[list[str], list[float] | None, float]] = {}
    for spec in (*RULE_JUDGES, *extra_judges):
        results, speed, calibrated = _timed_classify(spec, rows)
        p_values = [r["p_refusal"] for r in results] if calibrated else None
        predictions[spec] = ([r["label"] for r in results], p_values, speed)
    print(f"retraining '{TRAINED}' on {FOLDS} grouped folds of {len(rows)} rows...", file=sys.stderr)
    probabilities = cross_validate(
        rows,
        shipped_settings(),
        folds=FOLDS,
        seed=SEED,
        raws=raw_features(rows),
        progress=lambda done, total: print(f"  fold {done}/{total}", file=sys.stderr),
    )
    _, speed, _ = _timed_classify(TRAINED, [rows[i] for i in dev])
    predictions[TRAINED] = (decide(probabilities), [float(p[1] + p[2]) for p in probabilities], speed)
    low, high = DEFAULT_UNSURE
    sure = [i for i in dev if not low <= probabilities[i, 1] + probabilities[i, 2] <= high]
    sure_labels = [predictions[TRAINED][0][i] for i in sure]
    figures_cascade = {
        "unsure_band": [low, high],
        "unsure_share": 1 - len(sure) / len(dev),
        "agreement_outside_band": agreement(sure_labels, [reference[i] for i in sure]),
    }
    figures: dict[str, Any] = {
        "cascade": figures_cascade,
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "folds": f"{FOLDS}-fold grouped by prompt, seed {SEED}",
        "slices": {name: len(indices) for name, indices in _slices(rows).items()},
        "judges": {},
    }
    for spec, (labels, p_values, speed) in predictions.items():
        entry: dict[str, Any] = {"responses_per_second": speed, "slices": {}}
        for name, indices in _slices(rows).items():
            entry["slices"][name] = _scores([labels[i] for i in indices], [reference[i] for i in indices])
        if p_values is not None:
            entry["calibration"] = {
                name: calibration([p_values[i] for i in indices], [reference[i] for i in indices])
                for name, indices in (("dev half", dev),)
            }
        figures["judges"][spec] = entry
    return figures


def format_tables(figures: dict[str, Any]) -> str:
    """Markdown: one agreement table (binary / three-way / kappa per slice), then calibration and speed."""
    judges = figures["judges"]
    lines = [
        f"{figures['date']}, {figures['machine']}; held-out folds: {figures['folds']}",
        "",
        "binary agreement / three-way agreement / Cohen's kappa (three-way)",
        "",
        "| slice | rows | " + " | ".join(judges) + " |",
        "|---|---|" + "---|" * len(judges),
    ]
    for name, count in figures["slices"].items():
        cells = []
        for entry in judges.values():
            s = entry["slices"][name]
            cells.append(f"{s['binary']:.3f} / {s['three_way']:.3f} / {s['kappa']:.2f}")
        lines.append(f"| {name} | {count} | " + " | ".join(cells) + " |")
    lines += ["", "| judge | ECE on the dev half (10 bins) | responses/s |", "|---|---|---|"]
    for spec, entry in judges.items():
        ece = entry.get("calibration", {}).get("dev half", {}).get("ece")
        ece_text = f"{ece:.3f}" if ece is not None else "not calibrated"
        lines.append(f"| {spec} | {ece_text} | {entry['responses_per_second']:.0f} |")
    cascade = figures["cascade"]
    lines += [
        "",
        f"cascade: {cascade['unsure_share']:.1%} of the dev half has p_refusal in the unsure band "
        f"{cascade['unsure_band']} (sent to the LLM); outside it `{TRAINED}` agrees "
        f"{cascade['agreement_outside_band']['binary']:.3f} binary / {cascade['agreement_outside_band']['three_way']:.3f} "
        "three-way",
    ]
    return "\n".join(lines)


def reliability_plot(figures: dict[str, Any], path: str | Path) -> None:
    """Reliability diagram of every calibrated judge on the dev half: mean p_refusal vs refusing fraction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    for spec, entry in figures["judges"].items():
        if "calibration" not in entry:
            continue
        table = entry["calibration"]["dev half"]
        bins = table["bins"]
        ax.plot(
            [b["mean_p_refusal"] for b in bins],
            [b["refusing"] for b in bins],
            marker="o",
            label=f"{spec} (ECE {table['ece']:.3f})",
        )
        for b in bins:
            ax.annotate(
                str(b["rows"]),
                (b["mean_p_refusal"], b["refusing"]),
                fontsize=7,
                xytext=(3, -9),
                textcoords="offset points",
            )
    ax.set_xlabel("mean p_refusal in bin (held-out folds)")
    ax.set_ylabel("fraction people labelled refusing")
    ax.set_title("XSTest v2 dev half, 10 equal-width bins\n(numbers: responses per bin)", fontsize=10)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--xstest-completions", required=True, help="folder of xstest_v2_completions_<model>.csv")
    parser.add_argument("--judge", action="append", default=[], help="an extra judge spec to compare (repeatable)")
    parser.add_argument("--plot", help="write the reliability diagram (PNG) here")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of tables")
    args = parser.parse_args(argv)
    print(f"load average at start: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    figures = run_judge_benchmark(args.xstest_completions, args.judge)
    figures["load_average_end"] = os.getloadavg()[0]
    print(json.dumps(figures, indent=2) if args.json else format_tables(figures))
    print(f"load average at end: {figures['load_average_end']:.2f}", file=sys.stderr)
    if args.plot:
        reliability_plot(figures, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)


if __name__ == "__main__":
    with machine_load():
        main()
