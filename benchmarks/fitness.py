"""Fitness evaluation speed: evoalign's batched one-pass evaluator against the published sequential procedure.

Both run side by side in one process on the same model weights (the bundled SmolLM2 on CPU by default), on the
same candidates, with K samples of up to `--max-new-tokens` tokens under the safety-prior system prompt:

- published (a faithful re-implementation of the EvoRefuse code's `sample()`): for every candidate and every
  one of the K runs, one sequence at a time, it generates a response without a system prompt and scores that
  text again in a second forward pass for the perplexity term, then generates another response under the
  safety prior and judges it for the refusal term;
- evoalign (`FitnessEvaluator`): all candidates x K samples in one batched `generate` call whose log-probs come
  from the generation itself, then one batched judge call;
- evoalign with adaptive sampling (`sampling_rule: halving`, docs/evolve.md): the candidates sampled by
  sequential halving (rounds of ceil(K/4) samples, the better half of each group goes on), which takes a share of
  the K samples per candidate that it prints. The candidates are split into groups of `--group-size` competitors,
  by default 6 as in the evolve stage (a seed's L = 4 mutants and N = 2 recombinants in `offline.yaml` and
  `paper.yaml`), all groups batched in each round as evolve does; the run also times them as one group of all the
  candidates, the shape that costs the most rounds (8 -> 4 -> 2: three), and prints both.

All use the `evoalign` string-rule judge and the published code's fitness form (`reference`), and print seconds
per candidate and the ratios; the exit code checks the adaptive one in evolve's groups against `--min-ratio`:

    python benchmarks/fitness.py [--candidates 8 --samples 10 --max-new-tokens 50 --group-size 6 --min-ratio 30]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from machine import machine_load

from evoalign.judges import get_judge, is_refusing
from evoalign.judges.fitness import FitnessEvaluator, Target
from evoalign.models import SamplingParams
from evoalign.models.hf import HFChatModel
from evoalign.prompts import SAFETY_PRIOR, condition_prefix

SEEDS = Path(__file__).resolve().parents[1] / "datagen" / "seeds" / "starter.jsonl"


def published_fitness(hf: HFChatModel, judge, instruction: str, samples: int, max_new_tokens: int) -> float:
    """The published procedure for one candidate: 2 generations + 1 scoring pass per sample, one at a time."""
    log_ppl, refusal_scores = [], []
    for _ in range(samples):
        log_ppl.append(_perplexity_term(hf, instruction, max_new_tokens))
        response = _generate_one(
            hf,
            [{"role": "system", "content": SAFETY_PRIOR}, {"role": "user", "content": instruction}],
            max_new_tokens,
            top_p=0.995,
            top_k=30,
        )
        label = judge.classify([{"prompt": instruction, "response": response}])[0]["label"]
        refusal_scores.append(1.0 if is_refusing(label) else 0.1)
    return -0.1 * sum(log_ppl) / samples + math.log(sum(refusal_scores) / samples)


def _generate_one(hf: HFChatModel, conversation: list[dict], max_new_tokens: int, **sampling) -> str:
    ids = hf.tokenizer.apply_chat_template(conversation, add_generation_prompt=True, return_tensors="pt")
    ids = getattr(ids, "input_ids", ids).to(hf.device)
    with torch.inference_mode():
        output = hf.model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=True,
            temperature=1.0,
            pad_token_id=hf.tokenizer.pad_token_id,
            **sampling,
        )
    return hf.tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True)


def _perplexity_term(hf: HFChatModel, instruction: str, max_new_tokens: int) -> float:
    """The published `cal_ppl`: generate, then re-tokenise the text alone and score it: log(2 ** loss)."""
    text = _generate_one(hf, [{"role": "user", "content": instruction}], max_new_tokens)
    ids = hf.tokenizer(text or " ", return_tensors="pt").input_ids.to(hf.device)
    with torch.inference_mode():
        loss = hf.model(ids, labels=ids).loss if ids.shape[1] > 1 else torch.tensor(0.0)
    return math.log(2 ** loss.item())


def _timed(function, *args) -> tuple[float, float, object]:
    """(wall seconds, process CPU seconds, result); CPU time is the steadier figure on a shared machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the bundled SmolLM2)")
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=50)
    parser.add_argument(
        "--published-candidates",
        type=int,
        default=None,
        help="run the sequential procedure on only the first N candidates (its cost per candidate does not "
        "depend on how many there are); default: all",
    )
    parser.add_argument(
        "--group-size",
        type=int,
        default=6,
        help="competitors per halving group (default 6: L + N of the shipped evolve configs)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--min-ratio", type=float, default=30.0)
    args = parser.parse_args()
    from evoalign.models.bundled import smollm2_path

    rows = args.candidates * args.samples
    hf = HFChatModel(args.model or smollm2_path(), spec="benchmark", device=args.device, batch_size=rows)
    judge = get_judge("evoalign")
    candidates = [json.loads(line)["instruction"] for line in SEEDS.read_text().splitlines()][: args.candidates]
    params = SamplingParams(n=args.samples, temperature=1.0, top_p=0.995, top_k=30, max_new_tokens=args.max_new_tokens)
    target = Target("smollm2", hf, tuple(condition_prefix("safety_prior")))
    evaluator = FitnessEvaluator([target], judge, params, form="reference")
    evaluator.evaluate(candidates[:1], params=params.replace(n=1, max_new_tokens=2))  # warm-up
    published_fitness(hf, judge, candidates[0], 1, 2)
    print(
        f"{hf.device}, {torch.get_num_threads()} threads; {args.candidates} candidates, K={args.samples}, "
        f"{args.max_new_tokens} new tokens"
    )
    ours_s, ours_cpu, ours = _timed(evaluator.evaluate, candidates)
    print(
        f"evoalign  (batched, one pass):    {ours_s / args.candidates:8.2f} s/candidate "
        f"({ours_cpu / args.candidates:.2f} CPU s)",
        flush=True,
    )
    rounds = math.ceil(args.samples / 4)
    groups = [candidates[i : i + args.group_size] for i in range(0, len(candidates), args.group_size)]
    adaptive = {}
    for label, shape in ((f"groups of {args.group_size}", groups), (f"one group of {len(candidates)}", [candidates])):
        drawn = evaluator.samples_drawn
        seconds, cpu, _ = _timed(
            lambda shape=shape: evaluator.evaluate_halving(shape, round_samples=rounds, round_seed=lambda r: 1000 + r)
        )
        share = (evaluator.samples_drawn - drawn) / (args.candidates * args.samples)
        adaptive[label] = (seconds, cpu, share)
        print(
            f"evoalign  (adaptive, {label}): {seconds / args.candidates:8.2f} s/candidate "
            f"({cpu / args.candidates:.2f} CPU s; {share:.0%} of the K samples taken)",
            flush=True,
        )
    sequential = candidates[: args.published_candidates or args.candidates]
    theirs_s, theirs_cpu, theirs = _timed(
        lambda: [published_fitness(hf, judge, c, args.samples, args.max_new_tokens) for c in sequential]
    )
    print(
        f"published (sequential, 2 passes): {theirs_s / len(sequential):8.2f} s/candidate "
        f"({theirs_cpu / len(sequential):.2f} CPU s; {len(sequential)} candidates run)"
    )
    per_theirs = (theirs_s / len(sequential), theirs_cpu / len(sequential))
    ratio = per_theirs[0] / (ours_s / args.candidates)
    cpu_ratio = per_theirs[1] / (ours_cpu / args.candidates)
    print(f"ratio, K samples for all:   {ratio:.1f}x wall, {cpu_ratio:.1f}x CPU time")
    ratios = {}
    for label, (seconds, cpu, share) in adaptive.items():
        ratios[label] = per_theirs[0] / (seconds / args.candidates)
        print(
            f"ratio, adaptive, {label}: {ratios[label]:.1f}x wall, "
            f"{per_theirs[1] / (cpu / args.candidates):.1f}x CPU time ({share:.0%} of the samples)"
        )
    checked = f"groups of {args.group_size}"
    print(f"checked: adaptive, {checked}, target >= {args.min_ratio:g}x")
    for text, mine, published in zip(candidates, ours, theirs):
        print(f"  fitness {mine['fitness']:+.3f} (evoalign) {published:+.3f} (published)  {text[:60]}")
    return 0 if ratios[checked] >= args.min_ratio else 1


if __name__ == "__main__":
    with machine_load():
        code = main()
    sys.exit(code)
