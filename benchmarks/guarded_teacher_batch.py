"""The guarded stage's teacher at two generation batch sizes: time and the SFT data it writes, side by side.

The learnt base's stage (`recipes/guarded_base.py`) first has its teacher write refusals to the harmful prompts and
answers to the ordinary ones, greedily, then trains on them. This script runs that writing step (the stage's own
config: prompts, conditions, judge, token budget) with the teacher at `--baseline` and at `--batch` sequences per
batch, one after the other, and prints both wall times, the ratio, and whether the two legs wrote byte-identical
`train_sft.jsonl` and `test_sft.jsonl` (identical data means an identical base after training).

    python benchmarks/guarded_teacher_batch.py --config runs/quickstart/configs/guarded.yaml \
        [--baseline 32 --batch 64 --work-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from machine import machine_load

from evoalign.config import parse_config
from evoalign.train.guarded import GuardedBaseConfig, write_guarded_data

FILES = ("train_sft.jsonl", "test_sft.jsonl")


def write_at(config_path: str, batch_size: int, out: Path) -> float:
    """Seconds the stage's teacher takes to write (and the judge to sort) its data at `batch_size`, into `out`."""
    config = parse_config(GuardedBaseConfig, ["--config", config_path], prog="guarded_teacher_batch.py")
    spec = config.teacher if isinstance(config.teacher, dict) else {"spec": config.teacher}
    config.teacher = {**spec, "batch_size": batch_size}
    start = time.perf_counter()
    write_guarded_data(config, out)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the guarded stage's config (YAML)")
    parser.add_argument("--baseline", type=int, default=32, help="the teacher's batch size before (the hf default)")
    parser.add_argument("--batch", type=int, default=64, help="the teacher's batch size compared with it")
    parser.add_argument("--work-dir", default=None, help="where each leg writes its data (default: a temporary dir)")
    args = parser.parse_args()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="teacher-batch-"))
    seconds = {size: write_at(args.config, size, work / f"batch{size}") for size in (args.baseline, args.batch)}
    for size, spent in seconds.items():
        print(f"teacher batch {size:3d}: {spent:6.1f} s")
    same = [
        name
        for name in FILES
        if (work / f"batch{args.baseline}" / name).read_bytes() == (work / f"batch{args.batch}" / name).read_bytes()
    ]
    print(
        f"ratio: {seconds[args.baseline] / seconds[args.batch]:.2f}x; identical files: {len(same)} of {len(FILES)}"
        f" ({', '.join(same) or 'none'}); data: {work}"
    )
    return 0


if __name__ == "__main__":
    with machine_load():
        code = main()
    sys.exit(code)
