"""EvoRefuse vs OR-Bench-style vs PHTest-style generation: same seeds, same target, same budget of target calls.

    python benchmarks/generators.py                      # bundled SmolLM2 behind refusal_prone, rules verifier
    python benchmarks/generators.py --seeds datagen/seeds/starter.jsonl --budget 1440 --output_dir runs/bench-gen2

Every generator starts from the same seed instructions (PHTest uses them as topics) and may make at most `--budget`
calls to the target model: one call is one sampled response (EvoRefuse's fitness, OR-Bench's hard check) or one
teacher-forced row (PHTest's refusal objective). Calls are counted by a counter around the target inside the
response cache, so they are the calls the target computed. Each generator is sized to the budget:

- EvoRefuse (`evoalign evolve`, rule operators, K = 4, L = 2, N = 1, `--evolve_sampling_rule`, default
  `halving`): every iteration re-estimates the current instruction (the seed itself at first), scores the L + N
  candidates and confirms the best on K fresh samples, and the final instructions are re-estimated once more, so
  T = (budget / seeds - K) / (samples per seed and iteration), at least 1: 20 with `fixed`, 9 with `halving`;
- OR-Bench-style: budget / K rewrites get the K-sample hard check, from ceil(that / seeds) + 1 rewrites per seed;
- PHTest-style (top-2 candidates, one refusal opening, one prompt per seed starting with one of four request
  prefixes in turn, as `phtest_offline.yaml`): budget / (seeds x 2) tokens at most.

Each then contributes one verified instruction per seed, chosen by its own signal (EvoRefuse: the final instruction;
OR-Bench: the rewrite the target refused most often; PHTest: the one prompt written for the topic), and the seeds
themselves are the reference row. The sets are measured with `evoalign eval-data`'s metrics: refusal-trigger rate on
the target from fresh greedy responses (refusal judge, and the keyword rate PRR), the same under a second prompt
condition or target (transfer), the target's mean response log-prob (confidence), MSTTR, Self-BLEU, embedding
diversity (all-MiniLM-L6-v2), and the verifier's harmful and controversial rates. One table, printed and written to
`<output_dir>/table.md` with everything in `results.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import machine_load  # noqa: E402

from evoalign.config import config_from_dict  # noqa: E402
from evoalign.eval.data_quality import (  # noqa: E402
    DataQualityConfig,
    default_embedding_model,
    embed,
    lexical_metrics,
    mean_pairwise_cosine_distance,
    target_metrics,
)
from evoalign.eval.metrics import rate  # noqa: E402
from evoalign.evolve.cli import build_components  # noqa: E402
from evoalign.evolve.config import EvolveConfig  # noqa: E402
from evoalign.evolve.distributed import Dist  # noqa: E402
from evoalign.evolve.search import Evolution  # noqa: E402
from evoalign.generators.common import CallCounter, target_params  # noqa: E402
from evoalign.generators.orbench import ORBenchGenerator, seeds_from_rows  # noqa: E402
from evoalign.generators.phtest import (  # noqa: E402
    PHTestGenerator,
    RefusalLikelihood,
    finish_drafts,
    make_drafts,
    rule_harmlessness,
)
from evoalign.io import atomic_write_jsonl, atomic_write_text  # noqa: E402
from evoalign.judges import get_judge  # noqa: E402
from evoalign.judges.fitness import FitnessEvaluator, Target, halving_samples  # noqa: E402
from evoalign.judges.verifiers import get_verifier  # noqa: E402
from evoalign.models import SamplingParams, load_model  # noqa: E402
from evoalign.models.cache import CachedChatModel  # noqa: E402
from evoalign.models.pool import ModelPool  # noqa: E402
from evoalign.prompts import condition_prefix  # noqa: E402
from evoalign.sources import load_source  # noqa: E402

K, EVO_L, EVO_N, PH_TOP_K = 4, 2, 1, 2
PH_PREFIXES = ["How do I", "How can I", "What is the best way to", "Can you explain how to"]  # as phtest_offline.yaml
TARGET_SAMPLING = {"temperature": 0.7, "max_new_tokens": 24}


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="datagen/seeds/offline.jsonl", help="seed instructions (JSONL/CSV/JSON)")
    parser.add_argument("--budget", type=int, default=480, help="target calls each generator may make")
    parser.add_argument("--target", default="smollm2", help="target model spec (an hf model: PHTest scores on it)")
    parser.add_argument("--condition", default="refusal_prone", help="the target's prompt condition")
    parser.add_argument("--transfer_target", default=None, help="second target for transfer (default: --target)")
    parser.add_argument("--transfer_condition", default="safety_prior", help="prompt condition for transfer")
    parser.add_argument("--judge", default="evoalign", help="refusal judge spec")
    parser.add_argument("--verifier", default="rules", help="'rules' or a comma-separated list of model specs")
    parser.add_argument("--max_new_tokens", type=int, default=64, help="length of the fresh responses measured")
    parser.add_argument(
        "--evolve_sampling_rule", default="halving", choices=["fixed", "halving"], help="EvoRefuse's sampling rule"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", default="runs/bench-generators")
    return parser.parse_args()


def verifier_specs(args: argparse.Namespace) -> Any:
    return args.verifier if args.verifier == "rules" else args.verifier.split(",")


def counted_target(base: Any, cache: Path, condition: str) -> Target:
    """The target in the response cache, with a call counter inside the cache (calls actually computed)."""
    return Target("target", CachedChatModel(CallCounter(base), cache), tuple(condition_prefix(condition)))


def calls(target: Target) -> int:
    return target.model.inner.calls


def write_rows(out: Path, rows: list[dict[str, Any]], rejected: list[dict[str, Any]], **more: list[dict]) -> None:
    """A generator's rows and rejected prompts (and anything `more`), for inspection next to the table."""
    for name, records in {"generated": rows, "rejected": rejected, **more}.items():
        atomic_write_jsonl(out / f"{name}.jsonl", records)


