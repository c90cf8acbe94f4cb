"""Safety in the build: the verdict gate, the harmful-prompt set with its refusals, and the exact mix ratio.

`safety_gate` is the one place that decides which instructions may be trained with a compliant answer: only
those whose harmfulness verifier verdict is `benign`. Rows without a verdict are verified now when a verifier
is configured, or given `assume_verdict` when the user vouches for a published set; everything else is dropped
and counted by verdict. Later steps only ever write compliant answers for the rows this gate returns.

Training on over-refusal data alone erodes refusals of truly harmful requests, so the SFT set is mixed with a
safety set (harmful instruction -> refusal) at `ratio` safety rows per benign row (the EvoRefuse paper trained
on an equal mix, ratio 1). Refusals come from short, polite, varied templates or from a ChatModel whose
answers the refusal judge must label `refusal`.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from collections.abc import Mapping
from typing import Any

from evoalign.benchmarks import BENCHMARKS, load_benchmark
from evoalign.build.examples import Example
from evoalign.build.summary import Ledger
from evoalign.errors import ConfigError, DataError
from evoalign.labels import BENIGN, SAFETY
from evoalign.sources import Source, load_source

REFUSAL_TEMPLATES = (
    "I'm sorry, but I can't help with that.",
    "I can't help with that request. It could cause real harm to people.",
    "Sorry, I can't assist with this. If there's something else you need, I'm happy to help.",
    "I won't help with that, because it could be used to hurt someone.",
    "I'm not able to help with this request.",
    "I'm sorry, but I can't provide that. It could put people at risk.",
    "I can't assist with that. Is there something else I can help you with?",
    "Sorry, but I won't provide instructions for that.",
    "I'm unable to help with this, as it could lead to serious harm.",
    "I can't do that. Helping with this could be dangerous or illegal.",
    "I'm sorry, I can't help with that, but I'd be glad to help with something else.",
    "I must decline this request, since it could cause harm.",
)

REFUSAL_WRITER_PROMPT = (
    "You are a careful assistant and the user's request is harmful. Decline it in one or two short, polite "
    "sentences; you may say briefly why. Do not give any of the requested information, hints or alternatives."
)


def safety_gate(
    examples: list[Example], *, verifier: Any = None, assume_verdict: str | None = None, ledger: Ledger
) -> list[Example]:
    """Drop every benign-kind example whose verifier verdict is not `benign` (see the module docstring)."""
    unverified = [e for e in examples if e.kind == BENIGN and e.verdict is None]
    notes = []
    if unverified and verifier is not None:
        results = verifier.verify([{"instruction": e.instruction, "reason": e.reason} for e in unverified])
        for example, result in zip(unverified, results):
            example.verdict = result["verdict"]
        notes.append(f"{len(unverified)} verified now")
    elif unverified and assume_verdict is not None:
        for example in unverified:
            example.verdict = assume_verdict
        notes.append(f"{len(unverified)} without a verdict assumed '{assume_verdict}'")
    kept, dropped = [], Counter()
    for example in examples:
        if example.kind == BENIGN and example.verdict != BENIGN:
            dropped[f"verdict {example.verdict or 'missing'}"] += 1
        else:
            kept.append(example)
    note = ", ".join([f"{sum(e.kind == BENIGN for e in kept)} benign", *notes])
    ledger.record("safety gate (verdict must be benign)", len(kept), dropped, note)
    return kept


def check_harmful_prompts(spec: Any, where: str) -> None:
    """ConfigError naming `where` for a harmful-prompt set that is neither a registered benchmark (a name, or
    `{benchmark: NAME, limit: N}` with N >= 1) nor a data source; reads no file."""
    if isinstance(spec, Mapping) and "benchmark" in spec:
        unknown = sorted(set(spec) - {"benchmark", "limit"})
        limit = spec.get("limit")
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; a benchmark takes only 'limit'")
        if spec["benchmark"] not in BENCHMARKS:
            raise ConfigError(f"{where}: unknown benchmark {spec['benchmark']!r}; known: {', '.join(BENCHMARKS)}")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise ConfigError(f"{where}: 'limit' must be a whole number >= 1, got {limit!r}")
    elif not (isinstance(spec, str) and spec in BENCHMARKS):
        Source.from_config(spec, where)


def load_harmful_prompts(spec: Any, local_dir: str | None = None) -> list[Example]:
    """Safety examples (no answer yet) from a harmful-prompt set: a registered benchmark by name (`advbench`, or
    `{benchmark: advbench, limit: N}` for its first N prompts; found in the local benchmark folder `local_dir` or
    `$EVOALIGN_BENCHMARK_DIR`, else at its public location), or a source whose column maps to `instruction`.
    A `category` column (or field) is kept as the examples' category."""
    if isinstance(spec, Mapping) and "benchmark" in spec:
        unknown = sorted(set(spec) - {"benchmark", "limit"})
        if unknown:
            raise ConfigError(f"harmful_prompts: unknown key(s) {', '.join(unknown)}; a benchmark takes only 'limit'")
        name, limit = spec["benchmark"], spec.get("limit")
    elif isinstance(spec, str) and spec in BENCHMARKS:
        name, limit = spec, None
    else:
        where = spec if isinstance(spec, str) else spec.get("path", "?")
        rows = load_source(spec, required=("instruction",))
        return [
            Example(instruction=row["instruction"], kind=SAFETY, source=str(where), category=_category(row))
            for row in rows
        ]
    data = load_benchmark(name, local_dir=local_dir)
    return [
        Example(instruction=item["prompt"], kind=SAFETY, source=data.source, category=_category(item))
        for item in data.items[:limit]
    ]


def _category(row: Mapping[str, Any]) -> str | None:
    """A harmful prompt's category column (e.g. `weapons`), when it has one."""
    category = row.get("category")
    text = "" if category is None else str(category).strip()
    return text or None


def template_refusal(instruction: str, seed: int) -> str:
    """A refusal template picked by a hash of the instruction and the seed (deterministic, varied)."""
    digest = hashlib.sha256(f"{seed}\n{instruction}".encode()).digest()
    return REFUSAL_TEMPLATES[int.from_bytes(digest[:4], "big") % len(REFUSAL_TEMPLATES)]


def safety_count(benign_rows: int, ratio: float) -> int:
    """Safety rows that go with `benign_rows` benign rows: ratio * benign, rounded half up."""
    return math.floor(ratio * benign_rows + 0.5)


def mix(
    benign: list[Example], safety: list[Example], ratio: float, rng: random.Random, *, exact: bool = True
) -> list[Example]:
    """Benign rows plus the first `safety_count(len(benign), ratio)` safety rows, in a seeded random order.

    With `exact`, too few safety rows raise `DataError`; without it, all of them are used.
    """
    needed = safety_count(len(benign), ratio)
    if exact and needed > len(safety):
        raise DataError(
            f"the safety mix needs {needed} safety rows ({ratio} per benign row x {len(benign)}) but only "
            f"{len(safety)} are available; add harmful prompts or lower safety_ratio"
        )
    rows = benign + safety[:needed]
    rng.shuffle(rows)
    return rows
