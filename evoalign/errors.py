"""User-facing errors.

`EvoalignError` carries a one-line message that names the offending file, line or field. `run_main`, the one
error wrapper of every command (the `evoalign` CLI, the stage scripts and the recipes), turns it into that line
on stderr and exit code 2, so bad input never produces a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence


class EvoalignError(Exception):
    """An error caused by the user's input or environment; printed as one line, exit code 2."""

    exit_code = 2


class ConfigError(EvoalignError):
    """A config file or flag is wrong (unknown key, wrong type, missing value)."""


class DataError(EvoalignError):
    """An input data file is malformed (bad JSON line, missing column, empty instruction, bad bytes)."""


class ModelError(EvoalignError):
    """A model cannot be loaded or reached, or a model call failed after its retry budget."""


def run_main(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> int:
    """Run a command's `main(argv)`: user errors print one line and return 2; Ctrl-C returns 130."""
    try:
        result = main(argv)
    except EvoalignError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted; rerun the same command with --resume to continue", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0
