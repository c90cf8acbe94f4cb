"""Interruption (issue 9.2): SIGKILL the real build and eval scripts at five points, then finish the run.

The killed-and-resumed run must produce the same outputs as an uninterrupted run with the same seed (the summary
compared without its model call counts, which a resumed run counts afresh), and leave no temporary or partial
file behind (outputs are written atomically). Kill points are seeded fractions of the
uninterrupted run's duration, so some land in start-up, some in model calls and some while writing outputs.
The evolve script's own kill test is tests/test_datagen_kill.py.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from evoalign.io import atomic_write_text
from evoalign.testing.openai_server import OpenAIServer
from tests.reliability_support import (
    build_settings,
    comparable_summary,
    kill_when,
    openai_model,
    run_to_end,
    script_command,
    scripted,
    stray_files,
    write_jsonl,
    write_yaml,
)

pytestmark = [pytest.mark.faults, pytest.mark.subprocess]  # kills stage processes
KILLS = 5
BUILD_OUTPUTS = ("train_sft.jsonl", "test_sft.jsonl", "train_prefs.jsonl", "test_prefs.jsonl")


def kill_repeatedly(command: list[str], full: float, cached: float, seed: int) -> list[bool]:
    """SIGKILL `command` at KILLS seeded points; which kills landed before the run finished.

    `full` is an uninterrupted run's duration, `cached` a rerun's on a finished run (start-up, the cached model
    calls and the writes). The first kill lands in the model calls, the others anywhere in a resumed run.
    """
    rng = random.Random(seed)
    delays = [rng.uniform(0.5, 0.9) * full] + [rng.uniform(0.1, 0.95) * cached for _ in range(KILLS - 1)]
    return [kill_when(command, lambda: True, delay) for delay in delays]


def test_build_killed_five_times_then_resumed_matches_an_uninterrupted_run(tmp_path):
    with OpenAIServer(scripted, latency=0.02) as server:
        settings = build_settings(tmp_path, openai_model(server.base_url, max_concurrency=2))

        def command(run: str, resume: bool) -> list[str]:
            config = write_yaml(tmp_path / f"{run}.yaml", {**settings, "output_dir": str(tmp_path / run)})
            return script_command("datagen/build.py", config, *(["--resume"] if resume else []))

        full = run_to_end(command("reference", resume=False))
        cached = run_to_end(command("reference", resume=True))
        killed = [kill_when(command("killed", resume=False), lambda: True, 0.3 * cached)]
        killed += kill_repeatedly(command("killed", resume=True), full, cached, seed=0)
        assert sum(killed) >= 3, f"too few kills landed mid-run: {killed}"
        run_to_end(command("killed", resume=True))
    for name in BUILD_OUTPUTS:
        assert (tmp_path / "killed" / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), name
    assert comparable_summary(tmp_path / "killed") == comparable_summary(tmp_path / "reference")
    assert stray_files(tmp_path / "killed") == []


def comparable(report: dict) -> list[dict]:
    """What an eval run measured, without its timings."""
    return [
        {key: run[key] for key in ("name", "condition", "responses", "metrics", "summary")} for run in report["runs"]
    ]


def test_eval_killed_five_times_then_rerun_matches_an_uninterrupted_run(tmp_path, tiny_model_dir):
    benign = write_jsonl(tmp_path / "benign.jsonl", [{"prompt": f"How do I kill process {i}?"} for i in range(12)])
    harmful = write_jsonl(tmp_path / "harmful.jsonl", [{"prompt": f"Hurt person {i} badly."} for i in range(8)])

    def command(run: str) -> list[str]:
        config = {
            "models": [{"name": "tiny", "spec": f"hf:{tiny_model_dir}", "batch_size": 4}],
            "benchmarks": {
                "mine": {"path": str(benign), "kind": "benign"},
                "bad": {"path": str(harmful), "kind": "harmful"},
            },
            "max_new_tokens": 8,
            "output_dir": str(tmp_path / run),
        }
        return script_command("eval/run.py", write_yaml(tmp_path / f"{run}.yaml", config))

    full = run_to_end(command("reference"))
    cached = run_to_end(command("reference"))
    killed = kill_repeatedly(command("killed"), full, cached, seed=1)
    assert sum(killed) >= 3, f"too few kills landed mid-run: {killed}"
    run_to_end(command("killed"))
    expected = json.loads((tmp_path / "reference" / "report.json").read_text())
    actual = json.loads((tmp_path / "killed" / "report.json").read_text())
    assert comparable(actual) == comparable(expected)
    assert stray_files(tmp_path / "killed") == []
    assert {p.name for p in Path(tmp_path / "killed").iterdir()} >= {"report.md", "tradeoff.png", "report.json"}


def test_the_next_write_removes_a_killed_writers_temp_file(tmp_path):
    target = tmp_path / "rows.jsonl"
    code = (
        "import os, signal, evoalign.io as io; from pathlib import Path\n"
        "io.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
        f"io.atomic_write_text(Path({str(target)!r}), 'partial')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=False)
    assert len(stray_files(tmp_path)) == 1 and not target.exists(), "the killed writer left its temp file"
    atomic_write_text(target, "complete\n")
    assert stray_files(tmp_path) == [] and target.read_text() == "complete\n"
