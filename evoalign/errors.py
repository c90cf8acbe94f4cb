"""User-facing errors.

`EvoalignError` carries a one-line message that names the offending file, line or field. `run_main`, the one
error wrapper of every command (the `evoalign` CLI, the stage scripts and the recipes), turns it into that line
on stderr and exit code 2, so bad input never produces a traceback. An `OSError` (an output path that is a file,
a read-only folder, a full disk) is one line too, naming the path. Every message, and every log record, leaves
with its secrets redacted (`evoalign.secrets`). After Ctrl-C it prints the command's own advice: a command sets
it as `main.interrupted = "..."` (default: rerun with `--resume`).
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable, Sequence

from evoalign.secrets import install_log_scrubber, scrub_secrets

INTERRUPTED = "interrupted; rerun the same command with --resume to continue"
_OS_ADVICE = {
    errno.ENOSPC: "free some space or choose another output folder",
    errno.EDQUOT: "free some space or choose another output folder",
    errno.EACCES: "check its permissions or choose another output folder",
    errno.EROFS: "the file system is read-only; choose another output folder",
    errno.EPERM: "check its permissions or choose another output folder",
    errno.ENOTDIR: "a file stands where a folder is needed; choose another path",
    errno.EEXIST: "a file stands where a folder is needed; choose another path",
    errno.EISDIR: "a folder stands where a file is needed; choose another path",
}


class EvoalignError(Exception):
    """An error caused by the user's input or environment; printed as one line, exit code 2."""

    exit_code = 2


class ConfigError(EvoalignError):
    """A config file or flag is wrong (unknown key, wrong type, missing value)."""


class DataError(EvoalignError):
    """An input data file is malformed (bad JSON line, missing column, empty instruction, bad bytes)."""


class ModelError(EvoalignError):
    """A model cannot be loaded or reached, or a model call failed after its retry budget."""


def os_error_line(err: OSError) -> str:
    """One line for a failed file operation: the path, the system's reason, and what to do."""
    path = err.filename if err.filename is not None else "a file"
    reason = err.strerror or str(err)
    advice = _OS_ADVICE.get(err.errno or 0, "check the path")
    return f"{path}: {reason}; {advice}"


def _one_line(text: str) -> str:
    return " ".join(scrub_secrets(str(text)).split())


def run_main(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> int:
    """Run a command's `main(argv)`: user errors and OS errors print one line and return 2; Ctrl-C returns 130."""
    install_log_scrubber()
    try:
        result = main(argv)
    except EvoalignError as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return err.exit_code
    except OSError as err:
        print(f"error: {_one_line(os_error_line(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(getattr(main, "interrupted", INTERRUPTED), file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0