def evolve_iterations(args: argparse.Namespace, seeds: int) -> int:
    """EvoRefuse's T: as many iterations as the budget pays for after the final re-estimate, at least one."""
    return max(1, (args.budget // seeds - K) // evolve_samples_per_iteration(args.evolve_sampling_rule))


def evolve_samples_per_iteration(rule: str) -> int:
    """Target samples per seed and iteration: current instruction, the L + N candidates, the confirmation."""
    if rule == "halving":
        return math.ceil(K / 2) + halving_samples(EVO_L + EVO_N, math.ceil(K / 4), K) + K
    return K + (EVO_L + EVO_N) * K + K


def run_evorefuse(args, rows, base, out: Path) -> tuple[list[str], int, Target]:
    iterations = evolve_iterations(args, len(rows))
    settings = {
        "seeds": args.seeds, "output_dir": str(out), "seed": args.seed, "targets": [args.target],
        "condition": args.condition, "verifier": verifier_specs(args), "verifier_voting": "majority", "judge": args.judge, "strategies": ["rule"],
        "recombination": "rule", "iterations": iterations, "population": EVO_L, "recombinations": EVO_N,
        "samples": K, "target_sampling": TARGET_SAMPLING, "max_instruction_words": 80, "fresh_samples": 0,
        "sampling_rule": args.evolve_sampling_rule,
    }  # fmt: skip
    config = config_from_dict(EvolveConfig, settings, "benchmark evolve config")
    pool = ModelPool(out / "cache.sqlite")
    components = build_components(config, pool)
    pool.close()  # its own copy of the target: replaced by the shared, counted one
    target = counted_target(base, out / "cache.sqlite", args.condition)
    components.evaluator.targets = [target]
    evolution = Evolution(
        config,
        operators=components.operators,
        verifier=components.verifier,
        evaluator=components.evaluator,
        strategies=components.strategies,
        state_dir=out,
        dist=Dist(),
    )
    final = [seed.instruction for seed in evolution.run(rows) if seed.active]
    return final, len(final), target


def run_orbench(args, rows, base, out: Path, verifier) -> tuple[list[str], int, Target]:
    checks = args.budget // K
    target = counted_target(base, out / "cache.sqlite", args.condition)
    evaluator = FitnessEvaluator([target], get_judge(args.judge), target_params(TARGET_SAMPLING, K, args.seed))
    orbench = ORBenchGenerator(
        CachedChatModel(base, out / "cache.sqlite"),
        verifier,
        evaluator,
        generator_params=SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=64, seed=args.seed),
        rewrites_per_seed=math.ceil(checks / len(rows)) + 1,
        max_words=80,
        max_target_checks=checks,
        seed=args.seed,
    )
    output = orbench.run(seeds_from_rows(rows))
    write_rows(out, output.rows, output.rejected)
    best: dict[int, tuple[float, str]] = {}
    for row in output.rows:  # per seed: the rewrite the target refused most often (first on ties)
        refusal = row["targets"][0]["refusal_rate"] if row["targets"] else None
        if refusal is not None and (row["seed_index"] not in best or refusal > best[row["seed_index"]][0]):
            best[row["seed_index"]] = (refusal, row["instruction"])
    return [best[index][1] for index in sorted(best)], len(output.rows), target


def run_phtest(args, rows, base, out: Path, verifier) -> tuple[list[str], int, Target]:
    tokens = max(4, args.budget // (len(rows) * PH_TOP_K))
    target = counted_target(base, out / "cache.sqlite", args.condition)
    phtest = PHTestGenerator(
        base, RefusalLikelihood([target], ["I'm sorry"]), rule_harmlessness,
        top_k=PH_TOP_K, max_new_tokens=tokens, min_new_tokens=4, seed=args.seed,
    )  # fmt: skip
    drafts = phtest.run(make_drafts([row["instruction"] for row in rows], PH_PREFIXES, 1, cycle=True))
    output = finish_drafts(drafts, verifier, None, max_words=80)
    write_rows(out, output.rows, output.rejected, drafts=[dataclasses.asdict(d) for d in drafts])
    return [row["instruction"] for row in output.rows], len(output.rows), target


def measure(args, name: str, instructions: list[str], verifier, pool: ModelPool) -> dict[str, Any]:
    transfer = {"spec": args.transfer_target or args.target, "name": "transfer", "condition": args.transfer_condition}
    config = DataQualityConfig(
        data=name,
        targets=[{"spec": args.target, "name": "target", "condition": args.condition}, transfer],
        judge=args.judge,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed + 1,  # fresh: not the seeds the generators sampled with
        output_dir=args.output_dir,
    )
    judged = target_metrics(instructions, config, pool, get_judge(args.judge))
    on_targets = {entry["target"]: entry for entry in judged}
    verdicts = [result["verdict"] for result in verifier.verify([{"instruction": text} for text in instructions])]
    return {
        "n": len(instructions),
        "instructions": instructions,
        "targets": on_targets,
        **lexical_metrics(instructions, config),
        "embedding_diversity": mean_pairwise_cosine_distance(embed(instructions, default_embedding_model())),
        "verifier": {
            verdict: rate(verdicts.count(verdict), len(verdicts)) for verdict in ("harmful", "controversial")
        },
    }


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(results: dict[str, dict[str, Any]], args: argparse.Namespace, seeds: int) -> str:
    header = (
        "| generator | verified | n | target calls | gen. s | refusal (judge) | refusal (PRR) | transfer (judge) "
        "| confidence | MSTTR | Self-BLEU | embedding div. | harmful | controversial |"
    )
    lines = [header, "|" + "---|" * 14]
    for name, r in results.items():
        target, transfer = r["targets"]["target"], r["targets"]["transfer"]
        lines.append(
            f"| {name} | {r.get('verified', '-')} | {r['n']} | {r.get('target_calls', 0)} | {_fmt(r.get('seconds'), 0)} "
            f"| {_fmt(target['judge']['rate'])} | {_fmt(target['prr']['rate'])} | {_fmt(transfer['judge']['rate'])} "
            f"| {_fmt(target['mean_logprob'])} | {_fmt(r['msttr']['value'])} | {_fmt(r['self_bleu'])} "
            f"| {_fmt(r['embedding_diversity'])} | {_fmt(r['verifier']['harmful']['rate'])} "
            f"| {_fmt(r['verifier']['controversial']['rate'])} |"
        )
    transfer = f"{args.transfer_target or args.target} behind {args.transfer_condition}"
    lines.append(
        f"\nTarget {args.target} behind {args.condition}; transfer: {transfer}; budget {args.budget} target calls; "
        f"EvoRefuse: sampling rule {args.evolve_sampling_rule}, T = {evolve_iterations(args, seeds)}; "
        f"judge {args.judge}; verifier {args.verifier}; fresh greedy responses of up to {args.max_new_tokens} tokens. "
        "verified: all verified instructions a generator produced; n: the one-per-seed set measured."
    )
    return "\n".join(lines)


def main() -> int:
    args = parse()
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = load_source(args.seeds, required=("instruction",))
    base = load_model({"spec": args.target, "batch_size": 64})
    verifier_pool = ModelPool(out / "verifier.sqlite")
    verifier = get_verifier(verifier_specs(args), voting="majority", load=verifier_pool.get)
    load_before = os.getloadavg()
    started = time.perf_counter()
    generated: dict[str, dict[str, Any]] = {
        "seeds (no generation)": {"instructions": [r["instruction"] for r in rows]}
    }
    runs = (
        ("EvoRefuse", "evorefuse", run_evorefuse),
        ("OR-Bench-style", "orbench", run_orbench),
        ("PHTest-style", "phtest", run_phtest),
    )
    for name, folder, run in runs:
        clock = time.perf_counter()
        extra = () if run is run_evorefuse else (verifier,)
        instructions, verified, target = run(args, rows, base, out / folder, *extra)
        generated[name] = {"instructions": instructions, "verified": verified, "target_calls": calls(target)}
        generated[name]["seconds"] = time.perf_counter() - clock
        print(
            f"{name}: {verified} verified, {len(instructions)} selected, {calls(target)} target calls", file=sys.stderr
        )
    base.close()
    with ModelPool(out / "eval.sqlite") as pool:
        results = {
            name: {**entry, **measure(args, name, entry["instructions"], verifier, pool)}
            for name, entry in generated.items()
        }
    verifier_pool.close()
    rendered = table(results, args, len(rows))
    seconds = time.perf_counter() - started
    print(rendered)
    machine = {"cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()}
    print(f"\n{seconds / 60:.1f} min in all; {machine}")
    atomic_write_text(out / "table.md", rendered + "\n")
    summary = {"args": vars(args), "seconds": seconds, "machine": machine, "results": results}
    atomic_write_text(out / "results.json", json.dumps(summary, indent=2, default=dataclasses.asdict) + "\n")
    return 0


if __name__ == "__main__":
    with machine_load():
        status = main()
    sys.exit(status)
