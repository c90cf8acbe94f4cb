"""Reading the evolve stage's `evolved.jsonl` into build examples; the only module that knows its column names.

Each evolve row (see `evoalign.evolve.report.output_row`) carries the final `instruction`, its `seed` text,
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
from typing import Any

from evoalign.build.examples import BENIGN, SAFETY, WANTED_REJECTED, Example
from evoalign.build.responses import final_text
from evoalign.errors import DataError
from evoalign.io import iter_records

INSTRUCTION, SEED, VERDICT, REASON, TARGETS = "instruction", "seed", "verdict", "reason", "targets"
RESPONSES, TEXT, LABEL, FINISH_REASON = "responses", "text", "label", "finish_reason"
HARMFUL_VERDICT = "harmful"


def _responses(row: dict[str, Any], where: str) -> list[tuple[str, str | None]]:
    """(text, label) of every sampled response of every target, cut-off ones trimmed, empty ones skipped."""
    targets = row.get(TARGETS) or []
    if not isinstance(targets, list) or not all(isinstance(t, dict) for t in targets):
        raise DataError(f"{where}: '{TARGETS}' must be a list of per-target records")
    found = []
    for target in targets:
        for response in target.get(RESPONSES) or []:
            if not isinstance(response, dict) or not isinstance(response.get(TEXT), str):
                raise DataError(f"{where}: every entry of '{TARGETS}[].{RESPONSES}' needs a string '{TEXT}'")
            text = final_text(response[TEXT], response.get(FINISH_REASON), "trim")
            if text:
                found.append((text, response.get(LABEL)))
    return found


def _with_labels(responses: list[tuple[str, str | None]], labels: tuple[str, ...]) -> list[str]:
    ranked = sorted((labels.index(label), text) for text, label in responses if label in labels)
    return list(dict.fromkeys(text for _, text in ranked))


def example_from_row(row: dict[str, Any], where: str, *, harmful_as_safety: bool) -> Example:
    """The example one evolve row becomes (see the module docstring)."""
    instruction = row.get(INSTRUCTION)
    if not isinstance(instruction, str) or not instruction.strip():
        raise DataError(f"{where}: empty or missing '{INSTRUCTION}'")
    seed = row.get(SEED)
    verdict = row.get(VERDICT)
    kind = SAFETY if harmful_as_safety and verdict == HARMFUL_VERDICT else BENIGN
    return Example(
        instruction=instruction.strip(),
        kind=kind,
        source="evolve",
        verdict=verdict,
        reason=row.get(REASON),
        group=seed if isinstance(seed, str) else None,
        rejected=_with_labels(_responses(row, where), WANTED_REJECTED[kind]),
        rejected_origin="evolve",
    )


def load_evolved(path: str | Path, *, harmful_as_safety: bool = True) -> list[Example]:
    """Examples from an evolve output JSONL file, in file order."""
    examples = [
        example_from_row(row, f"{path}:{line}", harmful_as_safety=harmful_as_safety)
        for line, row in iter_records(path)
    ]
    if not examples:
        raise DataError(f"{path}: no rows (the evolve output is empty)")
    return examples
