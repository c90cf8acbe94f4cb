"""`evoalign build` (and `datagen/build.py`): build the SFT and preference data from an evolved set.

    evoalign build --config datagen/configs/build_offline.yaml
    evoalign build --config datagen/configs/build_offline.yaml --resume          # after an interruption
    evoalign build --evolved null --import-evorefuse evo_align.json --assume_verdict benign \\
        --harmful_prompts advbench ...                                    # train on the published set
    evoalign build --config ... --export-evorefuse                            # also write the published format

Prints the ledger (rows kept and dropped at each step, and why) and the split sizes at the end.
"""

from __future__ import annotations

from collections.abc import Sequence

from evoalign.build.config import BuildConfig
from evoalign.build.pipeline import BuildResult, build
from evoalign.config import parse_config
from evoalign.labels import BENIGN


def report(result: BuildResult) -> str:
    """The end-of-run summary: the ledger, the split sizes by kind, and warnings about empty splits."""
    lines = [result.ledger.table(), ""]
    for name, rows in result.splits.items():
        benign = sum(row["kind"] == BENIGN for row in rows)
        lines.append(f"{name:<12} {len(rows):>6} rows ({benign} benign, {len(rows) - benign} safety)")
        if not rows:
            lines.append(f"warning: {name} is empty; the training recipes need every split they use")
    lines.append(f"\nwritten to {result.output_dir}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(BuildConfig, argv, prog="evoalign build")
    print(report(build(config)))
    return 0
