"""The build's ledger: rows kept and dropped at each step, and why; printed at the end and saved with the data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Ledger:
    """An ordered list of steps, each with the rows it kept, the rows it dropped by reason, and a note."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def record(self, step: str, kept: int, dropped: Mapping[str, int] | None = None, note: str = "") -> None:
        self.steps.append(
            {"step": step, "kept": kept, "dropped": {k: v for k, v in (dropped or {}).items() if v}, "note": note}
        )

    def table(self) -> str:
        """The ledger as a plain-text table (also used in the dataset card)."""
        width = max([len(s["step"]) for s in self.steps] + [4])
        lines = [f"{'step':<{width}}  {'kept':>6}  dropped (why)"]
        for step in self.steps:
            dropped = ", ".join(f"{reason}: {count}" for reason, count in step["dropped"].items()) or "-"
            note = f"  [{step['note']}]" if step["note"] else ""
            lines.append(f"{step['step']:<{width}}  {step['kept']:>6}  {dropped}{note}")
        return "\n".join(lines)
