"""Reading the evolve stage's `evolved.jsonl` (rows typed by `evoalign.records.EvolvedRow`) into build examples.

Each evolve row carries the final `instruction`, its `seed` text,
the verifier's `verdict` and the mutator's `reason`, and per target (`targets`) the K responses sampled during
evolution, each with the refusal judge's `label` and its `finish_reason`. A row becomes a benign-kind example
whose rejected pool is the targets' refusals (full refusals first, then partial ones); a row the verifier
judged `harmful` becomes a safety example whose rejected pool is the targets' compliant answers, when
`harmful_as_safety` is on. Responses cut off at the evolve stage's token budget are trimmed to their last
complete sentence (and skipped when none is left). The verdict itself is enforced later, in
`evoalign.build.safety.safety_gate`.
"""

from __future__ import annotations

from pathlib import Path

from evoalign.build.examples import WANTED_REJECTED, Example
from evoalign.errors import DataError
from evoalign.io import iter_records
from evoalign.labels import BENIGN, HARMFUL, SAFETY
from evoalign.records import EvolvedRow
from evoalign.text import final_text


def _responses(row: EvolvedRow) -> list[tuple[str, str | None]]:
    """(text, label) of every sampled response of every target, cut-off ones trimmed, empty ones skipped."""
    found = []
    for target in row.targets:
        for response in target.responses:
            text = final_text(response.text, response.finish_reason, "trim")
            if text:
                found.append((text, response.label))
    return found


def _with_labels(responses: list[tuple[str, str | None]], labels: tuple[str, ...]) -> list[str]:
    ranked = sorted((labels.index(label), text) for text, label in responses if label in labels)
    return list(dict.fromkeys(text for _, text in ranked))


def example_from_row(row: EvolvedRow, *, harmful_as_safety: bool) -> Example:
    """The example one evolve row becomes (see the module docstring)."""
    kind = SAFETY if harmful_as_safety and row.verdict == HARMFUL else BENIGN
    return Example(
        instruction=row.instruction.strip(),
        kind=kind,
        source="evolve",
        verdict=row.verdict,
        reason=row.reason,
        group=row.seed if isinstance(row.seed, str) else None,
        rejected=_with_labels(_responses(row), WANTED_REJECTED[kind]),
        rejected_origin="evolve",
    )


def load_evolved(path: str | Path, *, harmful_as_safety: bool = True) -> list[Example]:
    """Examples from an evolve output JSONL file, in file order."""
    examples = [
        example_from_row(EvolvedRow.from_json(row, f"{path}:{line}"), harmful_as_safety=harmful_as_safety)
        for line, row in iter_records(path)
    ]
    if not examples:
        raise DataError(f"{path}: no rows (the evolve output is empty)")
    return examples
