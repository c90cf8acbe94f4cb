"""`evoalign eval` / `eval/run.py`: run an evaluation from a YAML config, or re-render a finished report.

evoalign eval --config eval/configs/smollm2_offline.yaml [--limit 30 --output_dir runs/eval]
evoalign eval --render runs/eval/report.json         # report.md + tradeoff.png from the JSON, no models
evoalign eval --config CONFIG.yaml --render-only     # the same for the config's output_dir
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from evoalign.config import parse_config
from evoalign.eval.report import MARKDOWN_NAME, PLOT_NAME, REPORT_NAME, load_report, render, summary_table
from evoalign.eval.runner import EvalConfig, evaluate


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(EvalConfig, argv, prog="evoalign eval")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if config.render or config.render_only:
        path = Path(config.render or Path(config.output_dir) / REPORT_NAME)
        report = load_report(path)
        render(report, path.parent)
        out = path.parent
    else:
        report = evaluate(config)
        out = Path(config.output_dir)
    print(summary_table(report))
    written = [out / name for name in (REPORT_NAME, MARKDOWN_NAME, PLOT_NAME) if (out / name).exists()]
    print("\nwrote " + ", ".join(map(str, written)))
    return 0


main.interrupted = (  # type: ignore[attr-defined]
    "interrupted; rerun the same command (without --resume) to continue: answers so far are cached in output_dir"
)
