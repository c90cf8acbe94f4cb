"""Shorter answers for refusal judging: generation time and the judge's verdicts at each answer length, side by side.

The quickstart's ablate and eval stages judge greedy answers for refusal; a refusal shows in an answer's first
sentence, so fewer new tokens may give the same verdicts for less generation. This script answers an ablate
config's validation prompts (never a held-out set) with each model at every `--new-tokens` length, greedily, judges
the answers with the config's judge, and prints per model and set the time of each length, its ratio to the first
(longest) length's, and how many verdicts differ from that length's.

    python benchmarks/answer_length.py --config runs/quickstart/configs/ablate.yaml \
        --models hf:runs/quickstart/guarded/model smollm2 [--new-tokens 48 32 24]
"""

from __future__ import annotations

import argparse
import sys
import time

from machine import machine_load

from evoalign.config import parse_config
from evoalign.judges import get_judge, is_refusing
from evoalign.models import SamplingParams, load_model
from evoalign.prompts import with_condition
from evoalign.steer.config import AblationConfig
from evoalign.steer.pipeline import load_prompt_sets

SETS = ("validation_benign", "validation_harmful")


def verdicts(model, judge, prompts: list[str], condition, new_tokens: int) -> tuple[float, list[bool]]:
    """Seconds to answer `prompts` greedily in `new_tokens` tokens, and the judge's refusal verdict per answer."""
    params = SamplingParams(temperature=0.0, max_new_tokens=new_tokens)
    start = time.perf_counter()
    answers = model.generate(with_condition(prompts, condition), params)
    seconds = time.perf_counter() - start
    labels = judge.classify([{"prompt": p, "response": a[0].text} for p, a in zip(prompts, answers)])
    return seconds, [is_refusing(label["label"]) for label in labels]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="an ablate config: its validation sets, condition, judge")
    parser.add_argument("--models", nargs="+", required=True, help="model specs, e.g. hf:DIR or smollm2")
    parser.add_argument("--new-tokens", type=int, nargs="+", default=[48, 32, 24], help="longest first")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    config = parse_config(AblationConfig, ["--config", args.config], prog="answer_length")
    sets = load_prompt_sets(config)
    judge = get_judge(config.judge)
    for spec in args.models:
        model = load_model({"spec": spec, "batch_size": args.batch_size})
        model.generate(with_condition(sets[SETS[0]][:2], config.condition), SamplingParams(max_new_tokens=2))
        for name in SETS:
            longest = None
            for new_tokens in args.new_tokens:
                seconds, flags = verdicts(model, judge, sets[name], config.condition, new_tokens)
                longest = longest or (seconds, flags)
                differ = sum(a != b for a, b in zip(flags, longest[1]))
                print(
                    f"{spec} {name} ({len(flags)} prompts) {new_tokens:3d} tokens: {seconds:6.1f} s "
                    f"(x{longest[0] / seconds:.2f} faster), refusals {sum(flags)}, verdicts differing from "
                    f"{args.new_tokens[0]} tokens: {differ}",
                    flush=True,
                )
        model.close()
    return 0


if __name__ == "__main__":
    with machine_load():
        code = main()
    sys.exit(code)
