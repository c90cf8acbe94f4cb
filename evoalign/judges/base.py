"""The refusal-judge interface and the registry that resolves judge names.

Every judge takes a batch of `{prompt, response}` items and returns one dict per item, in order, with
`label` in `LABELS`, `p_refusal` (None only when the label is `unknown`) and, when the judge gives one,
`rationale`. `p_refusal` is a probability that people would call the response a full or partial refusal only
when the judge's `calibrated` attribute is True (the trained `evoalign` judge, or a classifier you declare
calibrated); otherwise it is a score (string rules give 1.0 or 0.0, the label as a number) and must not be used
as a probability. Judges are named by a spec string: `evoalign` (the trained default), `evoalign-rules`,
`xstest`, `evorefuse` (string rules), `llm:<model spec>`, `classifier:<hf id or path>`, `cascade:<model spec>`;
`register_judge` adds more.
"""

from __future__ import annotations

import abc
import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evoalign.errors import ConfigError, DataError

COMPLIANCE, REFUSAL, PARTIAL, UNKNOWN = "compliance", "refusal", "partial_refusal", "unknown"
LABELS = (COMPLIANCE, REFUSAL, PARTIAL, UNKNOWN)
REFUSING = frozenset({REFUSAL, PARTIAL})


@dataclass(frozen=True)
class JudgeItem:
    """One (prompt, response) pair to judge."""

    prompt: str
    response: str


def is_refusing(label: str) -> bool:
    """True for the labels that count as a refusal in binary terms (full or partial)."""
    return label in REFUSING


def to_items(items: Sequence[Mapping[str, Any]]) -> list[JudgeItem]:
    """Validate `{prompt, response}` mappings; a bad item raises `DataError` naming its index and field."""
    checked = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise DataError(f"judge item {index}: expected a mapping with 'prompt' and 'response'")
        for key in ("prompt", "response"):
            if not isinstance(item.get(key), str):
                raise DataError(f"judge item {index}: '{key}' must be a string, got {item.get(key)!r:.60}")
        checked.append(JudgeItem(item["prompt"], item["response"]))
    return checked


class RefusalJudge(abc.ABC):
    """Labels responses as compliance, refusal or partial refusal (unknown when it cannot tell)."""

    name: str = "judge"
    calibrated: bool = False  # True only when p_refusal is a probability calibrated against human labels

    def classify(self, items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Judge every `{prompt, response}` item in one batch; results are in input order."""
        checked = to_items(items)
        return self.judge(checked) if checked else []

    @abc.abstractmethod
    def judge(self, items: list[JudgeItem]) -> list[dict[str, Any]]:
        """Judge validated items (never empty); one result dict per item, in order."""

    def check(self) -> None:
        """Raise ModelError now when a model-backed judge cannot be reached (see `ChatModel.check`)."""


JudgeFactory = Callable[..., RefusalJudge]
_REGISTRY: dict[str, tuple[JudgeFactory, bool]] = {}


def register_judge(name: str, factory: JudgeFactory, *, takes_argument: bool = False) -> None:
    """Make `get_judge(name)` (or `get_judge('name:ARG')` when `takes_argument`) build a judge with `factory`.

    The factory is called as `factory(**options)`, or `factory(ARG, **options)` when it takes an argument.
    """
    _REGISTRY[name] = (factory, takes_argument)


def judge_names() -> list[str]:
    """Registered judge names, with `:ARG` on those that need an argument."""
    return [name + (":ARG" if takes else "") for name, (_, takes) in sorted(_REGISTRY.items())]


def get_judge(spec: str | RefusalJudge, **options: Any) -> RefusalJudge:
    """Resolve a judge spec such as `evoalign`, `llm:openai:gpt-4o` or `classifier:/path/to/model`."""
    if isinstance(spec, RefusalJudge):
        return spec
    name, argument = split_judge_spec(spec)
    factory, takes_argument = _REGISTRY[name]
    return factory(argument, **options) if takes_argument else factory(**options)


def split_judge_spec(spec: Any) -> tuple[str, str]:
    """(registered judge name, argument) of a judge spec; a ConfigError for an unknown name or a missing or
    surplus argument."""
    if not isinstance(spec, str):
        raise ConfigError(f"a judge spec is a string such as 'evoalign' or 'llm:MODEL', got {spec!r}")
    name, has_argument, argument = spec.partition(":")
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown judge '{spec}'{hint}; known: {', '.join(judge_names())}")
    _, takes_argument = _REGISTRY[name]
    if takes_argument and not argument:
        raise ConfigError(f"judge '{name}' needs an argument: '{name}:ARG'")
    if has_argument and not takes_argument:
        raise ConfigError(f"judge '{name}' takes no argument, got '{spec}'")
    return name, argument
