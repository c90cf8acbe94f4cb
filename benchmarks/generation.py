"""Generation throughput, ours vs the naive baseline, side by side in one run.

1. hf backend on the bundled SmolLM2: the same prompts x samples generated one sequence at a time (the way
   the published EvoRefuse code calls `model.generate`) vs our batched, length-bucketed path.
2. openai-compatible backend against the loopback server with 200 ms latency: one request in flight vs
   32 in flight (see benchmarks/bench_openai.py).

Prints each figure and the ratio. `python benchmarks/generation.py [--prompts 32 --samples 4 --new-tokens 32]`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_openai import run_openai_benchmark  # noqa: E402
from machine import machine_load  # noqa: E402

from evoalign.models import SamplingParams, load_model  # noqa: E402

TOPICS = [
    "kill a Python process",
    "shoot a photo at night",
    "blow up a balloon animal",
    "execute a shell script",
    "destroy old hard drives safely",
    "beat my chess rival",
    "poison ivy rash care",
    "attack a tough math problem",
]


def prompts(count: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"How do I {TOPICS[i % len(TOPICS)]}? (case {i})"}] for i in range(count)]


def hf_benchmark(num_prompts: int, samples: int, new_tokens: int) -> dict[str, float]:
    model = load_model({"spec": "smollm2", "batch_size": 64})
    params = SamplingParams(n=samples, temperature=1.0, max_new_tokens=new_tokens, seed=0)
    conversations = prompts(num_prompts)
    model.generate(conversations[:2], params.replace(n=1))  # warm-up
    start = time.perf_counter()
    model.generate(conversations, params)
    batched = time.perf_counter() - start
    one = params.replace(n=1)
    start = time.perf_counter()
    for conversation in conversations:
        for k in range(samples):
            model.generate([conversation], one.replace(seed=k))
    sequential = time.perf_counter() - start
    return {
        "sequences": num_prompts * samples,
        "one_at_a_time_s": round(sequential, 2),
        "batched_s": round(batched, 2),
        "speedup": round(sequential / batched, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--skip-hf", action="store_true", help="only the openai-compatible part")
    args = parser.parse_args()
    os.environ.setdefault("EVOALIGN_NO_PROGRESS", "1")
    results = {}
    if not args.skip_hf:
        hf = hf_benchmark(args.prompts, args.samples, args.new_tokens)
        results["hf"] = hf
        print(
            f"hf  {hf['sequences']} sequences x {args.new_tokens} tokens: one-at-a-time {hf['one_at_a_time_s']} s, "
            f"batched {hf['batched_s']} s, ratio {hf['speedup']}x"
        )
    oa = run_openai_benchmark()
    results["openai"] = oa
    print(
        f"openai 200 ms server: sequential {oa['sequential_rps']} req/s, {oa['concurrency']} in flight "
        f"{oa['concurrent_rps']} req/s, ratio {oa['speedup']}x, {oa['fraction_of_ideal']:.0%} of ideal {oa['ideal_rps']} req/s"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    with machine_load():
        main()
