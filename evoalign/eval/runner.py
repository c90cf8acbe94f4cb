"""The eval stage: generate every model's responses to a benchmark suite, judge them, and write the report.

For each model and each prompt condition, the prompts of all benchmarks (deduplicated) go to the model in one
batched `generate` call, through the response cache in the output directory, so an interrupted run resumes and
a rerun makes no model calls. Every model spec is checked (paths, API keys, servers) before the output directory
is created, and each prompt against the model's context, naming its file and line. Responses are labelled by
the configured judge and by the EvoRefuse PRR rule in one batch each. Benchmarks named in `validation_benchmarks`
are pooled into each run's `validation` summary, apart from the held-out `summary`; `selections` apply the
pre-written validation rule to named models (`evoalign.eval.selection`). Each run also answers the
capability guard's ordinary instructions through the same cached path and judge (`evoalign.eval.capability`).
`evaluate(config)` returns the report dict and writes `report.json`, `report.md`, `tradeoff.png` and
`run_info.json` into `config.output_dir`.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evoalign.benchmarks import BenchmarkData, check_suite, load_suite
from evoalign.config import config_to_dict
from evoalign.errors import ConfigError, ModelError
from evoalign.eval.capability import (
    CapabilitySet,
    capability_metrics,
    check_capability,
    is_degenerate,
    is_empty,
    load_capability_set,
    reference_logprobs,
)
from evoalign.eval.metrics import benchmark_metrics, mean_logprob, pooled
from evoalign.eval.overlap import benchmark_overlap, overlap_lines, training_prompts
from evoalign.eval.report import REPORT_FORMAT, REPORT_NAME, render
from evoalign.eval.selection import check_selections, check_validation_kinds, select
from evoalign.io import atomic_write_json
from evoalign.judges import get_judge
from evoalign.judges.base import COMPLIANCE, UNKNOWN
from evoalign.judges.loading import check_judge, load_judge
from evoalign.labels import BENIGN, HARMFUL
from evoalign.models import BUNDLED, ChatModel, SamplingParams, check_context, parse_spec
from evoalign.models.base import TRANSFORMERS, Sample
from evoalign.models.pool import ModelPool
from evoalign.models.refusal_tokens import OPTIONS as REFUSAL_OPTIONS
from evoalign.prompts import CONDITIONS, Message, check_condition, condition_prefix, with_condition
from evoalign.runinfo import write_run_info
from evoalign.runlock import RunLock, check_unlocked
from evoalign.secrets import scrub_secrets

logger = logging.getLogger(__name__)

PRR_JUDGE = "evorefuse"
_ENTRY_KEYS = {"name", "condition", "base", "curve"}


@dataclass
class EvalConfig:
    """Measure over-refusal against safety: models x prompt conditions x benchmarks, judged and reported."""

    models: list = field(
        default_factory=list,
        metadata={
            "help": "models under test: spec strings or mappings {name, spec, adapter, condition, base, curve, "
            "<backend options>}; `base: NAME` draws an arrow from that model to this one in the plot; models with the "
            "same `curve: NAME` (e.g. one model at several refusal_bias values) are joined by a line, in config order"
        },
    )
    conditions: list = field(
        default_factory=lambda: ["default", "safety_prior"],
        metadata={"help": "prompt conditions for models without their own `condition` (default, safety_prior, ...)"},
    )
    prompts: dict = field(
        default_factory=dict,
        metadata={"help": "extra named conditions: name -> system prompt text, or a list of {role, content}"},
    )
    benchmarks: Any = field(
        default_factory=list,
        metadata={"help": "benchmark names, or a mapping name -> local path or {path, kind, fields, filter, limit}"},
    )
    validation_benchmarks: list = field(
        default_factory=list,
        metadata={
            "help": "names from `benchmarks` that are validation sets (for choosing, not reporting): report.md "
            "pools them in a table of their own under '## Validation', and '## Summary' (runs[].summary) keeps the "
            "held-out rest"
        },
    )
    selections: list = field(
        default_factory=list,
        metadata={
            "help": "validation choices: each {name, base, candidates: [model names], max_harmful_drop: 5} applies "
            "the pre-written rule (lowest validation benign refusal among candidates whose validation harmful "
            "refusal is at most max_harmful_drop points below the base's) and the report states the pick and its "
            "held-out figures against the base's"
        },
    )
    capability: Any = field(
        default=True,
        metadata={
            "help": "capability guard: true = the shipped ordinary instructions (evoalign/eval/data/capability.jsonl), "
            "false = off, or a JSONL path (instruction, reference) or {path, limit}; every run also reports its "
            "refusals, empty/degenerate answers and reference log-prob there (`limit` applies)"
        },
    )
    benchmark_dir: str | None = field(
        default=None,
        metadata={
            "help": "folder of the public benchmark files for offline machines (xstest/xstest_prompts.csv, advbench/"
            "harmful_behaviors.csv, ...; see docs/evaluation.md); unset: $EVOALIGN_BENCHMARK_DIR, else each file's public "
            "location"
        },
    )
    judge: str = field(
        default="evoalign", metadata={"help": "refusal judge spec (evoalign, xstest, llm:<model>, ...)"}
    )
    max_new_tokens: int = field(default=256, metadata={"help": "response length limit in tokens"})
    prr_tokens: int = field(
        default=100,
        metadata={
            "help": "the PRR keyword rule reads the first this many generated tokens (the EvoRefuse paper's "
            "evaluation length), whatever max_new_tokens is; the report says the length it used"
        },
    )
    training_data: Any = field(
        default=None,
        metadata={
            "help": "overlap guard: training data of the models under test (a build output folder or any JSONL, or "
            "a list of them); every benchmark with prompts in it is named, with counts, in the log and the report"
        },
    )
    overlap_threshold: float = field(
        default=0.5, metadata={"help": "overlap guard: word 3-gram Jaccard at which two prompts are near-duplicates"}
    )
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy decoding"})
    batch_size: int = field(default=32, metadata={"help": "generation batch size for hf models"})
    limit: int | None = field(default=None, metadata={"help": "at most this many prompts per benchmark (seeded)"})
    seed: int = field(default=0, metadata={"help": "seed for benchmark subsets and sampling"})
    output_dir: str = field(default="runs/eval", metadata={"help": "where the cache, report and plot go"})
    render_only: bool = field(default=False, metadata={"help": "re-render output_dir/report.json; no models"})
    render: str | None = field(default=None, metadata={"help": "re-render this report.json next to itself"})

    def validate(self, where: str) -> None:
        if self.render or self.render_only:
            return
        if not self.models:
            raise ConfigError(f"{where}: 'models' is empty; give at least one model spec")
        if not self.benchmarks:
            raise ConfigError(f"{where}: 'benchmarks' is empty")
        if not self.output_dir:
            raise ConfigError(f"{where}: 'output_dir' is required")
        if not self.conditions:
            raise ConfigError(f"{where}: 'conditions' is empty; give at least one (default, safety_prior, ...)")
        if self.max_new_tokens < 1 or self.batch_size < 1 or (self.limit is not None and self.limit < 1):
            raise ConfigError(f"{where}: max_new_tokens, batch_size and limit must be positive")
        if self.temperature < 0:
            raise ConfigError(f"{where}: 'temperature' must be >= 0, got {self.temperature}")
        check_judge(self.judge, f"{where}: 'judge'")
        check_suite(self.benchmarks, f"{where}: 'benchmarks'")
        for name, prompt in self.prompts.items():
            check_condition(
                [{"role": "system", "content": prompt}] if isinstance(prompt, str) else prompt,
                f"{where}: 'prompts.{name}'",
            )
        if not all(isinstance(condition, str) for condition in self.conditions):
            raise ConfigError(f"{where}: 'conditions' is a list of condition names, got {self.conditions!r}")
        try:
            entries = model_entries(self)
        except (ConfigError, ModelError) as err:
            raise ConfigError(f"{where}: {err}") from None
        if self.prr_tokens < 1:
            raise ConfigError(f"{where}: 'prr_tokens' must be at least 1, got {self.prr_tokens}")
        if not 0 < self.overlap_threshold <= 1:
            raise ConfigError(f"{where}: 'overlap_threshold' must be in (0, 1], got {self.overlap_threshold}")
        check_capability(self.capability, f"{where}: 'capability'")
        check_validation(self.validation_benchmarks, self.benchmarks, f"{where}: 'validation_benchmarks'")
        conditions = {entry.name: entry.conditions for entry in entries}
        check_selections(self.selections, conditions, self.validation_benchmarks, where)


def check_validation(validation: list, benchmarks: Any, where: str) -> None:
    """ConfigError naming `where` unless `validation` is a list of names from the suite `benchmarks`."""
    if not all(isinstance(name, str) for name in validation):
        raise ConfigError(f"{where}: a list of benchmark names, got {validation!r}")
    unknown = [name for name in validation if name not in benchmarks]
    if unknown:
        raise ConfigError(f"{where}: {', '.join(unknown)} not in 'benchmarks' ({', '.join(map(str, benchmarks))})")


@dataclass(frozen=True)
class ModelEntry:
    """One model under test: load_model options, the conditions it runs under, and its base model's name."""

    name: str
    options: dict[str, Any]
    conditions: tuple[str, ...]
    base: str | None = None
    curve: str | None = None


