"""`evoalign generate-orbench` and `evoalign generate-phtest`: the run folder around the two generators.

    evoalign generate-orbench --config datagen/configs/orbench_offline.yaml [--key value ...] [--resume]
    evoalign generate-phtest --config datagen/configs/phtest_offline.yaml [--key value ...] [--resume]

The run directory (`output_dir`) receives `config.yaml`, `run_info.json`, the response cache `cache.sqlite` and
finally `generated.jsonl` (verified instructions in the evolve stage's row schema, `evoalign.records.EvolvedRow`,
so `evoalign build` reads it as `evolved:`), `rejected.jsonl` (what the verifier did not pass, with its votes),
`summary.json` and, for OR-Bench, `hard.jsonl` (the rows enough targets refused). PHTest also writes
`checkpoints/iter-NNN.json` after every token step. The models come from one `ModelPool`: every spec is checked
(paths, API keys, servers) and loaded before the directory is created, so a run that fails to start leaves nothing
behind; an existing run is continued with `--resume` and the same config.

This module is the glue (config, models, files); the algorithms are `orbench.py` and `phtest.py`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from evoalign.checkpoint import check_resumable, load_checkpoint, save_checkpoint, saved_iterations
from evoalign.config import parse_config
from evoalign.errors import ConfigError, ModelError
from evoalign.generators.common import CallCounter, mean_refusal_rates, target_params, verdict_counts
from evoalign.generators.config import (
    ORBENCH_CATEGORIES,
    RESUMABLE,
    GeneratorConfig,
    ORBenchConfig,
    PHTestConfig,
)
from evoalign.io import atomic_write_json, atomic_write_jsonl, atomic_write_text, read_text_strict
from evoalign.judges.fitness import FitnessEvaluator, Target, load_target, target_model_spec
from evoalign.judges.loading import judge_model_spec, load_judge
from evoalign.judges.verifiers import Verifier, get_verifier
from evoalign.judges.verifiers import model_specs as verifier_models
from evoalign.models import SamplingParams, parse_spec, spec_string
from evoalign.models.pool import ModelPool
from evoalign.runinfo import write_run_info
from evoalign.sources import load_source

CACHE = "cache.sqlite"
Config = TypeVar("Config", bound=GeneratorConfig)


def check_run_dir(run_dir: Path, config: GeneratorConfig) -> None:
    """Refuse to overwrite a run without --resume, or to resume one with a config that computes differently."""
    saved = run_dir / "config.yaml"
    if not (run_dir.is_dir() and any(run_dir.iterdir())):
        return
    if not saved.is_file():
        raise ConfigError(f"{run_dir} is not empty and holds no generator run; choose another output_dir")
    if not config.resume:
        raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it, or choose another output_dir")
    check_resumable(yaml.safe_load(read_text_strict(saved)), dataclasses.asdict(config), RESUMABLE, str(saved))


def open_run(
    cls: type[Config], argv: Sequence[str] | None, source: str, prog: str
) -> tuple[Config, Path, list | None]:
    """The parsed config, its run folder (checked, not created) and the rows of its `source` key, if set."""
    config = parse_config(cls, argv, prog=prog)
    run_dir = Path(config.output_dir)
    check_run_dir(run_dir, config)
    value = getattr(config, source)
    return config, run_dir, load_source(value, required=("instruction",)) if value is not None else None


def start_run_dir(run_dir: Path, config: GeneratorConfig, stage: str) -> None:
    data = dataclasses.asdict(config)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    write_run_info(run_dir, data, stage)


def check_models(config: GeneratorConfig, pool: ModelPool, *others: Any) -> None:
    """ModelError now, before any weights load, for any model of the run that cannot be served (`ModelPool.check`)."""
    judge = judge_model_spec(config.judge) if config.samples else None
    targets = [target_model_spec(entry) for entry in config.targets]
    pool.check([*others, *targets, *verifier_models(config.verifier), judge])


def build_verifier(config: GeneratorConfig, pool: ModelPool) -> Verifier:
    """The evolve stage's harmfulness verifier for this config, its models served by the pool."""
    verifier = get_verifier(
        config.verifier, voting=config.verifier_voting, strictness=config.verifier_strictness, load=pool.get
    )
    assert verifier is not None  # validate() refuses a missing verifier
    return verifier


