"""Re-measure finished evolve runs side by side with one judge: what the search stored against fresh samples.

For each run directory (its `config.yaml`, `evolved.jsonl` and response cache), with the same refusal judge for
every run (default: the calibrated `evoalign` judge) and the same fresh-sample seed as the evolve stage's own
report (`fresh_samples` samples per instruction, or `--fresh-samples` for a tighter interval; seed
`(run seed, "fresh")`):

- fresh refusal rate of the seeds and of the evolved instructions on the target;
- acceptance rate of worse candidates: lineage steps whose best candidate scored below the current instruction,
  and the share of them accepted;
- stored fitness (the `fitness` the run wrote) against the fitness of the same instructions on the fresh
  samples: the gap and its standard error over rows; and the stored responses re-judged with this judge (for a
  run whose own judge was another one).

All runs of one invocation share one scratch response cache (a copy of the first run's), so a text that several
runs hold (every run's seeds at one run seed; instructions two searches both returned) is sampled once and gets the
same fresh samples in each; no run directory is modified.

    python benchmarks/evolve_fidelity.py RUN_DIR [RUN_DIR ...] [--judge evoalign] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml
from machine import machine_load

from evoalign.evolve.cli import CACHE
from evoalign.evolve.config import EvolveConfig
from evoalign.io import read_jsonl
from evoalign.judges.fitness import FORMS, FitnessEvaluator, load_target, paper_fitness, reference_fitness
from evoalign.judges.loading import load_judge
from evoalign.models import SamplingParams
from evoalign.models.pool import ModelPool
from evoalign.rng import model_seed


def _config(run_dir: Path) -> EvolveConfig:
    data = yaml.safe_load((run_dir / "config.yaml").read_text())
    known = {f.name for f in fields(EvolveConfig)}
    return EvolveConfig(**{k: v for k, v in data.items() if k in known})


def _mean_and_error(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(variance / len(values))


def _worse(rows: list[dict[str, Any]]) -> tuple[int, int]:
    steps = [
        step
        for row in rows
        for step in row["lineage"]
        if step["fitness"] is not None and step["previous_fitness"] is not None
    ]
    worse = [step for step in steps if step["fitness"] < step["previous_fitness"]]
    return len(worse), sum(step["accepted"] for step in worse)


def measure(run_dir: Path, judge_spec: str, cache: Path, fresh_samples: int | None = None) -> dict[str, Any]:
    config = _config(run_dir)
    rows = read_jsonl(run_dir / "evolved.jsonl")
    lam = FORMS[config.fitness] if config.fitness_lambda is None else config.fitness_lambda
    pool = ModelPool(cache)
    try:
        targets = [load_target(entry, config.condition, pool) for entry in config.targets]
        judge = load_judge(judge_spec, pool)
        params = SamplingParams.from_dict({**config.target_sampling, "n": config.samples, "seed": config.seed})
        evaluator = FitnessEvaluator(
            targets, judge, params, form=config.fitness, lam=config.fitness_lambda, floor=config.refusal_floor
        )
        fresh = fresh_samples or config.fresh_samples
        fresh_params = params.replace(n=fresh, seed=model_seed(config.seed, "fresh"))
        texts = [row["seed"] for row in rows] + [row["instruction"] for row in rows]
        evaluations = evaluator.evaluate(texts, params=fresh_params, desc=f"fresh samples ({run_dir.name})")
        stored_items = [
            {"prompt": row["instruction"], "response": response["text"]}
            for row in rows
            for response in row["targets"][0]["responses"]
        ]
        verdicts = iter(judge.classify(stored_items))
    finally:
        pool.close()
    before, after = evaluations[: len(rows)], evaluations[len(rows) :]
    rejudged = []
    for row in rows:
        responses = [{**response, **next(verdicts)} for response in row["targets"][0]["responses"]]
        if config.fitness == "paper":
            rejudged.append(paper_fitness(responses, lam, config.refusal_floor))
        else:
            rejudged.append(reference_fitness(responses, lam))
    seeds_rate = sum(e["targets"][0]["refusal_rate"] for e in before) / len(rows)
    evolved_rate = sum(e["targets"][0]["refusal_rate"] for e in after) / len(rows)
    stored = [row["fitness"] for row in rows]
    fresh = [e["fitness"] for e in after]
    gap, gap_error = _mean_and_error([s - f for s, f in zip(stored, fresh)])
    rejudged_gap, rejudged_error = _mean_and_error([s - f for s, f in zip(rejudged, fresh)])
    worse, worse_accepted = _worse(rows)
    return {
        "run": str(run_dir),
        "rows": len(rows),
        "judge": judge_spec,
        "run_judge": config.judge,
        "fresh_samples": fresh_samples or config.fresh_samples,
        "fresh_refusal_rate_seeds": seeds_rate,
        "fresh_refusal_rate_evolved": evolved_rate,
        "worse_offered": worse,
        "worse_accepted": worse_accepted,
        "worse_acceptance_rate": worse_accepted / worse if worse else None,
        "stored_fitness": sum(stored) / len(stored),
        "fresh_fitness": sum(fresh) / len(fresh),
        "gap": gap,
        "gap_standard_error": gap_error,
        "stored_rejudged_fitness": sum(rejudged) / len(rejudged),
        "rejudged_gap": rejudged_gap,
        "rejudged_gap_standard_error": rejudged_error,
    }


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--judge", default="evoalign")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--fresh-samples", type=int, default=None, help="fresh samples per instruction (default: the run's)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        cache = Path(scratch) / CACHE
        shutil.copy(args.runs[0] / CACHE, cache)
        results = [measure(run, args.judge, cache, args.fresh_samples) for run in args.runs]
    print(
        f"{'run':<40} {'seeds':>6} {'evolved':>7} {'worse acc.':>12} {'stored':>7} {'fresh':>7} "
        f"{'gap (se)':>16} {'re-judged gap (se)':>19}"
    )
    for r in results:
        print(
            f"{r['run'][-40:]:<40} {_fmt(r['fresh_refusal_rate_seeds']):>6} {_fmt(r['fresh_refusal_rate_evolved']):>7} "
            f"{r['worse_accepted']:>4}/{r['worse_offered']:<3} {_fmt(r['stored_fitness']):>7} "
            f"{_fmt(r['fresh_fitness']):>7} {_fmt(r['gap'], '+.3f'):>7} ({_fmt(r['gap_standard_error'])}) "
            f"{_fmt(r['rejudged_gap'], '+.3f'):>9} ({_fmt(r['rejudged_gap_standard_error'])})"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    with machine_load():
        main()
