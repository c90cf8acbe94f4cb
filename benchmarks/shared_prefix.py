"""Prefilling a short shared prompt prefix once: greedy generation with and without it, side by side in one run.

The hf backend prefills a prefix that every prompt of a batch shares (a system prompt, a chat template's default
system turn) once and repeats its KV cache, when the prefix is at least `min_shared_prefix` tokens long. SmolLM2's
template puts a 24-token default system turn before every conversation that has no system message, which is how
the quickstart's guarded base, ablate and eval stages call it. This script generates the same prompts (project
seed files: ordinary instructions and short harmful questions, no benchmark data) greedily with the threshold above
that prefix (`--without`, the prefix is prefilled once per row) and below it (`--with`), alternating the two legs
`--repeats` times, and prints the mean times, the ratio and how many answers are identical.

    python benchmarks/shared_prefix.py [--prompts 120 --new-tokens 48 --batch-size 32 --without 32 --with 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from machine import machine_load

from evoalign.models import SamplingParams, load_model
from evoalign.models.hf import _common_prefix_length

SEEDS = Path(__file__).resolve().parents[1] / "datagen" / "seeds"


def load_prompts(count: int) -> list[str]:
    """Half ordinary instructions, half short harmful questions (lengths like the quickstart's validation sets)."""
    found = []
    for name, take in (("ordinary.jsonl", count - count // 2), ("harmful_questions.jsonl", count // 2)):
        rows = (SEEDS / name).read_text(encoding="utf-8").splitlines()[:take]
        found += [json.loads(row)["instruction"] for row in rows]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the bundled SmolLM2)")
    parser.add_argument("--prompts", type=int, default=120)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--without", type=int, default=32, help="min_shared_prefix that leaves the prefix per row")
    parser.add_argument("--with", dest="with_", type=int, default=8, help="min_shared_prefix that shares it")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from evoalign.models.bundled import smollm2_path

    spec = f"hf:{args.model or smollm2_path()}"
    conversations = [[{"role": "user", "content": p}] for p in load_prompts(args.prompts)]
    params = SamplingParams(temperature=0.0, max_new_tokens=args.new_tokens)
    legs = {"prefix per row": args.without, "prefix once": args.with_}
    models = {
        name: load_model({"spec": spec, "min_shared_prefix": m, "batch_size": args.batch_size})
        for name, m in legs.items()
    }
    prefix = _common_prefix_length(models["prefix once"].prompt_ids(conversations))
    print(
        f"{len(conversations)} prompts, {args.new_tokens} new tokens, batch {args.batch_size}; "
        f"shared prefix {prefix} tokens",
        flush=True,
    )
    models["prefix once"].generate(conversations[:2], params.replace(max_new_tokens=2))  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in legs}
    texts: dict[str, list[str]] = {}
    for _ in range(args.repeats):
        for name, model in models.items():
            start = time.perf_counter()
            answers = model.generate(conversations, params)
            seconds[name].append(time.perf_counter() - start)
            texts.setdefault(name, [a[0].text for a in answers])
    for name in legs:
        print(
            f"{name:15s} (min_shared_prefix {legs[name]:3d}): {statistics.mean(seconds[name]):6.1f} s "
            f"(runs: {', '.join(f'{s:.1f}' for s in seconds[name])})"
        )
    ratio = statistics.mean(seconds["prefix per row"]) / statistics.mean(seconds["prefix once"])
    same = sum(a == b for a, b in zip(texts["prefix per row"], texts["prefix once"]))
    print(f"ratio: {ratio:.2f}x; identical answers: {same} of {len(conversations)}")
    return 0


if __name__ == "__main__":
    with machine_load():
        code = main()
    sys.exit(code)
