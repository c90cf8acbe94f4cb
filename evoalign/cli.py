"""The `evoalign` console entry: `evoalign <command> [args]`.

Each command is a `main(argv)` in the library, imported only when it runs, so `evoalign --help` is instant;
`evoalign <command> --help` lists every key of that command's config. User errors (`EvoalignError`) become one
line on stderr and exit code 2 (`evoalign.errors.run_main`); Ctrl-C exits 130.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from evoalign.errors import run_main

COMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": ("evoalign.quickstart", "run the whole pipeline offline on the bundled SmolLM2"),
    "evolve": ("evoalign.evolve.cli", "evolve pseudo-malicious instructions from seeds (EvoRefuse)"),
    "generate-orbench": (
        "evoalign.generators.cli:orbench_main",
        "OR-Bench-style: rewrite toxic seeds into prompts that only look toxic, moderated",
    ),
    "generate-phtest": (
        "evoalign.generators.cli:phtest_main",
        "PHTest-style: write prompts token by token under a refusal + harmlessness objective",
    ),
    "build": ("evoalign.build.cli", "build SFT and preference data from an evolved set"),
    "sft": ("evoalign.train.recipes:sft_cli", "train a LoRA/QLoRA adapter with SFT (same as recipes/sft.py)"),
    "dpo": ("evoalign.train.recipes:dpo_cli", "train a LoRA/QLoRA adapter with DPO (same as recipes/dpo.py)"),
    "eval": ("evoalign.eval.cli", "measure over-refusal against safety on benchmarks"),
    "eval-data": ("evoalign.eval.data_quality", "data-quality metrics of a generated set"),
    "judge": ("evoalign.judges.cli", "label responses as compliance, refusal or partial refusal"),
    "generate": ("evoalign.generate", "batched generation with any model spec"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: evoalign <command> [--config FILE.yaml] [--key value ...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command '{command}'\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, _, function = COMMANDS[command][0].partition(":")
    return run_main(getattr(importlib.import_module(module_name), function or "main"), rest)


if __name__ == "__main__":
    sys.exit(main())
