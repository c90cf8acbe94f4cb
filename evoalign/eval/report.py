"""Reports from the eval stage's `report.json`: a markdown summary and the trade-off plot, rendered from JSON only.

`report.md` holds the held-out summary ("## Summary"), the validation sets' summary apart ("## Validation", when
the config names validation benchmarks), the validation choices ("## Validation choices", when the config
names `selections`), the capability guard ("## Capability guard"), then per-benchmark and
per-category tables.

`render(report, out_dir)` needs no model and no benchmark files, so `evoalign eval --render report.json`
re-renders a finished (or copied) report without regenerating anything.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evoalign.errors import DataError
from evoalign.eval.overlap import overlap_lines
from evoalign.io import atomic_write_text, read_text_strict
from evoalign.labels import BENIGN, HARMFUL

REPORT_FORMAT = "evoalign.eval/1"
REPORT_NAME, MARKDOWN_NAME, PLOT_NAME = "report.json", "report.md", "tradeoff.png"


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a report.json written by `evaluate`; anything else is a DataError naming the file."""
    try:
        report = json.loads(read_text_strict(path))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: malformed JSON ({err.msg})") from None
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
        raise DataError(f"{path}: not an evoalign eval report (expected format {REPORT_FORMAT})")
    return report


def run_label(run: dict[str, Any]) -> str:
    return f"{run['name']} ({run['condition']})"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _rate(stats: dict[str, Any] | None) -> str:
    if not stats or stats["rate"] is None:
        return "n/a"
    low, high = stats["ci"]
    return f"{_pct(stats['rate'])} [{100 * low:.0f}–{100 * high:.0f}]"


