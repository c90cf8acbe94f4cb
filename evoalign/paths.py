"""Where things live: evoalign's cache folder, the local benchmark folder for offline machines, and the one test
of whether a name is a local path or a hub id."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "EVOALIGN_CACHE"
BENCHMARK_DIR_ENV = "EVOALIGN_BENCHMARK_DIR"
LOCAL_SUFFIXES = (".jsonl", ".ndjson", ".csv", ".json", ".gguf")


def cache_dir() -> Path:
    """Where evoalign keeps converted models and downloaded files (`$EVOALIGN_CACHE`, default ~/.cache/evoalign)."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "evoalign")).expanduser()


def is_local_path(name: str) -> bool:
    """True for an existing file or folder, or a name only a path can have (absolute, `./`, `~`, or a data or GGUF
    file suffix); False for a hub id such as `org/name`."""
    return (
        name.startswith((".", "/", "~"))
        or Path(name).suffix.lower() in LOCAL_SUFFIXES
        or Path(name).expanduser().exists()
    )


def benchmark_dir(given: str | None = None) -> Path | None:
    """The local folder of public benchmark files for offline machines: `given` (a config key), else
    `$EVOALIGN_BENCHMARK_DIR`; None when neither is set (benchmarks load from their public locations)."""
    folder = given or os.environ.get(BENCHMARK_DIR_ENV)
    return Path(folder).expanduser() if folder else None