def _entry(raw: Any, index: int, config: EvalConfig) -> ModelEntry:
    raw = {"spec": raw} if isinstance(raw, str) else raw
    if not isinstance(raw, Mapping) or "spec" not in raw:
        raise ConfigError(f"models[{index}]: a model is a spec string or a mapping with 'spec'")
    options = {key: value for key, value in raw.items() if key not in _ENTRY_KEYS}
    backend, _, _ = parse_spec(options)
    if backend in (*BUNDLED, "hf"):
        options.setdefault("batch_size", config.batch_size)
    default_name = scrub_secrets(raw["spec"]) + (f"+{Path(raw['adapter']).name}" if raw.get("adapter") else "")
    default_name += "".join(f" {key}={raw[key]}" for key in REFUSAL_OPTIONS if raw.get(key) is not None)
    if raw.get("curve") is not None and not isinstance(raw["curve"], str):
        raise ConfigError(f"models[{index}]: 'curve' is a name shared by the models of one line, got {raw['curve']!r}")
    conditions = raw.get("condition", config.conditions)
    conditions = [conditions] if isinstance(conditions, str) else conditions
    if not isinstance(conditions, list) or not all(isinstance(condition, str) for condition in conditions):
        raise ConfigError(f"models[{index}]: 'condition' is a condition name or a list of them, got {conditions!r}")
    for condition in conditions:
        if condition not in CONDITIONS and condition not in config.prompts:
            known = ", ".join([*CONDITIONS, *config.prompts])
            raise ConfigError(f"models[{index}]: unknown condition '{condition}'; known: {known}")
    return ModelEntry(
        str(raw.get("name", default_name)), options, tuple(conditions), raw.get("base"), raw.get("curve")
    )