def build_targets(config: GeneratorConfig, pool: ModelPool) -> list[Target]:
    """The targets, each counting the calls made to it (requests, so a replayed call counts as on the first run)."""
    targets = [load_target(entry, config.condition, pool) for entry in config.targets]
    if len({t.name for t in targets}) < len(targets):
        raise ConfigError("two targets share a name; give them distinct 'name:' keys")
    return [dataclasses.replace(t, model=CallCounter(t.model)) for t in targets]


def build_evaluator(config: GeneratorConfig, targets: list[Target], pool: ModelPool) -> FitnessEvaluator | None:
    """The target check (K samples per instruction, judged) or None with `samples: 0`."""
    if not config.samples:
        return None
    judge = load_judge(config.judge, pool)
    return FitnessEvaluator(targets, judge, target_params(config.target_sampling, config.samples, config.seed))


def target_calls(targets: Sequence[Target]) -> dict[str, dict[str, int]]:
    """Per target: the samples and scored rows requested so far (the targets of `build_targets`)."""
    return {t.name: {"generated": t.model.generated, "scored": t.model.scored} for t in targets}  # type: ignore[attr-defined]


def require_local(spec: Any, role: str, need: str) -> None:
    """ConfigError unless `spec` names a local transformers model (smollm2 or hf:...), before anything loads."""
    backend, _, _ = parse_spec(spec)
    if backend == "openai":
        raise ConfigError(
            f"{role} '{spec_string(spec)}' {need}, which PHTest-style generation needs and chat APIs do not give; "
            "use a local hf model (smollm2 or hf:...) in this role"
        )


def finish(run_dir: Path, files: dict[str, list[dict[str, Any]]], summary: dict[str, Any], started: float) -> None:
    for name, rows in files.items():
        atomic_write_jsonl(run_dir / name, rows)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    atomic_write_json(run_dir / "summary.json", summary)
    lines = [f"{key}: {value}" for key, value in summary.items() if key not in ("model_calls",)]
    print("\n".join(lines))
    print(f"\n{run_dir / 'generated.jsonl'}: {len(files['generated.jsonl'])} rows in {summary['seconds']:.1f} s")


def orbench_main(argv: Sequence[str] | None = None) -> int:
    """Run (or resume) OR-Bench-style generation; writes the run directory's files."""
    from evoalign.generators.orbench import ORBenchGenerator, seeds_from_rows

    started = time.perf_counter()
    config, run_dir, rows = open_run(ORBenchConfig, argv, "seeds", "evoalign generate-orbench")
    pool = ModelPool(run_dir / CACHE)
    try:
        check_models(config, pool, config.generator)
        generator = pool.get(config.generator, "generator")
        verifier = build_verifier(config, pool)
        targets = build_targets(config, pool)
        evaluator = build_evaluator(config, targets, pool)
        start_run_dir(run_dir, config, "generate-orbench")
        orbench = ORBenchGenerator(
            generator,
            verifier,
            evaluator,
            generator_params=SamplingParams.from_dict({**config.generator_sampling, "seed": config.seed}),
            rewrites_per_seed=config.rewrites_per_seed,
            max_words=config.max_instruction_words,
            dedup=config.dedup_settings,
            max_target_checks=config.max_target_checks,
            hard_refusal_rate=config.hard_refusal_rate,
            hard_quorum=config.hard_quorum,
            seed=config.seed,
        )
        counters: dict[str, Any] = {}
        if rows is not None:
            seeds = seeds_from_rows(rows)
        else:
            categories = {name: ORBENCH_CATEGORIES[name] for name in config.categories or []}
            seeds, failures = orbench.write_seeds(categories, config.seeds_per_category)
            counters["seed_failures"] = dict(sorted(failures.items()))
            if not seeds:
                raise ModelError(f"the generator '{generator.spec}' wrote no usable toxic seed ({dict(failures)})")
        output = orbench.run(seeds, counters)
        summary = {
            "method": "orbench",
            **output.counters,
            "verdicts": verdict_counts([*output.rows, *output.rejected]),
            "refusal_rate": mean_refusal_rates(output.rows),
            "target_calls": target_calls(targets),
            "model_calls": pool.calls(),
        }
    finally:
        pool.close()
    hard = [row for row in output.rows if row["hard"]]
    files = {"generated.jsonl": output.rows, "hard.jsonl": hard, "rejected.jsonl": output.rejected}
    finish(run_dir, files, summary, started)
    return 0


