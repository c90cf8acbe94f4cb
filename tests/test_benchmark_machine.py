"""benchmarks/machine.py: every benchmark script prints the load average around its run and its thread count."""

from __future__ import annotations

import importlib.util
import io
import re
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _machine():
    spec = importlib.util.spec_from_file_location("benchmark_machine", BENCHMARKS / "machine.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_load_and_threads_are_printed_before_and_after():
    machine = _machine()
    stream = io.StringIO()
    with machine.machine_load(stream):
        stream.write("measuring\n")
    before, measured, after = stream.getvalue().splitlines()
    assert re.search(r"\d+ cores, \d+ threads \(OMP_NUM_THREADS=[^)]+\); load average before: [\d.]+ / ", before)
    assert measured == "measuring"
    assert re.search(r"load average after: [\d.]+ / [\d.]+ / [\d.]+ \(1 / 5 / 15 min\); (idle|busy)", after)


def test_the_verdict_names_a_busy_machine():
    verdict = _machine().verdict
    assert verdict((0.1, 0.2, 0.3), (2.3, 1.0, 0.5), threads=2) == "idle"
    assert verdict((3.2, 3.0, 2.0), (4.0, 3.5, 2.5), threads=2).startswith("busy: other work's load was 3.20 before")
    assert "about 2.00 during" in verdict((0.2, 0.2, 0.2), (4.0, 1.0, 0.5), threads=2)


def test_every_benchmark_script_runs_inside_machine_load():
    scripts = [path for path in BENCHMARKS.glob("*.py") if path.name != "machine.py"]
    assert scripts
    for path in scripts:
        main_block = path.read_text().split('if __name__ == "__main__":', 1)
        assert len(main_block) == 2 and "with machine_load():" in main_block[1], f"{path.name} lacks machine_load()"
