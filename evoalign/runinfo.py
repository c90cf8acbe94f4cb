"""Run metadata written next to every stage's output: the resolved config, package versions, command line.

Secrets never enter it: API keys are read only from environment variables, and the config passes through
`evoalign.secrets.scrub_secrets` before writing.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import platform
import sys
from pathlib import Path
from typing import Any

from evoalign.io import atomic_write_json
from evoalign.secrets import scrub_secrets

PACKAGES = ("evoalign", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "openai")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape a run (None for one that is not installed)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_run_info(run_dir: str | Path, config: dict[str, Any], stage: str) -> Path:
    """Write `run_info.json` (config, versions, argv, time) into the run directory."""
    path = Path(run_dir) / "run_info.json"
    atomic_write_json(
        path,
        {
            "stage": stage,
            "config": scrub_secrets(config),
            "argv": scrub_secrets(sys.argv),
            "python": platform.python_version(),
            "versions": package_versions(),
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
    )
    return path
