"""SIGKILL each generator command at several points, resume it, and get the uninterrupted run's files.

OR-Bench-style runs resume by replaying every model call from the response cache; PHTest-style runs resume from
the checkpoint of their last token step (their teacher-forced scores are not cached). The summaries are compared
without timings and API call statistics. Floats are compared to 1e-9 relative: a forward pass recomputed in another
process may differ in its last bits on CPU (seen once here: a target check's fitness differed in its 15th digit),
which is not a resume error; every text, label, count and choice must be identical.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evoalign.io import read_jsonl
from tests.reliability_support import environment, kill_when

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "datagen" / "configs"


def orbench_command(run_dir: Path, model_dir: str, resume: bool) -> list[str]:
    return [
        sys.executable, "-m", "evoalign.cli", "generate-orbench",
        "--config", str(CONFIGS / "orbench_offline.yaml"), "--output_dir", str(run_dir),
        "--seeds.limit", "4", "--rewrites_per_seed", "3", "--samples", "2", "--generator_sampling.max_new_tokens", "24",
        "--generator", f"{{spec: 'hf:{model_dir}', batch_size: 8}}",
        "--targets", f"[{{spec: 'hf:{model_dir}', batch_size: 8}}]",
        *(["--resume"] if resume else []),
    ]  # fmt: skip


def phtest_command(run_dir: Path, model_dir: str, resume: bool) -> list[str]:
    return [
        sys.executable, "-m", "evoalign.cli", "generate-phtest",
        "--config", str(CONFIGS / "phtest_offline.yaml"), "--output_dir", str(run_dir),
        "--topics.limit", "2", "--max_new_tokens", "6", "--samples", "2",
        "--generator", f"{{spec: 'hf:{model_dir}', batch_size: 8}}",
        "--targets", f"[{{spec: 'hf:{model_dir}', batch_size: 8}}]",
        *(["--resume"] if resume else []),
    ]  # fmt: skip


def run_to_end(command: list[str]) -> None:
    done = subprocess.run(command, env=environment(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def written_from_now(path: Path) -> Callable[[], bool]:
    """True once `path` is (re)written after this call: a run folder's files survive the previous kill."""
    since = time.time()
    return lambda: path.exists() and path.stat().st_mtime >= since


def summary(run_dir: Path) -> dict:
    data = json.loads((run_dir / "summary.json").read_text())
    return {k: v for k, v in data.items() if k not in ("seconds", "model_calls")}


def same(a: Any, b: Any) -> bool:
    """Equal JSON values, floats to 1e-9 relative (see the module docstring)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def assert_same_run(interrupted: Path, reference: Path, names: tuple[str, ...]) -> None:
    for name in names:
        assert same(read_jsonl(interrupted / name), read_jsonl(reference / name)), name
    assert same(summary(interrupted), summary(reference))


@pytest.mark.faults
@pytest.mark.subprocess
def test_orbench_killed_and_resumed_equals_an_uninterrupted_run(tmp_path, tiny_model_dir):
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    run_to_end(orbench_command(reference, tiny_model_dir, resume=False))
    rng = random.Random(0)
    killed = [
        kill_when(
            orbench_command(interrupted, tiny_model_dir, False), written_from_now(interrupted / "config.yaml"), 0.0
        )
    ]
    for delay in (0.0, rng.uniform(0.2, 0.8)):  # as soon as the models are loaded; while generating or checking
        ready = written_from_now(interrupted / "run_info.json")
        killed.append(kill_when(orbench_command(interrupted, tiny_model_dir, True), ready, delay))
    assert sum(killed) >= 2, f"too few kills landed mid-run: {killed}"
    run_to_end(orbench_command(interrupted, tiny_model_dir, resume=True))
    assert_same_run(interrupted, reference, ("generated.jsonl", "hard.jsonl", "rejected.jsonl"))
    assert json.loads((reference / "summary.json").read_text())["target_checked"] > 0


@pytest.mark.faults
@pytest.mark.subprocess
def test_phtest_killed_and_resumed_equals_an_uninterrupted_run(tmp_path, tiny_model_dir):
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    run_to_end(phtest_command(reference, tiny_model_dir, resume=False))
    rng = random.Random(1)
    checkpoints = interrupted / "checkpoints"
    kills = [
        (False, lambda: checkpoints.is_dir(), 0.0),  # after the first token step
        (True, lambda: (checkpoints / "iter-003.json").exists(), rng.uniform(0.05, 0.5)),  # inside a step
        (True, lambda: (checkpoints / "iter-006.json").exists(), 0.0),  # verifying, target check, writing
    ]
    killed = [
        kill_when(phtest_command(interrupted, tiny_model_dir, resume), ready, delay) for resume, ready, delay in kills
    ]
    assert sum(killed) >= 2, f"too few kills landed mid-run: {killed}"
    run_to_end(phtest_command(interrupted, tiny_model_dir, resume=True))
    assert_same_run(interrupted, reference, ("generated.jsonl", "rejected.jsonl"))
