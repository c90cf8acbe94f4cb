"""Kill the real evolve script with SIGKILL at six points (five must land before it finishes), resume, and get the
uninterrupted run's output; the summary is compared without its model call counts and timings."""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reliability_support import comparable_summary, environment, kill_when

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "datagen" / "evolve.py"
OUTPUTS = ("evolved.jsonl", "duplicates.jsonl", "rejected_seeds.jsonl")


def command(run_dir: Path, model_dir: str, resume: bool) -> list[str]:
    return [
        sys.executable, str(SCRIPT),
        "--config", str(ROOT / "datagen" / "configs" / "tiny.yaml"),
        "--output_dir", str(run_dir),
        "--seeds.path", str(ROOT / "datagen" / "seeds" / "starter.jsonl"),
        "--targets", f"[{{spec: 'hf:{model_dir}', batch_size: 64}}]",
        "--iterations", "4",
        *(["--resume"] if resume else []),
    ]  # fmt: skip


def run_to_end(run_dir: Path, model_dir: str, resume: bool) -> None:
    done = subprocess.run(command(run_dir, model_dir, resume), env=environment(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def checkpoint(run_dir: Path, iteration: int) -> Callable[[], bool]:
    return lambda: (run_dir / "checkpoints" / f"iter-{iteration:03d}.json").exists()


@pytest.mark.faults
@pytest.mark.subprocess
def test_sigkill_and_resume_reproduce_the_uninterrupted_output(tmp_path, tiny_model_dir):
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    run_to_end(reference, tiny_model_dir, resume=False)
    rng = random.Random(0)
    kills = [
        (False, lambda: (interrupted / "config.yaml").exists(), 0.0),  # the run folder is new, no model called yet
        (True, lambda: (interrupted / "cache.sqlite").exists(), 0.0),  # the seeds' first target samples
        (True, checkpoint(interrupted, 1), rng.uniform(0.05, 0.5)),  # inside iteration 2
        (True, checkpoint(interrupted, 2), 0.0),  # right after a checkpoint
        (True, checkpoint(interrupted, 3), rng.uniform(0.05, 0.5)),  # inside the last iteration
        (True, lambda: (interrupted / "rows.jsonl").exists(), 0.0),  # while merging the outputs
    ]
    killed = [kill_when(command(interrupted, tiny_model_dir, resume), ready, delay) for resume, ready, delay in kills]
    assert sum(killed) >= 5, f"too few kills landed mid-run: {killed}"
    run_to_end(interrupted, tiny_model_dir, resume=True)
    for name in OUTPUTS:
        assert (interrupted / name).read_text() == (reference / name).read_text(), name
    assert comparable_summary(interrupted) == comparable_summary(reference)