def phtest_main(argv: Sequence[str] | None = None) -> int:
    """Run (or resume) PHTest-style generation; writes the run directory's files."""
    from evoalign.generators.phtest import (
        Draft,
        PHTestGenerator,
        RefusalLikelihood,
        ScoredHarmlessness,
        Weights,
        finish_drafts,
        make_drafts,
        rule_harmlessness,
    )

    started = time.perf_counter()
    config, run_dir, topics = open_run(PHTestConfig, argv, "topics", "evoalign generate-phtest")
    pool = ModelPool(run_dir / CACHE)
    try:
        judge_spec = config.harmlessness if config.harmlessness != "rules" else None
        require_local(config.generator, "generator", "must expose its next-token distribution after a partial answer")
        for entry in config.targets:
            require_local(target_model_spec(entry), "target", "must score given responses")
        if judge_spec is not None:
            require_local(judge_spec, "harmlessness judge", "must score given responses")
        check_models(config, pool, config.generator, judge_spec)
        generator = pool.get(config.generator, "generator", cached=False)  # its next-token distribution is read
        verifier = build_verifier(config, pool)
        targets = build_targets(config, pool)
        harmlessness: Any = None
        if config.harmlessness == "rules":
            harmlessness = rule_harmlessness
        elif judge_spec is not None:
            harmlessness = ScoredHarmlessness(pool.get(judge_spec, "harmlessness"))
        evaluator = build_evaluator(config, targets, pool)
        phtest = PHTestGenerator(
            generator,
            RefusalLikelihood(targets, config.refusal_openings),
            harmlessness,
            top_k=config.top_k,
            max_new_tokens=config.max_new_tokens,
            min_new_tokens=config.min_new_tokens,
            weights=Weights(config.fluency_weight, config.refusal_weight, config.harmlessness_weight),
            temperature=config.selection_temperature,
            seed=config.seed,
        )
        saved = saved_iterations(run_dir) if config.resume else []
        start_run_dir(run_dir, config, "generate-phtest")
        if saved:
            state = load_checkpoint(run_dir, saved[-1])
            drafts, start = [Draft(**draft) for draft in state["drafts"]], state["next_iteration"]
            for target in targets:
                target.model.scored = state["target_calls"][target.name]["scored"]
        else:
            texts = [row["instruction"] for row in topics] if topics else None
            drafts = make_drafts(texts, config.prefixes, config.prompts_per_topic, cycle=config.prefix_mode == "cycle")
            start = 0

        def checkpoint(drafts: list[Draft], next_step: int) -> None:
            state = {"next_iteration": next_step, "drafts": [dataclasses.asdict(d) for d in drafts]}
            save_checkpoint(run_dir, {**state, "target_calls": target_calls(targets)})

        phtest.run(drafts, start, checkpoint)
        output = finish_drafts(
            drafts,
            verifier,
            evaluator,
            max_words=config.max_instruction_words,
            dedup=config.dedup_settings,
        )
        rows, rejected = output.rows, output.rejected
        summary = {
            "method": "phtest",
            **output.counters,
            "verdicts": verdict_counts([*rows, *rejected]),
            "generator_agreement": _agreement(drafts),
            "refusal_rate": mean_refusal_rates(rows),
            "target_calls": target_calls(targets),
            "model_calls": pool.calls(),
        }
    finally:
        pool.close()
    finish(run_dir, {"generated.jsonl": rows, "rejected.jsonl": rejected}, summary, started)
    return 0


def _agreement(drafts: Sequence[Any]) -> float | None:
    """Share of steps where the objective chose the generator's own most likely token."""
    ranks = [step["rank"] for draft in drafts for step in draft.steps]
    return sum(rank == 0 for rank in ranks) / len(ranks) if ranks else None
