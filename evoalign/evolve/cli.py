"""`evoalign evolve` / `datagen/evolve.py`: evolve pseudo-malicious instructions from a seed set.

    python datagen/evolve.py --config datagen/configs/offline.yaml [--key value ...]
    accelerate launch --num_processes 4 datagen/evolve.py --config datagen/configs/paper.yaml

The run directory (`output_dir`) receives `config.yaml`, `run_info.json`, the response cache, checkpoints after
every iteration, and finally `evolved.jsonl` and `summary.json`. `--resume` continues an interrupted run. The
directory is created only once every model is loaded and reachable and every seed fits each target's context, so
a run that fails to start leaves nothing behind. Under `accelerate launch` each process evolves a contiguous part of
the seeds (accelerate's `split_between_processes`) in its own `shard-R-of-W/` state directory; the main process
merges the shards and removes near-duplicates.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from evoalign.checkpoint import check_resume
from evoalign.config import parse_config
from evoalign.errors import ConfigError
from evoalign.evolve.config import RESUMABLE, EvolveConfig
from evoalign.evolve.distributed import Dist, init_distributed
from evoalign.evolve.operators import Operators
from evoalign.evolve.report import fresh_check, merge, render, write_shard
from evoalign.evolve.search import Evolution
from evoalign.evolve.strategies import Strategy, available_strategies, select_strategies
from evoalign.io import atomic_write_text
from evoalign.judges.base import RefusalJudge
from evoalign.judges.fitness import FitnessEvaluator, load_target, target_model_spec
from evoalign.judges.loading import judge_model_spec, load_judge
from evoalign.judges.verifiers import Verifier, get_verifier
from evoalign.judges.verifiers import model_specs as verifier_models
from evoalign.models import SamplingParams, check_context
from evoalign.models.pool import ModelPool
from evoalign.rng import model_seed
from evoalign.runinfo import write_run_info
from evoalign.runlock import RunLock, check_unlocked
from evoalign.secrets import scrub_secrets
from evoalign.sources import Source, load_source

CACHE = "cache.sqlite"


@dataclasses.dataclass
class Components:
    """Everything an Evolution needs besides its config."""

    operators: Operators
    verifier: Verifier
    evaluator: FitnessEvaluator
    strategies: list[Strategy]


def state_dir(run_dir: Path, dist: Dist) -> Path:
    """Where this process keeps its checkpoints and shard output."""
    return run_dir if dist.world == 1 else run_dir / f"shard-{dist.rank}-of-{dist.world}"


def check_run_dir(run_dir: Path, config: EvolveConfig, dist: Dist) -> None:
    """Refuse to overwrite a run without --resume, or to resume it with a different number of processes."""
    layouts = {p.name for p in run_dir.glob("shard-*-of-*") if (p / "checkpoints").is_dir()}
    if (run_dir / "checkpoints").is_dir():
        layouts.add("single process")
    if not layouts:
        return
    if not config.resume:
        raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it, or choose another output_dir")
    expected = {"single process"} if dist.world == 1 else {f"shard-{r}-of-{dist.world}" for r in range(dist.world)}
    if not layouts <= expected:
        raise ConfigError(
            f"{run_dir} was run with a different number of processes ({', '.join(sorted(layouts))}); "
            f"resume it with the same number"
        )


def model_specs(config: EvolveConfig) -> list[Any]:
    """Every chat model the run calls: targets, verifier ensemble, judge model, mutator."""
    targets = [target_model_spec(entry) for entry in config.targets]
    return [*targets, *verifier_models(config.verifier), judge_model_spec(config.judge), config.mutator]


def build_components(config: EvolveConfig, pool: ModelPool) -> Components:
    """Resolve strategies (first: fast errors), check every model, load the judge (and check it suits the fitness
    form), then the targets, verifier and mutator."""
    from evoalign.evolve.llm_operators import LLMOperators

    strategies = select_strategies(
        config.strategies, available_strategies(config.strategies_file), has_mutator=config.mutator is not None
    )
    pool.check(model_specs(config))
    judge = load_judge(config.judge, pool)
    check_judge(config, judge)
    mutator_params = SamplingParams.from_dict(config.mutator_sampling)
    target_params = SamplingParams.from_dict({**config.target_sampling, "n": config.samples, "seed": config.seed})
    targets = [load_target(entry, config.condition, pool) for entry in config.targets]
    if len({t.name for t in targets}) < len(targets):
        raise ConfigError("two targets share a name; give them distinct 'name:' keys")
    verifier = get_verifier(
        config.verifier, voting=config.verifier_voting, strictness=config.verifier_strictness, load=pool.get
    )
    mutator = pool.get(config.mutator, "mutator") if config.mutator is not None else None
    llm = LLMOperators(mutator, mutator_params) if mutator is not None else None
    evaluator = FitnessEvaluator(
        targets,
        judge,
        target_params,
        form=config.fitness,
        lam=config.fitness_lambda,
        floor=config.refusal_floor,
    )
    operators = Operators(llm, config.recombination_operator, config.max_instruction_words)
    return Components(operators, verifier, evaluator, strategies)


def check_judge(config: EvolveConfig, judge: RefusalJudge) -> None:
    """Fitness `paper` takes p_refusal as a probability: refuse a judge whose p_refusal is not one, unless opted in."""
    if config.fitness == "paper" and not judge.calibrated and not config.allow_uncalibrated_judge:
        raise ConfigError(
            f"judge '{config.judge}' gives an uncalibrated p_refusal, which fitness 'paper' would read as a "
            "probability; use a calibrated judge (evoalign, or a classifier declared calibrated), fitness: "
            "reference, or allow_uncalibrated_judge: true"
        )


def _write_config(run_dir: Path, config: EvolveConfig) -> None:
    data = scrub_secrets(dataclasses.asdict(config))
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    write_run_info(run_dir, data, "evolve")


def check_start(components: Components, seeds: list[dict[str, Any]], source: Any) -> None:
    """Before the run folder exists: every seed fits each target's context."""
    path = Source.from_config(source).path
    origins = [f"{path}:{row['_line']}" for row in seeds]
    texts = [row["instruction"] for row in seeds]
    for target in components.evaluator.targets:
        check_context(target.model, target.conversations(texts), components.evaluator.params.max_new_tokens, origins)


