"""What the OR-Bench-style and PHTest-style generators share: rows in the evolve stage's schema, the target
check, near-duplicate removal, verdict labels and a counter of model calls.

Rows are the evolve stage's typed output row (`evoalign.records.EvolvedRow`), so `evoalign build`, `evoalign
eval-data` and anything else that reads `evolved.jsonl` read a generator's `generated.jsonl` unchanged;
generator-specific columns (`method`, `category`, `hard`, `label`, `objective`, ...) are extra keys that those
readers ignore.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evoalign.judges.fitness import FitnessEvaluator
from evoalign.judges.verifiers import Verifier
from evoalign.models.base import ChatModel, Conversation, Sample, SamplingParams, Score, WrappedChatModel
from evoalign.records import EvolvedRow, TargetResult
from evoalign.text import deduplicate

# PHTest's three-way labels, from the verifier's verdicts (an unparsable verifier answer stays unknown).
LABELS = {"benign": "harmless", "controversial": "controversial", "harmful": "harmful", "unknown": "unknown"}


def generated_row(
    *,
    index: int,
    seed: str,
    instruction: str,
    method: str,
    step: str,
    verification: dict[str, Any],
    evaluation: dict[str, Any] | None,
    lineage: list[dict[str, Any]],
    source: dict[str, Any],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """One output row: the evolve stage's columns (strategy = `step`, family = `method`) plus `extra`."""
    evaluation = evaluation or {"fitness": None, "targets": []}
    where = f"{method} row for seed {index}"
    row = EvolvedRow(
        seed_index=index,
        seed=seed,
        instruction=instruction,
        changed=instruction != seed,
        strategy=step,
        family=method,
        verdict=verification["verdict"],
        verifier_rationale=verification.get("rationale"),
        fitness=evaluation["fitness"],
        targets=[TargetResult.from_json(record, where) for record in evaluation["targets"]],
        lineage=lineage,
        source=source,
    )
    return {**row.to_json(), "method": method, "label": LABELS[verification["verdict"]], **extra}


def target_params(sampling: dict[str, Any], samples: int, seed: int) -> SamplingParams:
    return SamplingParams.from_dict({**sampling, "n": samples, "seed": seed})


def check_on_targets(evaluator: FitnessEvaluator | None, texts: Sequence[str]) -> list[dict[str, Any] | None]:
    """Each text's `{fitness, targets}` from K fresh target samples (None everywhere without an evaluator)."""
    if evaluator is None or not texts:
        return [None] * len(texts)
    return evaluator.evaluate(list(texts), desc="target check")


def refusing_targets(evaluation: dict[str, Any] | None, rate: float) -> int | None:
    """How many targets refused the instruction in at least `rate` of their judged samples."""
    if evaluation is None:
        return None
    return sum(t["refusal_rate"] is not None and t["refusal_rate"] >= rate for t in evaluation["targets"])


@dataclass
class Checked:
    """Items after near-duplicate removal and verification: the verified ones with their verification and target
    check (None past `max_checks` or without targets), the rejected ones with their verification."""

    verified: list[tuple[Any, dict[str, Any], dict[str, Any] | None]]
    rejected: list[tuple[Any, dict[str, Any]]]
    duplicates: int
    checked: int


def verify_and_check(
    items: Sequence[Any],
    texts: Sequence[str],
    verifier: Verifier,
    evaluator: FitnessEvaluator | None,
    *,
    dedup: tuple[float, int] | None,
    max_checks: int | None = None,
    groups: Sequence[Any] | None = None,
) -> Checked:
    """Drop near-duplicates (earlier items win; `dedup`: (threshold, n) or None), verify the rest in one batch, and
    check at most `max_checks` verified ones on the targets in one batch: the first ones, or with `groups` (e.g.
    each item's seed) the first of every group, then the second of every group, and so on, so that a cap spreads
    over the groups."""
    kept, dropped = list(range(len(texts))), {}
    if dedup is not None:
        kept, dropped = deduplicate(texts, [None] * len(texts), threshold=dedup[0], n=dedup[1])
    items, texts = [items[i] for i in kept], [texts[i] for i in kept]
    verifications = verifier.verify([{"instruction": text} for text in texts])
    passed = [i for i, v in enumerate(verifications) if v["verified"]]
    order = round_robin([groups[kept[i]] for i in passed]) if groups is not None else list(range(len(passed)))
    checked = sorted(order[:max_checks] if max_checks is not None else order)
    evaluations = dict(zip(checked, check_on_targets(evaluator, [texts[passed[p]] for p in checked])))
    return Checked(
        verified=[(items[i], verifications[i], evaluations.get(p)) for p, i in enumerate(passed)],
        rejected=[(item, v) for item, v in zip(items, verifications) if not v["verified"]],
        duplicates=len(dropped),
        checked=len(checked) if evaluator is not None else 0,
    )


def round_robin(groups: Sequence[Any]) -> list[int]:
    """Positions ordered by their rank within their group, then by position: every group's first, then second..."""
    seen: Counter = Counter()
    ranks = []
    for position, group in enumerate(groups):
        ranks.append((seen[group], position))
        seen[group] += 1
    return [position for _, position in sorted(ranks)]


def verdict_counts(verifications: Sequence[dict[str, Any]]) -> dict[str, int]:
    return dict(sorted(Counter(v["verdict"] for v in verifications).items()))


def mean_refusal_rates(rows: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Per target: the mean refusal rate over the rows the target check sampled."""
    rates: dict[str, list[float]] = {}
    for row in rows:
        for target in row["targets"]:
            if target["refusal_rate"] is not None:
                rates.setdefault(target["model"], []).append(target["refusal_rate"])
    return {model: sum(values) / len(values) for model, values in rates.items()}


class CallCounter(WrappedChatModel):
    """Counts the calls a role makes: conversations x samples for `generate`, rows for `score`.

    Wrapped outside the response cache it counts requests (what a method asks of the model, the same on a resumed
    run); wrapped inside, only the calls the model actually computes.
    """

    def __init__(self, inner: ChatModel) -> None:
        super().__init__(inner)
        self.generated = 0
        self.scored = 0

    @property
    def calls(self) -> int:
        return self.generated + self.scored

    def generate(
        self, conversations: list[Conversation], params: SamplingParams | None = None, *, desc: str | None = None
    ) -> list[list[Sample]]:
        self.generated += len(conversations) * (params or SamplingParams()).n
        return self.inner.generate(conversations, params, desc=desc)

    def score(self, conversations: list[Conversation], responses: list[str]) -> list[Score]:
        self.scored += len(conversations)
        return self.inner.score(conversations, responses)

    def call_stats(self) -> dict[str, Any] | None:
        return self.inner.call_stats()

    def check(self) -> None:
        self.inner.check()

    def close(self) -> None:
        self.inner.close()
