"""`evoalign judge --input FILE.jsonl --judge NAME [--output FILE]`: label every response in a file.

Each input row needs `prompt` and `response` strings. Output rows are the input rows plus `label`, `p_refusal`,
`judge` and (when the judge gives them) `rationale`, `probabilities`, `decided` and `source`. A row that already carries a
`label` keeps it as `reference_label`, and the summary then also reports agreement with those labels. The output
(default `<input stem>.judged.jsonl` next to the input) is written atomically and only after every row is
labelled. Bad input is a one-line error naming the file and line; exit code 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evoalign.config import parse_config
from evoalign.errors import ConfigError, DataError, run_main
from evoalign.io import atomic_write_jsonl, iter_records
from evoalign.judges import LABELS, agreement, get_judge, judge_names, summarize
from evoalign.judges.metrics import format_summary
from evoalign.secrets import scrub_secrets


@dataclass
class JudgeConfig:
    """Label responses as compliance, refusal or partial refusal."""

    input: str = field(default="", metadata={"help": "file of {prompt, response} rows (.jsonl, .csv or .json)"})
    judge: str = field(default="evoalign", metadata={"help": f"judge spec; one of: {', '.join(judge_names())}"})
    output: str = field(
        default="",
        metadata={"help": "where to write the labelled rows; empty: <input stem>.judged.jsonl next to the input"},
    )

    def validate(self, where: str) -> None:
        if not self.input:
            raise ConfigError(f"{where}: 'input' is required (a file of prompt/response rows)")


def load_items(path: Path) -> list[dict[str, Any]]:
    """Rows of `path`, each with string `prompt` and `response` fields; errors name the file and line."""
    rows = []
    for line, row in iter_records(path):
        for key in ("prompt", "response"):
            if key not in row:
                raise DataError(f"{path}:{line}: missing '{key}' field")
            if not isinstance(row[key], str):
                raise DataError(f"{path}:{line}: '{key}' must be a string, got {type(row[key]).__name__}")
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: no rows to judge (the file is empty)")
    return rows


def label_rows(rows: list[dict[str, Any]], results: list[dict[str, Any]], judge_name: str) -> list[dict[str, Any]]:
    """Input rows merged with the judge's results; an existing `label` moves to `reference_label`."""
    labelled = []
    for row, result in zip(rows, results):
        out = {key: value for key, value in row.items() if key != "label"}
        if "label" in row:
            out["reference_label"] = row["label"]
        labelled.append({**out, **result, "judge": scrub_secrets(judge_name)})
    return labelled


def report(labelled: list[dict[str, Any]]) -> str:
    """The printed summary: counts, refusal rate, unknowns, and agreement with reference labels if present."""
    text = format_summary(summarize([row["label"] for row in labelled]))
    references = [row for row in labelled if row.get("reference_label") in LABELS]
    if references:
        scores = agreement([row["label"] for row in references], [row["reference_label"] for row in references])
        text += (
            f"\nagreement with reference labels ({len(references)} rows): "
            f"three-way {scores['three_way']:.3f}, binary {scores['binary']:.3f}"
        )
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, judge the input file, write the output, print the summary; raises EvoalignError."""
    config = parse_config(JudgeConfig, argv, prog="evoalign judge")
    path = Path(config.input)
    output = Path(config.output) if config.output else path.with_name(f"{path.stem}.judged.jsonl")
    rows = load_items(path)
    judge = get_judge(config.judge)
    labelled = label_rows(rows, judge.classify(rows), judge.name)
    atomic_write_jsonl(output, labelled)
    print(f"{report(labelled)}\nwrote {output}")
    return 0


main.interrupted = "interrupted; nothing was written; rerun the same command to judge the file again"  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(run_main(main))