def main(argv: Sequence[str] | None = None) -> int:
    """Run (or resume) an evolution; prints the summary and writes the run directory's files."""
    config = parse_config(EvolveConfig, argv, prog="evoalign evolve")
    started = time.perf_counter()
    dist = init_distributed()
    run_dir = Path(config.output_dir)
    check_unlocked(run_dir)
    check_run_dir(run_dir, config, dist)
    here = state_dir(run_dir, dist)
    if config.resume:  # a refused resume must leave config.yaml and run_info.json as they are
        check_resume(here, scrub_secrets(dataclasses.asdict(config)), RESUMABLE)
    seeds = load_source(config.seeds, required=("instruction",))
    pool = ModelPool(run_dir / CACHE)
    lock = RunLock(run_dir, "evolve")
    try:
        components = build_components(config, pool)
        check_start(components, seeds, config.seeds)
        dist.barrier()
        if dist.main:
            lock.acquire()
            _write_config(run_dir, config)
        evolution = Evolution(
            config,
            operators=components.operators,
            verifier=components.verifier,
            evaluator=components.evaluator,
            strategies=components.strategies,
            state_dir=here,
            dist=dist,
        )
        final = evolution.run(seeds)
        active = [seed for seed in final if seed.active]
        fresh = fresh_check(components.evaluator, active, config.fresh_samples, model_seed(config.seed, "fresh"))
        write_shard(here, final, fresh, evolution.history, pool.calls())
        dist.barrier()
        if dist.main:
            shards = [state_dir(run_dir, Dist(rank, dist.world)) for rank in range(dist.world)]
            summary = merge(
                run_dir,
                shards,
                dedup=config.dedup,
                threshold=config.dedup_threshold,
                n=config.dedup_ngram,
                seconds=time.perf_counter() - started,
            )
    finally:
        pool.close()
        lock.release()
    if dist.main:
        print(render(summary))
        print(f"\n{run_dir / 'evolved.jsonl'}: {summary['evolved']} rows in {summary['seconds']:.1f} s")
    return 0
