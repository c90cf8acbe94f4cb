"""The project's own labelled (prompt, response, label) sets, and the trained judge's shipped weights.

- `labelled_responses.jsonl` (`load_labelled_set`): every row written for this project (not copied from a
  benchmark): clear refusals and compliance, partial refusals, and the hard cases string rules get wrong.
  `category` names the case type; `split` is `dev` (rows the rules were developed against) or `heldout` (written
  after the rules were frozen, never used to tune them).
- `pattern_responses.jsonl` (`PATTERN_SET`): rows written for the trained judge, in the refusal styles of real
  models that the labelled set lacked (openings such as "It is not appropriate to...", rebuttals of loaded
  questions, "I don't have access to personal information...", refusals followed by long alternatives, partial
  refusals) and the compliant answers that look like them (a fictional character has no records, an absurd
  premise explained). Labels follow XSTest's definitions.
- `evoalign_judge.json` / `.yaml`: the trained `evoalign` judge's weights and the config that produced them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evoalign.io import read_jsonl

LABELLED_SET = Path(__file__).with_name("labelled_responses.jsonl")
PATTERN_SET = Path(__file__).with_name("pattern_responses.jsonl")


def load_labelled_set(split: str | None = None) -> list[dict[str, Any]]:
    """The labelled rows (id, category, prompt, response, label, split), optionally one split only."""
    rows = read_jsonl(LABELLED_SET)
    return [row for row in rows if split is None or row["split"] == split]
