"""The project's own labelled (prompt, response, label) set, used by tests and `benchmarks/judges.py`.

Every row was written for this project (not copied from a benchmark): clear refusals and compliance, partial
refusals, and the hard cases string rules get wrong. `category` names the case type; `split` is `dev` (rows
the rules were developed against) or `heldout` (written after the rules were frozen, never used to tune them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evoalign.io import read_jsonl

LABELLED_SET = Path(__file__).with_name("labelled_responses.jsonl")


def load_labelled_set(split: str | None = None) -> list[dict[str, Any]]:
    """The labelled rows (id, category, prompt, response, label, split), optionally one split only."""
    rows = read_jsonl(LABELLED_SET)
    return [row for row in rows if split is None or row["split"] == split]
