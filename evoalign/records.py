"""The evolve stage's output row (`evolved.jsonl`), typed once: the evolve stage writes it, the build reads it.

One row per evolved seed: the final `instruction` and its `seed`, the operator that produced it, the verifier's
`verdict`, the fitness, and per target the K responses sampled during evolution, each with the refusal judge's
`label` and its `finish_reason` (see docs/evolve.md for every column). `to_json` gives the row as written (keys in
field order); `from_json` reads one back, checking the parts a reader relies on and naming the file and line of a
malformed row. Only `instruction` is required, so rows written by other tools in the same shape load too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from evoalign.errors import DataError


@dataclass
class Response:
    """One sampled target response and its judgement."""

    text: str
    label: str | None = None
    p_refusal: float | None = None
    logprob_sum: float | None = None
    num_tokens: int | None = None
    finish_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any, where: str) -> Response:
        if not isinstance(data, Mapping) or not isinstance(data.get("text"), str):
            raise DataError(f"{where}: every entry of 'targets[].responses' needs a string 'text'")
        return cls(**{f.name: data.get(f.name) for f in dataclasses.fields(cls)})


@dataclass
class TargetResult:
    """One target model's record for an instruction: fitness, refusal rate, confidence and its responses."""

    model: str
    fitness: float | None = None
    refusal_rate: float | None = None
    mean_logprob: float | None = None
    unknown: int = 0
    responses: list[Response] = field(default_factory=list)

    def to_json(self, *, with_responses: bool = True) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "responses"}
        if with_responses:
            data["responses"] = [response.to_json() for response in self.responses]
        return data

    @classmethod
    def from_json(cls, data: Any, where: str) -> TargetResult:
        if not isinstance(data, Mapping):
            raise DataError(f"{where}: 'targets' must be a list of per-target records")
        values = {name: data.get(name, default) for name, default in _DEFAULTS.items()}
        responses = [Response.from_json(item, where) for item in data.get("responses") or []]
        return cls(**values, responses=responses)


_DEFAULTS = {f.name: None if f.default is dataclasses.MISSING else f.default for f in dataclasses.fields(TargetResult)}
del _DEFAULTS["responses"]


def _targets(data: Any, key: str, where: str) -> list[TargetResult]:
    records = data.get(key) or []
    if not isinstance(records, list):
        raise DataError(f"{where}: '{key}' must be a list of per-target records")
    return [TargetResult.from_json(record, where) for record in records]


@dataclass
class EvolvedRow:
    """One row of `evolved.jsonl` (see the module docstring)."""

    seed_index: int | None = None
    seed: str | None = None
    instruction: str = ""
    changed: bool = False
    strategy: str | None = None
    family: str | None = None
    reason: str | None = None
    verdict: str | None = None
    verifier_rationale: str | None = None
    fitness: float | None = None
    seed_fitness: float | None = None
    targets: list[TargetResult] = field(default_factory=list)
    seed_targets: list[TargetResult] = field(default_factory=list)  # written without their responses
    fresh: list[dict[str, Any]] = field(default_factory=list)  # per target: seed and final refusal rate
    lineage: list[dict[str, Any]] = field(default_factory=list)  # one entry per iteration
    source: dict[str, Any] = field(default_factory=dict)  # the seed row's other columns

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["targets"] = [target.to_json() for target in self.targets]
        data["seed_targets"] = [target.to_json(with_responses=False) for target in self.seed_targets]
        return data

    @classmethod
    def from_json(cls, data: Any, where: str) -> EvolvedRow:
        if not isinstance(data, Mapping):
            raise DataError(f"{where}: expected a JSON object")
        instruction = data.get("instruction")
        if not isinstance(instruction, str) or not instruction.strip():
            raise DataError(f"{where}: empty or missing 'instruction'")
        plain = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}
        plain["targets"] = _targets(data, "targets", where)
        plain["seed_targets"] = _targets(data, "seed_targets", where)
        return cls(**plain)