def model_entries(config: EvalConfig) -> list[ModelEntry]:
    """The configured models, checked: unique names, known conditions, `base` naming another model."""
    entries = [_entry(raw, index, config) for index, raw in enumerate(config.models)]
    names = [entry.name for entry in entries]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"models: duplicate name(s) {', '.join(duplicates)}; give each model a distinct 'name'")
    for entry in entries:
        if entry.base is not None and (entry.base not in names or entry.base == entry.name):
            raise ConfigError(f"model '{entry.name}': base '{entry.base}' is not another model; known: {names}")
    return entries


def condition_messages(condition: str, prompts: Mapping[str, Any]) -> list[Message]:
    """The conversation prefix of a named condition (built in, or from the config's `prompts`)."""
    custom = prompts.get(condition)
    if isinstance(custom, str):
        return [{"role": "system", "content": custom}]
    return condition_prefix(condition if custom is None else custom)


def sampling_params(config: EvalConfig) -> SamplingParams:
    return SamplingParams(
        n=1, temperature=config.temperature, max_new_tokens=config.max_new_tokens, seed=config.seed, logprobs=True
    )


def generate_responses(
    model: ChatModel,
    prompts: Sequence[str],
    prefix: Sequence[Message],
    params: SamplingParams,
    desc: str | None = None,
) -> list[Sample]:
    """One response per prompt, all prompts in one batched call."""
    return [samples[0] for samples in model.generate(with_condition(prompts, prefix), params, desc=desc)]