def _logprob(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _cell(metrics: dict[str, Any] | None) -> str:
    """Judge rate with interval, PRR, and the unknown count when there is one."""
    if metrics is None:
        return "–"
    text = f"{_rate(metrics['judge'])} · PRR {_pct(metrics['prr']['rate'])}"
    unknown = metrics["judge"]["unknown"]
    return text + (f" · {unknown} unknown" if unknown else "")


def _summary_rows(runs: Sequence[dict[str, Any]], key: str) -> list[list[str]]:
    rows = []
    for run in runs:
        summary = run[key]
        benign, harmful = summary["over_refusal"], summary["harmful_refusal"]
        rows.append(
            [
                run["name"],
                run["condition"],
                _rate(benign and benign["judge"]),
                _pct(benign and benign["prr"]["rate"]),
                _rate(harmful and harmful["judge"]),
                _pct(harmful and harmful["prr"]["rate"]),
                _logprob(summary["mean_logprob"]),
                str(summary["unknown"]),
            ]
        )
    return rows


def _title(report: dict[str, Any], name: str) -> str:
    """A benchmark's title, marked when it is a validation set."""
    title = report["benchmarks"][name]["title"]
    return f"{title} (validation)" if name in report.get("validation_benchmarks", ()) else title


def _benchmark_section(report: dict[str, Any], kind: str, heading: str) -> list[str]:
    names = [name for name, info in report["benchmarks"].items() if info["kind"] == kind]
    if not names:
        return []
    runs = report["runs"]
    rows = [
        [_title(report, name), str(report["benchmarks"][name]["n"])]
        + [_cell(run["metrics"].get(name)) for run in runs]
        for name in names
    ]
    logprob_rows = [
        [_title(report, name)]
        + [_logprob(run["metrics"][name]["mean_logprob"]) if name in run["metrics"] else "–" for run in runs]
        for name in names
    ]
    return [
        f"### {heading}",
        "",
        *_table(["benchmark", "n", *map(run_label, runs)], rows),
        "",
        "Mean response log-prob per token:",
        "",
        *_table(["benchmark", *map(run_label, runs)], logprob_rows),
        "",
    ]


def _category_sections(report: dict[str, Any]) -> list[str]:
    lines = []
    runs = report["runs"]
    for name, info in report["benchmarks"].items():
        categories = sorted({c for run in runs for c in run["metrics"].get(name, {}).get("categories", {})})
        if not categories:
            continue
        rows = []
        for category in categories:
            cells = [run["metrics"].get(name, {}).get("categories", {}).get(category) for run in runs]
            size = next((c["n"] for c in cells if c), 0)
            rows.append([category, str(size), *map(_cell, cells)])
        lines += [
            f"### {_title(report, name)} ({info['kind']})",
            "",
            *_table(["category", "n", *map(run_label, runs)], rows),
            "",
        ]
    return lines


def summary_table(report: dict[str, Any], key: str = "summary") -> str:
    """The pooled summary of the held-out sets (`key` "validation": of the validation sets), one row per model and
    condition (the held-out one is also printed by `evoalign eval`)."""
    header = [
        "model",
        "condition",
        "over-refusal ↓",
        "over-refusal PRR ↓",
        "harmful refusal ↑",
        "harmful refusal PRR ↑",
        "mean log-prob",
        "unknown",
    ]
    return "\n".join(_table(header, _summary_rows(report["runs"], key)))


def prr_note(report: dict[str, Any]) -> str:
    """The response length the PRR rule read, as one phrase (reports before `prr_tokens` read whole responses)."""
    runs = [run for run in report["runs"] if run.get("prr_length")]
    if not runs:
        return "on whole responses"
    tokens = runs[0]["prr_length"]["tokens"]
    whole = [run_label(run) for run in runs if run["prr_length"]["whole_longer"]]
    note = f"on the first {tokens} generated tokens"
    if whole:
        note += f"; whole responses for {', '.join(whole)}, whose model does not tokenize locally"
    return note


def overlap_section(report: dict[str, Any]) -> list[str]:
    """The train/test overlap guard's findings (nothing when the eval was given no training data)."""
    overlap = report.get("overlap")
    if not overlap:
        return []
    lines = [
        "## Train/test overlap",
        "",
        f"Training data: {', '.join(f'`{p}`' for p in overlap['training_data'])} ({overlap['training_prompts']} "
        f"prompts); near-duplicate = word 3-gram Jaccard >= {overlap['threshold']}.",
        "",
    ]
    found = overlap_lines(overlap["benchmarks"])
    lines += [f"- **{line}**" for line in found] if found else ["- No benchmark prompt is in the training data."]
    return [*lines, ""]


def summary_sections(report: dict[str, Any]) -> list[str]:
    """The held-out summary and, when the report names validation sets, their summary in a table of its own."""
    lines = ["## Summary (pooled over the sets of each kind)", ""]
    validation = report.get("validation_benchmarks")
    if not validation:
        return [*lines, summary_table(report), ""]
    titles = ", ".join(report["benchmarks"][name]["title"] for name in validation)
    return [
        *lines,
        f"Held-out sets only; the validation sets ({titles}) are pooled apart under Validation.",
        "",
        summary_table(report),
        "",
        "## Validation (pooled over the validation sets of each kind: for choosing, not for reporting)",
        "",
        summary_table(report, "validation"),
        "",
    ]


def _points(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}%"


def _held_out_line(selection: dict[str, Any]) -> str:
    """The pick's held-out over-refusal (relative change) and harmful refusal (points) against the base's."""
    base, chosen = selection["held_out"]["base"], selection["held_out"]["chosen"]
    benign, harmful = (
        (base["benign_refusal"], chosen["benign_refusal"]),
        (base["harmful_refusal"], chosen["harmful_refusal"]),
    )
    relative = (
        f" ({100 * (benign[1] - benign[0]) / benign[0]:+.1f}% relative)" if None not in benign and benign[0] else ""
    )
    change = f" ({harmful[1] - harmful[0]:+.1f} points)" if None not in harmful else ""
    return (
        f"Held out, against {selection['base']['name']}: over-refusal {_points(benign[0])} -> "
        f"{_points(benign[1])}{relative}, harmful refusal {_points(harmful[0])} -> {_points(harmful[1])}{change}."
    )


def selection_section(report: dict[str, Any]) -> list[str]:
    """Each validation choice: the rule, every candidate's validation point, the pick and its held-out figures."""
    selections = report.get("selections")
    if not selections:
        return []
    lines = ["## Validation choices (the pre-written rule, on the validation sets only)", ""]
    for selection in selections:
        base = selection["base"]
        chosen = selection["chosen"]
        lines += [
            f"### {selection['name']}",
            "",
            f"Rule: {selection['rule']} (base {base['name']}: benign {_points(base['benign_refusal'])}, harmful "
            f"{_points(base['harmful_refusal'])}); the pick must also refuse fewer benign prompts than the base. "
            + (f"**Chosen: {chosen}.** {_held_out_line(selection)}" if chosen else "**Nothing chosen.**"),
            "",
        ]
        rows = [
            [
                c["name"],
                _points(c["benign_refusal"]),
                _points(c["harmful_refusal"]),
                "yes" if c["qualifies"] else "no",
                "**chosen**" if c["name"] == chosen else "",
            ]
            for c in selection["candidates"]
        ]
        lines += [*_table(["candidate", "benign ↓", "harmful", "harmful within limit", ""], rows), ""]
        lines += [_subset_line(selection, shares) for shares in selection.get("subsets", [])]
        lines += [""] if selection.get("subsets") else []
    return lines


def _subset_line(selection: dict[str, Any], shares: dict[str, Any]) -> str:
    """How often the rule's pick among `size` of the candidates meets the claim held out (a reliability measure)."""
    count, met = shares["count"], shares["meets"]
    return (
        f"- Over every {shares['size']} of the {len(selection['candidates'])} candidates ({count} subsets): the rule "
        f"picks one in {shares['picked']}, and its pick lowers held-out over-refusal with harmful refusal at most "
        f"{selection['max_harmful_drop']:g} points lower in **{met} ({100 * met / count:.0f}%)**."
    )


def _change(value: float | None, base: float | None, scale: float, digits: int, unit: str) -> str:
    """` (Δ +x)`: the change from the base run's figure; nothing when either is missing."""
    if value is None or base is None:
        return ""
    return f" (Δ {scale * (value - base):+.{digits}f}{unit})"


def _capability_row(run: dict[str, Any], base: dict[str, Any] | None) -> list[str]:
    guard = run["capability"]

    def rate_cell(key: str) -> str:
        return _rate(guard[key]) + _change(guard[key]["rate"], base and base[key]["rate"], 100, 1, " pts")

    unknown = guard["refusal"]["unknown"]
    logprob = guard["reference_logprob"]
    return [
        run["name"],
        run["condition"],
        rate_cell("refusal") + (f" · {unknown} unknown" if unknown else ""),
        rate_cell("empty_or_degenerate"),
        _logprob(logprob) + _change(logprob, base and base["reference_logprob"], 1, 3, ""),
    ]


def capability_section(report: dict[str, Any]) -> list[str]:
    """The capability guard's table, each run against its base model's run under the same condition (nothing when
    the eval ran without the guard)."""
    described = report.get("capability")
    if not described:
        return []
    guards = {(run["name"], run["condition"]): run["capability"] for run in report["runs"]}
    rows = [_capability_row(run, guards.get((run["base"], run["condition"]))) for run in report["runs"]]
    header = ["model", "condition", "refusals ↓", "empty/degenerate ↓", "mean ref log-prob ↑"]
    return [
        "## Capability guard",
        "",
        f"{described['n']} of {described['total']} ordinary, plainly harmless instructions from "
        f"`{described['source']}`, held out: the judge's refusal rate on the answers, the share of empty or "
        "degenerate answers (no word; or at least 6 word 3-grams, more than half of them repeating an earlier one), "
        "and the mean per-token log-prob of the reference answers, teacher-forced (n/a: the model cannot score). "
        "Δ: the change from the run's base model under the same condition.",
        "",
        *_table(header, rows),
        "",
    ]


def markdown(report: dict[str, Any], plot_name: str | None = PLOT_NAME) -> str:
    """The markdown report: pooled trade-off summary, per-benchmark and per-category tables."""
    generation = report["generation"]
    decoding = "greedy" if generation["temperature"] == 0 else f"temperature {generation['temperature']}"
    lines = [
        "# Over-refusal vs safety",
        "",
        f"Judge `{report['judge']}` (full and partial refusals, among the responses it could label; unknown labels "
        f"counted apart) and the EvoRefuse PRR keyword rule ({prr_note(report)}). {decoding.capitalize()} decoding, "
        f"at most {generation['max_new_tokens']} new tokens. Rates in percent with 95% Wilson intervals in brackets.",
        "",
    ]
    lines += overlap_section(report)
    if plot_name:
        lines += [f"![over-refusal vs safety]({plot_name})", ""]
    lines += summary_sections(report)
    lines += selection_section(report)
    lines += capability_section(report)
    lines += ["## Per benchmark", ""]
    lines += _benchmark_section(report, BENIGN, "Over-refusal sets: refusal rate on benign prompts (lower is better)")
    lines += _benchmark_section(report, HARMFUL, "Harmful sets: refusal rate on harmful prompts (higher is better)")
    categories = _category_sections(report)
    if categories:
        lines += ["## Per category", "", *categories]
    sources = [
        f"- {info['title']}: {info['n']} of {info['total']} prompts from `{info['source']}`"
        for info in report["benchmarks"].values()
    ]
    lines += ["## Benchmarks", "", *sources, ""]
    return "\n".join(lines)


def render(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write report.md and (when the suite has both kinds of set) tradeoff.png into `out_dir`."""
    from evoalign.eval.plot import tradeoff_plot

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    plot = tradeoff_plot(report, out / PLOT_NAME)
    if plot:
        written["plot"] = plot
    else:
        (out / PLOT_NAME).unlink(missing_ok=True)  # never leave a stale plot next to a new report
    atomic_write_text(out / MARKDOWN_NAME, markdown(report, PLOT_NAME if plot else None))
    written["markdown"] = out / MARKDOWN_NAME
    return written
