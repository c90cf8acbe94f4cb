"""How busy the machine was around a benchmark: every script in benchmarks/ runs its `main()` inside `machine_load()`.

It prints (to stderr, so that a script's JSON on stdout stays parseable) the cores, the threads PyTorch computes
with, and the load average before and after the measurement, then whether the machine was idle or busy: busy when
other work's 1-minute load average was above `OTHER_LOAD` before the run, or the load after exceeds this run's own
threads by more than that. A figure from a busy machine is marked as such in docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

OTHER_LOAD = 0.5  # load average of other work above which the machine counts as busy


def compute_threads() -> int:
    """The intra-op threads PyTorch computes with (OMP_NUM_THREADS, else one per core); without torch, the env."""
    try:
        import torch
    except ImportError:
        return int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
    return torch.get_num_threads()


def _loads(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{value:.2f}" for value in values) + " (1 / 5 / 15 min)"


def verdict(before: tuple[float, ...], after: tuple[float, ...], threads: int) -> str:
    """'idle' or 'busy: ...' from the 1-minute load averages around a run that used `threads` threads."""
    others_during = after[0] - threads
    if before[0] <= OTHER_LOAD and others_during <= OTHER_LOAD:
        return "idle"
    return (
        f"busy: other work's load was {before[0]:.2f} before and about {max(others_during, 0.0):.2f} during "
        "(the load after minus this run's threads); its absolute times are inflated"
    )


@contextlib.contextmanager
def machine_load(stream=None) -> Iterator[None]:
    """Print the cores, threads and load average before the block and the load average and verdict after it."""
    stream = stream or sys.stderr
    threads = compute_threads()
    before = os.getloadavg()
    omp = os.environ.get("OMP_NUM_THREADS", "unset")
    print(
        f"[machine] {os.cpu_count()} cores, {threads} threads (OMP_NUM_THREADS={omp}); "
        f"load average before: {_loads(before)}",
        file=stream,
        flush=True,
    )
    try:
        yield
    finally:
        after = os.getloadavg()
        print(
            f"[machine] load average after: {_loads(after)}; {verdict(before, after, threads)}",
            file=stream,
            flush=True,
        )
