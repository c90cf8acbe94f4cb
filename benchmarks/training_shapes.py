"""Peak memory and step time of the quickstart's training batch shapes against the ones they replaced, in one run.

The training profile of the quickstart trains SFT one row at a time (1 x 8 accumulated) and DPO one pair at a time
with gradient checkpointing (1 x 4), where it used to take batches of 8 rows and 2 pairs (docs/benchmarks.md, "A
lighter quickstart"). This script runs each shape with the profile's own merged SFT and DPO configs for `--steps`
optimizer steps on synthetic rows as long as the quickstart's longest (random words from a fixed list, seeded: a
120-word system turn, a 20-120-word user turn, 100-300-word answers, so about 350-448 tokens after truncation; no
benchmark data), each shape in a child process of its own so that its peak RSS is its own. It prints, per shape,
the peak RSS and each optimizer step's seconds, then the shipped shape against the old one for SFT and for DPO,
and exits non-zero when a shipped shape peaks above --max-gb.

With `--guarded-data` it times the default profile's guarded stage instead: its own SFT config and flags on a built
guarded data folder (`<run>/guarded/data`), the recipe's 4 rows x 2 (shipped) against 1 x 8 (no padding), alternating
`--repeats` times, and prints each run's seconds for `--steps` optimizer steps, the mean ratio and whether the
per-step losses agree. Give the stage's whole run (57 steps on the quickstart's data): padded batches are slower
only in their first steps, so a short probe overstates what dropping the padding saves (docs/benchmarks.md).

    OMP_NUM_THREADS=2 python benchmarks/training_shapes.py [--steps 2 --rows 32 --max-gb 4 --work-dir DIR]
    OMP_NUM_THREADS=2 python benchmarks/training_shapes.py --guarded-data runs/quickstart/guarded/data --steps 57 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine_load

ROOT = Path(__file__).resolve().parents[1]
WORDS = (
    "the model answers a question about history science cooking travel music code law health money garden weather "
    "sport language art city river mountain book film school market engine animal ocean planet energy memory story "
    "careful simple detailed quickly because however although which people often usually between during without"
).split()
# name, task, per-device batch (rows or pairs; the rest of the recipe's global batch is accumulated), checkpointing
SHAPES = (
    ("SFT 8 x 1 (before)", "sft", 8, False),
    ("SFT 2 x 4", "sft", 2, False),
    ("SFT 1 x 8 (shipped)", "sft", 1, False),
    ("SFT 8 x 1, gradient checkpointing", "sft", 8, True),
    ("DPO 2 pairs x 2 (before)", "dpo", 2, False),
    ("DPO 1 pair x 4, gradient checkpointing (shipped)", "dpo", 1, True),
)
GUARDED_SHAPES = (("guarded SFT 4 x 2 (shipped)", 4), ("guarded SFT 1 x 8 (no padding)", 1))
COMPARED = {
    "sft": ("SFT 8 x 1 (before)", "SFT 1 x 8 (shipped)"),
    "dpo": ("DPO 2 pairs x 2 (before)", "DPO 1 pair x 4, gradient checkpointing (shipped)"),
}


def _text(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high))).capitalize() + "."


def write_rows(folder: Path, rows: int, seed: int = 0) -> None:
    """Synthetic SFT and preference splits in the build stage's conversational format."""
    rng = random.Random(seed)
    system = _text(rng, 120, 120)
    sft, prefs = [], []
    for _ in range(rows):
        prompt = [{"role": "system", "content": system}, {"role": "user", "content": _text(rng, 20, 120)}]
        answer, other = _text(rng, 100, 300), _text(rng, 100, 300)
        sft.append({"prompt": prompt, "completion": [{"role": "assistant", "content": answer}]})
        prefs.append(
            {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": answer}],
                "rejected": [{"role": "assistant", "content": other}],
            }
        )
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in (("train_sft", sft), ("test_sft", sft[:2]), ("train_prefs", prefs), ("test_prefs", prefs[:2])):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in data), encoding="utf-8")


def write_configs(folder: Path) -> dict[str, Path]:
    """The training profile's merged SFT and DPO configs, as the quickstart writes them."""
    import yaml

    from evoalign.quickstart import QuickstartConfig, stage_configs

    configs = stage_configs(QuickstartConfig(profile="training"), folder / "run")
    paths = {}
    for task in ("sft", "dpo"):
        paths[task] = folder / f"{task}.yaml"
        paths[task].write_text(yaml.safe_dump(configs[task]), encoding="utf-8")
    return paths


def child(task: str, argv: list[str]) -> int:
    """Train one shape and print its step times and peak RSS as one JSON line."""
    from transformers import TrainerCallback

    from evoalign.train import recipes

    class StepTimes(TrainerCallback):
        def __init__(self) -> None:
            self.last, self.seconds = time.perf_counter(), []

        def on_train_begin(self, args, state, control, **kwargs):
            self.last = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            self.seconds.append(now - self.last)
            self.last = now

    trainer, _ = recipes.build_trainer(task, *recipes.make_parser(task).parse_args_and_config(argv))
    timer = StepTimes()
    trainer.add_callback(timer)
    trainer.train()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    print(json.dumps({"step_seconds": timer.seconds, "peak_rss": peak, "losses": losses}))
    return 0