def prr_window(model: ChatModel, samples: Sequence[Sample], limit: int) -> tuple[list[str], dict[str, Any]]:
    """The part of each response the PRR rule reads: its first `limit` tokens, and how that was done.

    A response of at most `limit` tokens is read whole; a longer one is cut with the model's own tokenizer. A
    model without a local tokenizer (an API model) has its longer responses read whole, and the returned
    description says so, so that the report states the length it used.
    """
    texts = [sample.text for sample in samples]
    longer = [i for i, s in enumerate(samples) if s.num_tokens is None or s.num_tokens > limit]
    if not longer:
        return texts, {"tokens": limit, "cut": 0, "whole_longer": 0}
    if TRANSFORMERS not in model.capabilities:
        return texts, {"tokens": limit, "cut": 0, "whole_longer": len(longer)}
    tokenizer = model.hf_tokenizer
    cut = 0
    for i in longer:
        ids = tokenizer(texts[i], add_special_tokens=False)["input_ids"]
        if len(ids) > limit:
            texts[i] = tokenizer.decode(ids[:limit], skip_special_tokens=True)
            cut += 1
    return texts, {"tokens": limit, "cut": cut, "whole_longer": 0}


def judge_responses(
    judge: Any, prr_judge: Any, prompts: Sequence[str], texts: Sequence[str], prr_texts: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """The judge's label, p_refusal and rationale plus the PRR verdict for each response (PRR on `prr_texts`,
    the responses cut to the PRR length, when given)."""
    items = [{"prompt": prompt, "response": text} for prompt, text in zip(prompts, texts)]
    verdicts = judge.classify(items)
    prr_items = [{"prompt": p, "response": t} for p, t in zip(prompts, prr_texts)] if prr_texts is not None else items
    prr = prr_judge.classify(prr_items)
    return [
        {
            "label": verdict["label"],
            "p_refusal": verdict.get("p_refusal"),
            "rationale": verdict.get("rationale"),
            "prr": prr_verdict["label"] != COMPLIANCE,
        }
        for verdict, prr_verdict in zip(verdicts, prr)
    ]


def suite_prompts(suite: Sequence[BenchmarkData]) -> dict[str, str]:
    """Each distinct prompt of the suite, in order, with where it first appears (`file:line`)."""
    origins: dict[str, str] = {}
    for bench in suite:
        for item in bench.items:
            origins.setdefault(item["prompt"], bench.origin(item))
    return origins


def _summary(
    metrics: Mapping[str, dict[str, Any]], suite: Sequence[BenchmarkData], responses: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """The suite's metrics pooled per kind, with the mean log-prob and unknown count of its benchmarks' responses."""
    names = {bench.name for bench in suite}
    responses = [r for r in responses if r["benchmark"] in names]

    def of_kind(kind: str) -> dict[str, Any] | None:
        return pooled([metrics[bench.name] for bench in suite if bench.kind == kind])

    return {
        "over_refusal": of_kind(BENIGN),
        "harmful_refusal": of_kind(HARMFUL),
        "mean_logprob": mean_logprob(r["mean_logprob"] for r in responses),
        "unknown": sum(r["label"] == UNKNOWN for r in responses),
    }


def _summaries(
    metrics: Mapping[str, dict[str, Any]],
    suite: Sequence[BenchmarkData],
    responses: Sequence[dict[str, Any]],
    validation: Sequence[str],
) -> dict[str, Any]:
    """`summary` over the held-out benchmarks and, when some are validation sets, `validation` over those."""
    held_out = [bench for bench in suite if bench.name not in validation]
    chosen = [bench for bench in suite if bench.name in validation]
    return {
        "summary": _summary(metrics, held_out, responses),
        "validation": _summary(metrics, chosen, responses) if chosen else None,
    }


def evaluate_capability(
    model: ChatModel,
    prefix: Sequence[Message],
    capability: CapabilitySet,
    judge: Any,
    config: EvalConfig,
    desc: str,
) -> dict[str, Any]:
    """The capability guard for one model under one condition: answers (cached), judged, and the references'
    log-probs; the figures of `capability_metrics` plus every answer record."""
    items = capability.items
    instructions = [item["instruction"] for item in items]
    conversations = with_condition(instructions, prefix)
    check_context(model, conversations, config.max_new_tokens, [item["origin"] for item in items])
    samples = generate_responses(model, instructions, prefix, sampling_params(config), desc=desc)
    verdicts = judge.classify([{"prompt": p, "response": s.text} for p, s in zip(instructions, samples)])
    references = reference_logprobs(model, conversations, [item["reference"] for item in items]) or [None] * len(items)
    records = [
        {
            "id": item["id"],
            "category": item["category"],
            "instruction": item["instruction"],
            "response": sample.text,
            "label": verdict["label"],
            "empty": is_empty(sample.text),
            "degenerate": is_degenerate(sample.text),
            "reference_logprob": reference,
            "mean_logprob": sample.mean_logprob,
        }
        for item, sample, verdict, reference in zip(items, samples, verdicts, references)
    ]
    return {**capability_metrics(records), "responses": records}


def evaluate_run(
    model: ChatModel,
    entry: ModelEntry,
    condition: str,
    suite: Sequence[BenchmarkData],
    judges: tuple[Any, Any],
    config: EvalConfig,
    pool: ModelPool,
    capability: CapabilitySet | None = None,
) -> dict[str, Any]:
    """Generate, judge and measure one model under one condition over the whole suite (and the capability set)."""
    origins = suite_prompts(suite)
    prompts = list(origins)
    prefix = condition_messages(condition, config.prompts)
    check_context(model, with_condition(prompts, prefix), config.max_new_tokens, list(origins.values()))
    started = time.perf_counter()
    samples = generate_responses(model, prompts, prefix, sampling_params(config), desc=f"{entry.name} [{condition}]")
    generated = time.perf_counter()
    prr_texts, prr_length = prr_window(model, samples, config.prr_tokens)
    verdicts = judge_responses(*judges, prompts, [sample.text for sample in samples], prr_texts)
    by_prompt = dict(zip(prompts, zip(samples, verdicts)))
    responses, metrics = [], {}
    for bench in suite:
        records = [_record(bench.name, item, *by_prompt[item["prompt"]]) for item in bench.items]
        metrics[bench.name] = benchmark_metrics(records)
        responses += records
    judged = time.perf_counter()
    desc = f"{entry.name} [{condition}] capability"
    guard = evaluate_capability(model, prefix, capability, judges[0], config, desc) if capability else None
    return {
        "name": entry.name,
        "spec": entry.options["spec"],
        "adapter": entry.options.get("adapter"),
        "condition": condition,
        "base": entry.base,
        "curve": entry.curve,
        **_summaries(metrics, suite, responses, config.validation_benchmarks),
        "capability": guard,
        "metrics": metrics,
        "prr_length": prr_length,
        "timing": {
            "prompts": len(prompts),
            "generate_s": round(generated - started, 2),
            "judge_s": round(judged - generated, 2),
            "capability_s": round(time.perf_counter() - judged, 2),
        },
        "model_calls": {"model": model.call_stats(), "judge": pool.stats("judge")},
        "responses": responses,
    }


def _record(benchmark: str, item: Mapping[str, Any], sample: Sample, verdict: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "benchmark": benchmark,
        "id": item["id"],
        "category": item["category"],
        "prompt": item["prompt"],
        "response": sample.text,
        **verdict,
        "mean_logprob": sample.mean_logprob,
        "num_tokens": sample.num_tokens,
        "finish_reason": sample.finish_reason,
    }


def check_overlap(config: EvalConfig, suite: Sequence[BenchmarkData]) -> dict[str, Any] | None:
    """The overlap guard (`evoalign.eval.overlap`): logs a warning per overlapping benchmark; None without
    `training_data`."""
    if not config.training_data:
        return None
    paths = [config.training_data] if isinstance(config.training_data, str) else list(config.training_data)
    train = training_prompts(paths)
    per_benchmark = benchmark_overlap(train, suite, threshold=config.overlap_threshold)
    for line in overlap_lines(per_benchmark):
        logger.warning("train/test overlap: %s", line)
    if not overlap_lines(per_benchmark):
        logger.info("train/test overlap: no benchmark prompt is in the %d training prompts", len(train))
    return {
        "training_data": [str(p) for p in paths],
        "training_prompts": len(train),
        "threshold": config.overlap_threshold,
        "benchmarks": per_benchmark,
    }


def evaluate(config: EvalConfig) -> dict[str, Any]:
    """Run the whole evaluation, write report.json, report.md and tradeoff.png, and return the report."""
    entries = model_entries(config)
    suite = load_suite(config.benchmarks, limit=config.limit, seed=config.seed, local_dir=config.benchmark_dir)
    kinds = [bench.kind for bench in suite if bench.name in config.validation_benchmarks]
    check_validation_kinds(config.selections, kinds, "selections")
    capability = load_capability_set(config.capability, limit=config.limit, seed=config.seed)
    overlap = check_overlap(config, suite)
    out = Path(config.output_dir)
    check_unlocked(out)
    with RunLock(out, "eval") as lock:
        report = _evaluate(config, entries, suite, capability, overlap, lock)
        atomic_write_json(out / REPORT_NAME, report)
        render(report, out)
    return report


def _evaluate(
    config: EvalConfig,
    entries: list[ModelEntry],
    suite: list[Any],
    capability: CapabilitySet | None,
    overlap: dict[str, Any] | None,
    lock: RunLock,
) -> dict[str, Any]:
    out = lock.run_dir
    runs = []
    with ModelPool(out / "responses.sqlite") as pool:
        judges = (load_judge(config.judge, pool), get_judge(PRR_JUDGE))
        pool.check(entry.options for entry in entries)
        judges[0].check()
        lock.acquire()
        write_run_info(out, config_to_dict(config), stage="eval")
        for entry in entries:
            model = pool.get(entry.options, entry.name)
            for condition in entry.conditions:
                runs.append(evaluate_run(model, entry, condition, suite, judges, config, pool, capability))
                logger.info("%s [%s]: %s", entry.name, condition, runs[-1]["timing"])
            pool.release(entry.name)
    report = {
        "format": REPORT_FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "judge": config.judge,
        "prr": PRR_JUDGE,
        "generation": sampling_params(config).to_dict(),
        "benchmarks": {bench.name: bench.describe() for bench in suite},
        "validation_benchmarks": list(config.validation_benchmarks),
        "capability": capability.describe() if capability else None,
        "prr_tokens": config.prr_tokens,
        "overlap": overlap,
        "runs": runs,
        "selections": [select(entry, runs) for entry in config.selections],
        "config": config_to_dict(config),
    }
    return scrub_secrets(report)
