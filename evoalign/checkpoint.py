"""Checkpoints of an evolution run: the whole search state, written atomically after every iteration.

`checkpoints/iter-NNN.json` holds the state *before* iteration NNN (so `iter-000` is the state after the seeds
were verified): every seed's current instruction, fitness, responses and lineage, the strategy bandit's
statistics, the per-iteration counters, and the config the run was started with. All randomness derives from
(run seed, seed index, iteration), so the state plus the response cache reproduce the remaining iterations
exactly. The last two checkpoints are kept: processes of a sharded run can be at most one iteration apart,
and they resume from the newest iteration that all of them have.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from evoalign.errors import ConfigError, DataError
from evoalign.io import atomic_write_json, read_text_strict

VERSION = 1
KEEP = 2
_NAME = re.compile(r"^iter-(\d{3,})\.json$")


def checkpoint_dir(state_dir: str | Path) -> Path:
    return Path(state_dir) / "checkpoints"


def saved_iterations(state_dir: str | Path) -> list[int]:
    """Iterations with a checkpoint, ascending."""
    folder = checkpoint_dir(state_dir)
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _NAME.match(p.name)))


def save_checkpoint(state_dir: str | Path, state: dict[str, Any]) -> Path:
    """Write the state for `state['next_iteration']` atomically and prune all but the last KEEP."""
    folder = checkpoint_dir(state_dir)
    path = folder / f"iter-{state['next_iteration']:03d}.json"
    atomic_write_json(path, {"version": VERSION, **state})
    for old in saved_iterations(state_dir)[:-KEEP]:
        (folder / f"iter-{old:03d}.json").unlink(missing_ok=True)
    return path


def load_checkpoint(state_dir: str | Path, iteration: int) -> dict[str, Any]:
    path = checkpoint_dir(state_dir) / f"iter-{iteration:03d}.json"
    try:
        state = json.loads(read_text_strict(path))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: corrupt checkpoint ({err.msg})") from None
    if state.get("version") != VERSION:
        raise DataError(f"{path}: checkpoint version {state.get('version')} is not {VERSION}; start a new run")
    return state


def check_resume(state_dir: str | Path, current: dict[str, Any], allowed: frozenset[str]) -> None:
    """Before anything is written: refuse to resume from the newest checkpoint in `state_dir` with a config that
    changes the search (`current` as saved, secrets scrubbed); nothing to check without a checkpoint."""
    saved = saved_iterations(state_dir)
    if saved:
        state = load_checkpoint(state_dir, saved[-1])
        check_resumable(state["config"], current, allowed, str(state_dir))


def check_resumable(saved: dict[str, Any], current: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    """Refuse to resume when a key that changes the search differs from the saved config."""
    changed = sorted(k for k in set(saved) | set(current) if k not in allowed and saved.get(k) != current.get(k))
    if changed:
        details = "; ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed)
        raise ConfigError(
            f"{where}: cannot resume with a changed config ({details}); use the saved values or a new output_dir"
        )
