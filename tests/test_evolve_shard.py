"""Seeds sharded over two launched processes (torchrun, as `accelerate launch` sets up) merge into one set.

Each process evolves the seeds whose index is its rank modulo 2; bandit rewards are pooled every iteration, so
the search makes the same choices as one process would. Generated log-probs may differ in the last digits
(batch shapes differ), so floats are compared approximately.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from evoalign.io import read_jsonl

ROOT = Path(__file__).resolve().parents[1]


def evolve(run_dir: Path, model_dir: str, launcher: list[str]) -> subprocess.CompletedProcess:
    command = [
        *launcher, str(ROOT / "datagen" / "evolve.py"),
        "--config", str(ROOT / "datagen" / "configs" / "tiny.yaml"),
        "--output_dir", str(run_dir),
        "--seeds.path", str(ROOT / "datagen" / "seeds" / "starter.jsonl"),
        "--targets", f"[{{spec: 'hf:{model_dir}', batch_size: 64}}]",
    ]  # fmt: skip
    env = {**os.environ, "EVOALIGN_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def decisions(row: dict) -> tuple:
    return row["seed_index"], row["instruction"], [(s["strategy"], s["accepted"]) for s in row["lineage"]]


@pytest.mark.slow
@pytest.mark.subprocess
def test_two_processes_shard_seeds_and_match_one_process(tmp_path, tiny_model_dir):
    torchrun = str(Path(sys.executable).parent / "torchrun")
    evolve(tmp_path / "one", tiny_model_dir, [sys.executable])
    done = evolve(tmp_path / "two", tiny_model_dir, [torchrun, "--nproc_per_node", "2"])
    assert done.stdout.count("mean fitness") == 1, "only the main process prints the summary"
    assert {p.name for p in (tmp_path / "two").glob("shard-*")} == {"shard-0-of-2", "shard-1-of-2"}
    second = {r["seed_index"] for r in read_jsonl(tmp_path / "two" / "shard-1-of-2" / "rows.jsonl")}
    first = {r["seed_index"] for r in read_jsonl(tmp_path / "two" / "shard-0-of-2" / "rows.jsonl")}
    assert second and max(first) < min(second), "each process evolves a contiguous part of the seeds"
    one = read_jsonl(tmp_path / "one" / "evolved.jsonl")
    two = read_jsonl(tmp_path / "two" / "evolved.jsonl")
    assert [decisions(r) for r in two] == [decisions(r) for r in one]
    assert [r["fitness"] for r in two] == pytest.approx([r["fitness"] for r in one], rel=1e-6)
