"""Peak memory and wall time of the quickstart, per stage and in all (target: at most 4 GB peak RSS on 2 cores).

    EVOALIGN_BENCHMARK_DIR=/path/to/files OMP_NUM_THREADS=2 python benchmarks/quickstart_memory.py \
        [--profile default] [--output_dir runs/quickstart-memory] [--max-gb 4]

Runs `evoalign quickstart --restart` in a child process, samples the child's resident set size (VmRSS) every
0.2 s and charges each sample to the stage the quickstart announced last. Prints each stage's peak RSS and seconds,
then the whole run's peak as the kernel counts it (`ru_maxrss`, the figure `/usr/bin/time -v` reports as "Maximum
resident set size") and the wall time; exits non-zero when the peak is above --max-gb. A sample every 0.2 s can
miss a short spike, so a stage's peak is a lower bound; the whole run's peak is exact.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time

from machine import machine_load

STAGE_LINE = re.compile(r"^\[quickstart\] (\w+): (running|resuming)")


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class StagePeaks:
    """Peak RSS and wall seconds per stage, from the quickstart's output and a sampling thread."""

    def __init__(self) -> None:
        self.stage = "start"
        self.peaks: dict[str, int] = {}
        self.started: dict[str, float] = {"start": time.perf_counter()}

    def enter(self, stage: str) -> None:
        """A new stage starts: print the finished one's figures (a run cut short still shows its stages)."""
        now = time.perf_counter()
        peak = self.peaks.get(self.stage, 0) / 1e9
        print(f"[memory] {self.stage}: peak RSS {peak:.2f} GB, {now - self.started[self.stage]:.0f} s", flush=True)
        self.stage = stage
        self.started[stage] = now

    def sample(self, process: subprocess.Popen) -> None:
        while process.poll() is None:
            rss = _rss_bytes(process.pid)
            self.peaks[self.stage] = max(self.peaks.get(self.stage, 0), rss)
            time.sleep(0.2)

    def seconds(self, end: float) -> dict[str, float]:
        starts = list(self.started.items())
        ends = [start for _, start in starts[1:]] + [end]
        return {name: round(stop - start, 1) for (name, start), stop in zip(starts, ends)}


def run(profile: str, output_dir: str) -> dict[str, object]:
    command = [sys.executable, "-c", "import sys; from evoalign.cli import main; sys.exit(main())"]
    command += ["quickstart", "--profile", profile, "--output_dir", output_dir, "--restart"]
    peaks = StagePeaks()
    start = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
    )
    sampler = threading.Thread(target=peaks.sample, args=(process,), daemon=True)
    sampler.start()
    for line in process.stdout:
        sys.stdout.write(line)
        match = STAGE_LINE.match(line)
        if match:
            peaks.enter(match.group(1))
    code = process.wait()
    end = time.perf_counter()
    sampler.join()
    if code:
        raise SystemExit(f"the quickstart failed with exit code {code}")
    seconds = peaks.seconds(end)
    stages = {
        name: {"peak_rss_gb": round(peaks.peaks.get(name, 0) / 1e9, 2), "seconds": seconds[name]} for name in seconds
    }
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # kilobytes on Linux
    return {
        "profile": profile,
        "stages": stages,
        "peak_rss_gb": round(peak_kb * 1024 / 1e9, 2),
        "wall_s": round(end - start),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default", help="quickstart profile (default, short)")
    parser.add_argument("--output_dir", default="runs/quickstart-memory", help="the quickstart's output folder")
    parser.add_argument("--max-gb", type=float, default=4.0, help="target: peak RSS at most this many GB")
    args = parser.parse_args()
    os.environ.setdefault("EVOALIGN_NO_PROGRESS", "1")
    result = run(args.profile, args.output_dir)
    print()
    for name, stage in result["stages"].items():
        print(f"{name:>8}: peak RSS {stage['peak_rss_gb']:6.2f} GB  {stage['seconds']:8.1f} s")
    print(
        f"quickstart ({args.profile}): peak RSS {result['peak_rss_gb']:.2f} GB (target <= {args.max_gb:g} GB), "
        f"wall {result['wall_s']} s"
    )
    print(json.dumps(result))
    return 0 if result["peak_rss_gb"] <= args.max_gb else 1


if __name__ == "__main__":
    with machine_load():
        code = main()
    sys.exit(code)
