"""The published EvoRefuse-Align format (ShareGPT-style preference records), in and out.

The EvoRefuse authors released their alignment set (`evo_align.json`) as a JSON array of

    {"conversations": [{"from": "human", "value": INSTRUCTION}],
     "chosen": {"from": "gpt", "value": COMPLIANT ANSWER},
     "rejected": {"from": "gpt", "value": REFUSAL}}

`read_evorefuse` reads that (a JSON array, or JSONL of the same records); `imported_examples` turns the
records into build examples, letting the refusal judge decide each record's direction, so a refusal never
becomes a benign answer; `write_evorefuse` exports our preference rows in the same format.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evoalign.build.examples import Example
from evoalign.build.responses import judge_labels
from evoalign.build.summary import Ledger
from evoalign.errors import DataError
from evoalign.io import atomic_write_text, iter_records
from evoalign.judges import COMPLIANCE, REFUSAL, RefusalJudge, is_refusing
from evoalign.labels import BENIGN, SAFETY


@dataclass(frozen=True)
class ImportedPair:
    instruction: str
    chosen: str
    rejected: str


def _turn_text(turn: Any, speaker: str, where: str) -> str:
    if isinstance(turn, list) and len(turn) == 1:
        turn = turn[0]
    if not isinstance(turn, Mapping) or turn.get("from") != speaker or not isinstance(turn.get("value"), str):
        raise DataError(f"{where}: expected a {{'from': '{speaker}', 'value': TEXT}} turn, got {str(turn)[:80]}")
    if not turn["value"].strip():
        raise DataError(f"{where}: empty '{speaker}' turn")
    return turn["value"].strip()


def _pair(record: dict[str, Any], where: str) -> ImportedPair:
    conversations = record.get("conversations")
    if not isinstance(conversations, list) or len(conversations) != 1:
        raise DataError(f"{where}: 'conversations' must hold exactly one human turn (multi-turn is not supported)")
    return ImportedPair(
        instruction=_turn_text(conversations[0], "human", f"{where} conversations"),
        chosen=_turn_text(record.get("chosen"), "gpt", f"{where} chosen"),
        rejected=_turn_text(record.get("rejected"), "gpt", f"{where} rejected"),
    )


def read_evorefuse(path: str | Path) -> list[ImportedPair]:
    """The records of an EvoRefuse-Align file (.json array or .jsonl); malformed records name their number."""
    pairs = [_pair(record, f"{path}: record {number}") for number, record in iter_records(path)]
    if not pairs:
        raise DataError(f"{path}: no records")
    return pairs


def imported_examples(
    pairs: Sequence[ImportedPair], judge: RefusalJudge, source: str, ledger: Ledger
) -> list[Example]:
    """Examples from imported pairs, each direction checked by the refusal judge.

    (compliance, refusal or partial) is a benign example; (refusal, compliance) a safety example; any other
    combination is dropped and counted. Benign examples carry no verdict, so the safety gate decides them.
    """
    prompts = [pair.instruction for pair in pairs]
    chosen = judge_labels(judge, prompts, [pair.chosen for pair in pairs])
    rejected = judge_labels(judge, prompts, [pair.rejected for pair in pairs])
    examples, dropped = [], Counter()
    for pair, chosen_label, rejected_label in zip(pairs, chosen, rejected):
        if chosen_label == COMPLIANCE and is_refusing(rejected_label):
            kind = BENIGN
        elif chosen_label == REFUSAL and rejected_label == COMPLIANCE:
            kind = SAFETY
        else:
            dropped[f"chosen {chosen_label}, rejected {rejected_label}"] += 1
            continue
        examples.append(
            Example(
                instruction=pair.instruction,
                kind=kind,
                source=source,
                answer=pair.chosen,
                rejected=[pair.rejected],
                rejected_origin="imported",
            )
        )
    safety = sum(e.kind == SAFETY for e in examples)
    ledger.record("import EvoRefuse-Align (judge checks both sides)", len(examples), dropped, f"{safety} safety pairs")
    return examples


def to_evorefuse(row: Mapping[str, Any]) -> dict[str, Any]:
    """One of our conversational preference rows as an EvoRefuse-Align record."""
    user = [m["content"] for m in row["prompt"] if m["role"] == "user"]
    if len(user) != 1 or len(row["prompt"]) != 1:
        raise DataError(f"row {row.get('id', '?')}: only single-turn user prompts can be exported")
    return {
        "conversations": [{"from": "human", "value": user[0]}],
        "chosen": {"from": "gpt", "value": row["chosen"][0]["content"]},
        "rejected": {"from": "gpt", "value": row["rejected"][0]["content"]},
    }


def write_evorefuse(rows: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """Write preference rows as an EvoRefuse-Align JSON array (atomically)."""
    records = [to_evorefuse(row) for row in rows]
    atomic_write_text(path, json.dumps(records, ensure_ascii=False, indent=4) + "\n")
