"""`make quickstart` at a baseline commit and at the current one, from fresh clones on the same machine, in one run.

Issue 21 asked for a lighter quickstart "with wall time no worse" than the 15 min 12 s it measured before any of
its changes; a figure from another day on another machine compares nothing, so this script measures both sides
here, one after the other. Each leg clones this repository at its commit into the work folder, runs `make install`
(a fresh `.venv`; timed apart, since it depends on the pip cache, not on the pipeline) and then `make quickstart`,
and records the wall time and the peak resident set size of the whole process tree (`os.wait4`, the figure
`/usr/bin/time -v` prints as "Maximum resident set size"). Each leg's output goes to `<work>/<leg>.log`; its
`[quickstart]` stage lines are echoed. It prints both legs, the ratio of the pipeline times and exits non-zero when
the current quickstart is slower than the baseline or peaks above --max-gb.

    EVOALIGN_BENCHMARK_DIR=/path/to/files python benchmarks/quickstart_wall_time.py [--baseline 0067fc8 \\
        --current HEAD --work-dir /tmp/qs-wall --max-gb 4]

The default baseline, 0067fc8, is the last commit before issue 21's first change (fce742c, its parent): the
pipeline the issue timed, with SFT and DPO batches of 8 rows / 2 pairs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from machine import machine_load

ROOT = Path(__file__).resolve().parents[1]


def timed(command: list[str], cwd: Path, log: Path) -> tuple[float, float]:
    """Run `command` to completion; (seconds, peak RSS in GB of its process tree). Stage lines are echoed."""
    start = time.perf_counter()
    with log.open("a", encoding="utf-8") as out:
        process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in process.stdout:
            out.write(line)
            if line.startswith("[quickstart]"):
                print(f"  {time.strftime('%H:%M:%S')} {line.rstrip()}", flush=True)
        _, status, usage = os.wait4(process.pid, 0)  # the tree's peak RSS, which Popen.wait does not give
        process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed in {cwd} (see {log})")
    return seconds, usage.ru_maxrss * 1024 / 1e9


def leg(name: str, commit: str, work: Path) -> dict[str, float]:
    """Clone at `commit`, install, run the quickstart; the leg's times and peak."""
    clone = work / name
    shutil.rmtree(clone, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", commit], check=True)
    log = work / f"{name}.log"
    log.unlink(missing_ok=True)
    print(f"{name}: commit {commit}, {clone}", flush=True)
    install, _ = timed(["make", "install"], clone, log)
    quickstart, peak = timed(["make", "quickstart"], clone, log)
    print(
        f"{name}: install {install:.0f} s, quickstart {quickstart:.0f} s ({quickstart / 60:.1f} min), "
        f"peak RSS {peak:.2f} GB",
        flush=True,
    )
    return {"install_s": install, "quickstart_s": quickstart, "peak_rss_gb": peak}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="0067fc8", help="commit of the baseline leg")
    parser.add_argument("--current", default="HEAD", help="commit of the current leg")
    parser.add_argument("--work-dir", default="/tmp/quickstart-wall-time", help="where the clones and logs go")
    parser.add_argument("--max-gb", type=float, default=4.0, help="the current quickstart's peak RSS target")
    args = parser.parse_args()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    commits = {}
    for name, ref in (("baseline", args.baseline), ("current", args.current)):
        found = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", ref], capture_output=True, text=True)
        if found.returncode != 0:
            raise SystemExit(f"--{name}: {ref} is not a commit of {ROOT}")
        commits[name] = found.stdout.strip()
    results = {name: leg(name, commit, work) for name, commit in commits.items()}
    old, new = results["baseline"], results["current"]
    ratio = new["quickstart_s"] / old["quickstart_s"]
    print(
        f"quickstart wall: baseline {old['quickstart_s']:.0f} s, current {new['quickstart_s']:.0f} s "
        f"(current / baseline {ratio:.2f}); with install {old['install_s'] + old['quickstart_s']:.0f} s vs "
        f"{new['install_s'] + new['quickstart_s']:.0f} s"
    )
    print(
        f"peak RSS: baseline {old['peak_rss_gb']:.2f} GB, current {new['peak_rss_gb']:.2f} GB "
        f"(target <= {args.max_gb:g} GB)"
    )
    return 0 if ratio <= 1.0 and new["peak_rss_gb"] <= args.max_gb else 1


if __name__ == "__main__":
    with machine_load():
        code = main()
    sys.exit(code)
