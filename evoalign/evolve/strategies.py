"""Mutation strategies as data: a name, a family, and either an LLM prompt or offline rule templates.

The built-ins (package data `strategies.yaml`) come in three sets, each selectable by its name: `paper`, the
EvoRefuse paper's nine LLM strategies in three families (deceptive context, sensitive keywords, extreme emotion)
with the authors' intent and strength (`paper_anger`, ...); `softened`, evoalign's toned-down LLM versions of the
same nine (`anger`, ...); and `rule`, nine offline rule strategies covering the same families with word lists
and templates. Users add or replace strategies with a YAML file of the same
shape (`strategies_file:` in the evolve config); a user strategy with a built-in name replaces it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from evoalign.errors import ConfigError
from evoalign.io import read_text_strict

LLM, RULE = "llm", "rule"
KINDS = (LLM, RULE)
PAPER = "paper"


@dataclass(frozen=True)
class Strategy:
    """One way to rewrite an instruction; see the module docstring and docs/evolve.md."""

    name: str
    family: str
    kind: str
    set: str = ""  # the named set it belongs to (paper, softened, rule, or a user's own)
    prompt: str = ""
    reason: str = ""
    openers: tuple[str, ...] = field(default=())
    closers: tuple[str, ...] = field(default=())
    frames: tuple[str, ...] = field(default=())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> Strategy:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown strategy key(s) {', '.join(unknown)}; known: {', '.join(known)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        try:
            strategy = cls(**values)
        except TypeError as err:
            raise ConfigError(f"{where}: {err}") from None
        strategy.check(where)
        return strategy

    def check(self, where: str) -> None:
        """Raise ConfigError when the strategy cannot work (missing prompt or templates, bad kind)."""
        label = f"{where}: strategy '{self.name}'"
        if not self.name or not self.family:
            raise ConfigError(f"{where}: every strategy needs a 'name' and a 'family'")
        if self.kind not in KINDS:
            raise ConfigError(f"{label}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == LLM and not self.prompt.strip():
            raise ConfigError(f"{label}: an llm strategy needs a 'prompt'")
        if self.kind == RULE:
            if not (self.openers or self.closers or self.frames):
                raise ConfigError(f"{label}: a rule strategy needs 'openers', 'closers' or 'frames'")
            if any("{instruction}" not in f and "{lower}" not in f for f in self.frames):
                raise ConfigError(f"{label}: every frame must contain {{instruction}} or {{lower}}")


def parse_strategies(text: str, where: str) -> list[Strategy]:
    """Strategies from YAML text holding `strategies: [...]` (or a bare list)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: invalid YAML ({getattr(err, 'problem', err)})") from None
    items = data.get("strategies") if isinstance(data, dict) else data
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ConfigError(f"{where}: expected 'strategies:' holding a list of mappings")
    return [Strategy.from_dict(item, f"{where} (strategy {index})") for index, item in enumerate(items)]


def builtin_strategies() -> list[Strategy]:
    """The strategies shipped with evoalign, in file order."""
    text = resources.files("evoalign.evolve").joinpath("data/strategies.yaml").read_text(encoding="utf-8")
    return parse_strategies(text, "evoalign/evolve/data/strategies.yaml")


def available_strategies(extra_file: str | Path | None = None) -> dict[str, Strategy]:
    """Built-in strategies plus (replacing same-named ones) those in `extra_file`, by name."""
    strategies = {s.name: s for s in builtin_strategies()}
    if extra_file:
        strategies.update({s.name: s for s in parse_strategies(read_text_strict(extra_file), str(extra_file))})
    return strategies


def select_strategies(
    names: Sequence[str] | None, available: Mapping[str, Strategy], *, has_mutator: bool
) -> list[Strategy]:
    """Resolve configured names; a set name (`paper`, `softened`, `rule`, ...) stands for every strategy of that
    set, and `llm` for every LLM strategy of any set.

    With no names, the `paper` set is used when a mutator is configured, else the `rule` set.
    """
    names = list(names) if names else [PAPER if has_mutator else RULE]
    sets = {s.set for s in available.values() if s.set}
    chosen: dict[str, Strategy] = {}
    for name in names:
        group = None
        if name == LLM:
            group = [s for s in available.values() if s.kind == LLM]
        elif name in sets and name not in available:
            group = [s for s in available.values() if s.set == name]
        if group is None and name not in available:
            groups = ", ".join(sorted({LLM, *sets}))
            raise ConfigError(f"unknown strategy '{name}'; known: {', '.join(available)} (or the groups {groups})")
        for strategy in group if group is not None else [available[name]]:
            chosen.setdefault(strategy.name, strategy)
    if not has_mutator:
        needing = [s.name for s in chosen.values() if s.kind == LLM]
        if needing:
            raise ConfigError(f"strategies {', '.join(needing)} need a mutator model; set 'mutator:' or drop them")
    return list(chosen.values())
