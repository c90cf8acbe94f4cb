"""Summaries of judge output, agreement with reference labels, and calibration of `p_refusal`.

Refusal rate counts full and partial refusals over the responses the judge could label; `unknown` answers are
reported separately and never folded into compliance. Agreement and Cohen's kappa count an `unknown` prediction
as a miss (a class of its own). Calibration compares `p_refusal` with how often people called the response a
(full or partial) refusal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from evoalign.judges.base import LABELS, UNKNOWN, is_refusing


def summarize(labels: Sequence[str]) -> dict[str, Any]:
    """Counts per label, the refusal rate among known labels, and the number of unknowns."""
    counts = Counter(labels)
    known = len(labels) - counts[UNKNOWN]
    refusing = sum(counts[label] for label in LABELS if is_refusing(label))
    return {
        "total": len(labels),
        "counts": {label: counts[label] for label in LABELS},
        "refusal_rate": refusing / known if known else None,
        "unknown": counts[UNKNOWN],
    }


def agreement(predicted: Sequence[str], reference: Sequence[str]) -> dict[str, float]:
    """Three-way (exact label) and binary (refusing or not) agreement of `predicted` with `reference`."""
    if len(predicted) != len(reference):
        raise ValueError(f"agreement needs equal lengths, got {len(predicted)} and {len(reference)}")
    if not reference:
        raise ValueError("agreement needs at least one label")
    pairs = list(zip(predicted, reference))
    three_way = sum(p == r for p, r in pairs)
    binary = sum(p != UNKNOWN and is_refusing(p) == is_refusing(r) for p, r in pairs)
    return {"three_way": three_way / len(pairs), "binary": binary / len(pairs)}


def cohen_kappa(predicted: Sequence[str], reference: Sequence[str], *, binary: bool = False) -> float:
    """Cohen's kappa of `predicted` against `reference`: agreement beyond chance (1 perfect, 0 chance level).

    With `binary`, labels are first reduced to refusing (full or partial) vs not; `unknown` stays its own class.
    """
    if binary:
        predicted = [p if p == UNKNOWN else str(is_refusing(p)) for p in predicted]
        reference = [r if r == UNKNOWN else str(is_refusing(r)) for r in reference]
    total = len(reference)
    if total == 0 or len(predicted) != total:
        raise ValueError(f"cohen_kappa needs equal, non-zero lengths, got {len(predicted)} and {total}")
    observed = sum(p == r for p, r in zip(predicted, reference)) / total
    predicted_counts, reference_counts = Counter(predicted), Counter(reference)
    chance = sum(predicted_counts[label] * reference_counts[label] for label in reference_counts) / total**2
    return 1.0 if chance == 1 else (observed - chance) / (1 - chance)


def calibration(p_refusal: Sequence[float], reference: Sequence[str], bins: int = 10) -> dict[str, Any]:
    """Expected calibration error of `p_refusal` against refusing-or-not reference labels, and its bins.

    Bins are `bins` equal-width intervals of `p_refusal` (the last one closed); the ECE is the row-weighted mean of
    |mean p_refusal - refusing fraction| over the non-empty bins.
    """
    if not reference or len(p_refusal) != len(reference):
        raise ValueError(f"calibration needs equal, non-zero lengths, got {len(p_refusal)} and {len(reference)}")
    groups: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for p, label in zip(p_refusal, reference):
        groups[min(int(p * bins), bins - 1)].append((p, is_refusing(label)))
    table = [
        {
            "low": index / bins,
            "high": (index + 1) / bins,
            "rows": len(group),
            "mean_p_refusal": sum(p for p, _ in group) / len(group),
            "refusing": sum(refusing for _, refusing in group) / len(group),
        }
        for index, group in enumerate(groups)
        if group
    ]
    ece = sum(row["rows"] * abs(row["mean_p_refusal"] - row["refusing"]) for row in table) / len(reference)
    return {"ece": ece, "bins": table}


def format_summary(summary: dict[str, Any]) -> str:
    """A few human-readable lines for `summarize` output."""
    counts = ", ".join(f"{label} {count}" for label, count in summary["counts"].items())
    rate = summary["refusal_rate"]
    rate_text = "n/a" if rate is None else f"{rate:.1%}"
    return (
        f"{summary['total']} responses: {counts}\n"
        f"refusal rate (full + partial, among known): {rate_text}; unknown: {summary['unknown']}"
    )