def guarded_sft(folder: Path) -> tuple[Path, list[str]]:
    """The default profile's guarded stage: its SFT config and flags, as the quickstart runs them."""
    from evoalign.quickstart import QuickstartConfig, stage_configs

    guarded = stage_configs(QuickstartConfig(profile="default"), folder / "run")["guarded"]
    return ROOT / guarded["sft_config"], [str(arg) for arg in guarded["sft_args"]]


def run_shape(
    script: Path,
    config: Path,
    data: Path,
    out: Path,
    steps: int,
    batch: int,
    checkpointing: bool,
    task: str,
    flags: tuple[str, ...] = (),
):
    argv = [
        "--config",
        str(config),
        *flags,  # before the shape's own flags, which win
        "--dataset_name",
        str(data),
        "--output_dir",
        str(out),
        "--max_steps",
        str(steps),
        "--save_strategy",
        "no",
        "--logging_steps",
        "1",
        "--per_device_train_batch_size",
        str(batch),
        "--gradient_checkpointing",
        str(checkpointing).lower(),
    ]
    if task == "dpo":  # every shape pays the same reference pass inside its steps
        argv += ["--precompute_ref_log_probs", "false"]
    done = subprocess.run(
        [sys.executable, str(script), "--child", task, *argv], capture_output=True, text=True, cwd=ROOT, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{task} batch {batch}: the child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps per shape")
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--max-gb", type=float, default=4.0, help="a shipped shape above this peak fails the run")
    parser.add_argument(
        "--work-dir", default=None, help="where the rows, configs and outputs go (default: a temp dir)"
    )
    parser.add_argument("--guarded-data", default=None, help="time the guarded stage's SFT on this data folder")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each guarded shape")
    args = parser.parse_args()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="training-shapes-"))
    if args.guarded_data:
        return compare_guarded(Path(args.guarded_data).resolve(), work, args.steps, args.repeats)
    data = work / "data"
    write_rows(data, args.rows)
    configs = write_configs(work)
    results = {}
    for index, (name, task, batch, checkpointing) in enumerate(SHAPES):
        out = work / f"shape{index}"
        result = run_shape(Path(__file__), configs[task], data, out, args.steps, batch, checkpointing, task)
        results[name] = result
        steps = ", ".join(f"{s:.1f}" for s in result["step_seconds"])
        print(
            f"{name:50s} peak RSS {result['peak_rss'] / 1e9:5.2f} GB; seconds per optimizer step: {steps}", flush=True
        )
    failed = False
    for task, (before, shipped) in COMPARED.items():
        old, new = results[before], results[shipped]
        old_step, new_step = old["step_seconds"][-1], new["step_seconds"][-1]
        print(
            f"{task}: peak {old['peak_rss'] / 1e9:.2f} -> {new['peak_rss'] / 1e9:.2f} GB "
            f"({old['peak_rss'] / new['peak_rss']:.2f}x less); last step {old_step:.1f} -> {new_step:.1f} s "
            f"({new_step / old_step:.2f}x the time)"
        )
        failed |= new["peak_rss"] > args.max_gb * 1e9
    return 1 if failed else 0


def compare_guarded(data: Path, work: Path, steps: int, repeats: int) -> int:
    """The guarded stage's SFT at each of GUARDED_SHAPES, alternating; prints the times and their ratio."""
    if not (data / "train_sft.jsonl").is_file():
        raise SystemExit(f"{data}: no train_sft.jsonl; give a built guarded data folder (<run>/guarded/data)")
    config, flags = guarded_sft(work)
    runs: dict[str, list[dict]] = {name: [] for name, _ in GUARDED_SHAPES}
    for repeat in range(repeats):
        for index, (name, batch) in enumerate(GUARDED_SHAPES):
            out = work / f"guarded{repeat}-{index}"
            result = run_shape(Path(__file__), config, data, out, steps, batch, False, "sft", tuple(flags))
            runs[name].append(result)
            print(f"{name:34s} run {repeat + 1}: {sum(result['step_seconds']):6.1f} s for {steps} steps", flush=True)
    (old, _), (new, _) = GUARDED_SHAPES
    mean = {name: sum(sum(r["step_seconds"]) for r in found) / len(found) for name, found in runs.items()}
    agree = all(abs(a - b) <= 0.01 for x, y in zip(runs[old], runs[new]) for a, b in zip(x["losses"], y["losses"]))
    print(
        f"guarded SFT: {mean[old]:.1f} -> {mean[new]:.1f} s ({mean[new] / mean[old]:.2f}x the time); "
        f"per-step losses within 0.01: {agree}"
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:  # one shape, run by main() in a process of its own
        sys.exit(child(sys.argv[2], sys.argv[3:]))
    with machine_load():
        code = main()
    sys.exit(code)
