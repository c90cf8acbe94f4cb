"""Run metadata written next to every stage's output: the resolved config, package versions, command line.

Secrets never enter it: API keys are read only from environment variables, and any config value whose key
looks like a secret is masked before writing.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import platform
import re
import sys
from pathlib import Path
from typing import Any

from evoalign.io import atomic_write_json

PACKAGES = ("evoalign", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "openai")
_SECRET_KEY = re.compile(r"(^|_)(api_?key|token|secret|password)$", re.IGNORECASE)  # not max_new_tokens


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def scrub_secrets(value: Any) -> Any:
    """Mask values stored under secret-looking keys (a key *name* such as `api_key_env` is kept)."""
    if isinstance(value, dict):
        return {k: "***" if _SECRET_KEY.search(str(k)) else scrub_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_secrets(v) for v in value]
    return value


def write_run_info(run_dir: str | Path, config: dict[str, Any], stage: str) -> Path:
    """Write `run_info.json` (config, versions, argv, time) into the run directory."""
    path = Path(run_dir) / "run_info.json"
    atomic_write_json(
        path,
        {
            "stage": stage,
            "config": scrub_secrets(config),
            "argv": sys.argv,
            "python": platform.python_version(),
            "versions": package_versions(),
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
    )
    return path
