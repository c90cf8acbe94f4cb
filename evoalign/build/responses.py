"""Writing responses with a ChatModel and keeping only those the refusal judge labels as wanted.

`write_until_accepted` serves the responder (wants a confident `compliance`) and a model refusal writer (wants a
confident `refusal`):
each round is ONE batched `generate` call over every row still missing a response; what the judge rejects is
regenerated with a new seed at a sampling temperature, up to `retries` times, then left as None and counted.
A response cut off at `max_new_tokens` is dropped like a refusal, trimmed to its last complete sentence, or
kept as it is (`truncated`: drop, trim, keep).
`sample_wanted` draws k samples per row from a target in one call and keeps those with a wanted label (the
refusals a target gives to benign instructions, or its compliance with harmful ones).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from evoalign.judges import COMPLIANCE, RefusalJudge
from evoalign.models.base import ChatModel, SamplingParams
from evoalign.prompts import Conversation
from evoalign.text import final_text

EMPTY, TRUNCATED = "empty", "truncated"
TRUNCATION = ("drop", "trim", "keep")  # what to do with a response cut off at max_new_tokens


@dataclass
class WriteStats:
    """What regeneration did: rows regenerated per round, and the last failure of every dropped row."""

    regenerated: list[int] = field(default_factory=list)
    failed: Counter = field(default_factory=Counter)


def judge_labels(judge: RefusalJudge, prompts: Sequence[str], texts: Sequence[str]) -> list[str]:
    """The judge's label for each (prompt, response)."""
    results = judge.classify([{"prompt": p, "response": t} for p, t in zip(prompts, texts)])
    return [result["label"] for result in results]


def _doubt(result: dict, accept: str) -> float:
    """The judge's probability that a response labelled `accept` is in fact the other class."""
    p_refusal = result.get("p_refusal")
    if p_refusal is None:
        return 1.0
    return p_refusal if accept == COMPLIANCE else 1.0 - p_refusal


def _failure(text: str | None, result: dict, accept: str, max_doubt: float) -> str | None:
    """Why a response is not acceptable, or None when it is."""
    if text is None:
        return TRUNCATED
    if not text:
        return EMPTY
    if result["label"] != accept:
        return result["label"]
    return f"unsure {accept}" if _doubt(result, accept) > max_doubt else None


def write_until_accepted(
    model: ChatModel,
    judge: RefusalJudge,
    prompts: Sequence[str],
    conversations: Sequence[Conversation],
    *,
    accept: str,
    params: SamplingParams,
    retries: int,
    retry_temperature: float,
    truncated: str = "drop",
    max_doubt: float = 1.0,
    desc: str = "writing",
) -> tuple[list[str | None], WriteStats]:
    """One accepted response per prompt (None where every attempt failed), and what it took.

    A response is accepted when the judge labels it `accept` with at most `max_doubt` probability of the other
    class (for `compliance`, its `p_refusal`); a label it is unsure of counts as `unsure <label>`.
    """
    answers: list[str | None] = [None] * len(prompts)
    stats = WriteStats()
    last_failure: dict[int, str] = {}
    pending = list(range(len(prompts)))
    for attempt in range(retries + 1):
        if not pending:
            break
        if attempt:
            stats.regenerated.append(len(pending))
        round_params = params.replace(n=1)
        if attempt:
            round_params = round_params.replace(
                temperature=max(params.temperature, retry_temperature), seed=(params.seed or 0) + attempt
            )
        samples = model.generate([conversations[i] for i in pending], round_params, desc=f"{desc} (round {attempt})")
        texts = [final_text(choices[0].text, choices[0].finish_reason, truncated) for choices in samples]
        items = [{"prompt": prompts[i], "response": text or ""} for i, text in zip(pending, texts)]
        results = judge.classify(items)
        still = []
        for index, text, result in zip(pending, texts, results):
            failure = _failure(text, result, accept, max_doubt)
            if failure is None:
                answers[index] = text
            else:
                last_failure[index] = failure
                still.append(index)
        pending = still
    stats.failed.update(last_failure[index] for index in pending)
    return answers, stats


def sample_wanted(
    model: ChatModel,
    judge: RefusalJudge,
    prompts: Sequence[str],
    conversations: Sequence[Conversation],
    *,
    want: Collection[str],
    params: SamplingParams,
    desc: str = "sampling",
) -> list[list[str]]:
    """The samples (of `params.n` per prompt, one call) the judge labels with a wanted label, in `want` order.

    Samples cut off at `max_new_tokens` are trimmed to their last complete sentence first.
    """
    samples = model.generate(list(conversations), params, desc=desc)
    texts = [[final_text(sample.text, sample.finish_reason, "trim") for sample in choices] for choices in samples]
    flat_prompts = [prompt for prompt, row in zip(prompts, texts) for _ in row]
    labels = iter(judge_labels(judge, flat_prompts, [text for row in texts for text in row]))
    rank = {label: position for position, label in enumerate(want)}
    wanted: list[list[str]] = []
    for row in texts:
        labelled = [(text, next(labels)) for text in row]
        kept = sorted(((rank[label], text) for text, label in labelled if text and label in rank), key=lambda x: x[0])
        wanted.append(_unique(text for _, text in kept))
    return wanted


def _unique(texts: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(texts))
