"""The rule every method's setting is chosen by, fixed before any run (docs/evaluation.md, "Validation and held-out sets").

On the validation sets, a candidate qualifies when its harmful refusal is at most `max_harmful_drop` points below
the base's; the qualifying candidate with the lowest benign refusal wins (ties: the larger strength or threshold,
then the candidates' order), provided it refuses fewer benign prompts than the base; otherwise nothing is chosen.
The steer recipe applies it to its grid of edits, the eval stage's `selections` to any models it evaluated
(seeds, checkpoints, sweep points).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Rates:
    """Validation refusal rates (percent) of one model state."""

    benign: float
    harmful: float


def describe(max_harmful_drop: float) -> str:
    """The rule in one line, for reports."""
    return f"lowest validation benign refusal with harmful refusal >= base - {max_harmful_drop} points"


def qualifies(base_harmful: float, harmful: float, max_harmful_drop: float) -> bool:
    """Whether a candidate's harmful refusal is at most `max_harmful_drop` points below the base's."""
    return harmful >= base_harmful - max_harmful_drop


def choose(base: Rates, candidates: list[dict[str, Any]], max_harmful_drop: float) -> dict[str, Any] | None:
    """The candidate (a dict with `benign_refusal` and `harmful_refusal` in percent) the rule picks, or None."""
    qualifying = [c for c in candidates if qualifies(base.harmful, c["harmful_refusal"], max_harmful_drop)]
    if not qualifying:
        return None
    knob = lambda c: c.get("strength", c.get("threshold", 0.0))  # noqa: E731
    best = min(qualifying, key=lambda c: (c["benign_refusal"], -knob(c), candidates.index(c)))
    return best if best["benign_refusal"] < base.benign else None
