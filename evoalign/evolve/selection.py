"""Which strategies mutate an instruction: a bandit over observed fitness gains, or `uniform` / `fixed`.

The published EvoRefuse code walks its strategy list in a fixed order until enough mutants pass the verifier,
so the first few strategies produce most of the pool. Here the default is a Gaussian Thompson-sampling bandit:
each strategy's reward is the fitness gain of its mutants over the instruction they mutated; for every seed
and round we draw one plausible mean gain per strategy from its posterior and take the best draws, so good
strategies are used more while every strategy keeps being tried. The posterior is N(mean, sigma^2 / (n + 1))
with one pseudo-observation of gain 0 (a neutral prior), where sigma is the spread of all gains seen so far.
Rewards are pooled over all seeds once per iteration, so the choices inside an iteration do not depend on the
order seeds are processed in (or on how seeds are sharded over processes).

`uniform` draws strategies uniformly without replacement; `fixed` walks the strategies in the published code's
loop order (anger, despair, disgust, generic sensitive words, prejudiced words, violent words, controversial
topic, imagined scenario, implied harm; `paper_X` and `rule_X` take the place of `X`, and strategies outside
that list follow in their given order), resuming where the previous request of the seed stopped.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from typing import Any

from evoalign.evolve.strategies import Strategy

MODES = ("bandit", "uniform", "fixed")
DEFAULT_SIGMA = 1.0
PUBLISHED_ORDER = (
    "anger",
    "despair",
    "disgust",
    "generic_keywords",
    "prejudiced_keywords",
    "violent_keywords",
    "controversial_topic",
    "imaginary_scenario",
    "implied_harm",
)


def published_order(strategies: Sequence[Strategy]) -> list[Strategy]:
    """`strategies` in the published code's loop order (see the module docstring); a stable sort."""

    def rank(strategy: Strategy) -> int:
        name = strategy.name.removeprefix("rule_").removeprefix("paper_")
        return PUBLISHED_ORDER.index(name) if name in PUBLISHED_ORDER else len(PUBLISHED_ORDER)

    return sorted(strategies, key=rank)


class StrategySelector:
    """Chooses `count` strategies per request; `update` feeds back one iteration's fitness gains."""

    def __init__(self, strategies: Sequence[Strategy], mode: str = "bandit") -> None:
        if mode not in MODES:
            raise ValueError(f"unknown selection '{mode}'; choose from {', '.join(MODES)}")
        if not strategies:
            raise ValueError("no strategies to choose from")
        self.strategies = published_order(strategies) if mode == "fixed" else list(strategies)
        self.mode = mode
        self.stats: dict[str, list[float]] = {s.name: [0, 0.0, 0.0] for s in self.strategies}  # n, sum, sum sq

    def choose(self, count: int, rng: random.Random, offset: int = 0) -> list[Strategy]:
        """`count` strategies, distinct while possible; `offset` is where `fixed` resumes its cycle."""
        if self.mode == "fixed":
            return [self.strategies[(offset + i) % len(self.strategies)] for i in range(count)]
        chosen: list[Strategy] = []
        while len(chosen) < count:
            ranked = self._ranked(rng)
            chosen += ranked[: count - len(chosen)]
        return chosen

    def _ranked(self, rng: random.Random) -> list[Strategy]:
        if self.mode == "uniform":
            return rng.sample(self.strategies, len(self.strategies))
        sigma = self.sigma()
        draws = {}
        for strategy in self.strategies:
            n, total, _ = self.stats[strategy.name]
            draws[strategy.name] = total / (n + 1) + sigma / math.sqrt(n + 1) * rng.gauss(0.0, 1.0)
        return sorted(self.strategies, key=lambda s: -draws[s.name])

    def sigma(self) -> float:
        """Spread of all observed gains (DEFAULT_SIGMA until there are two)."""
        n = sum(stat[0] for stat in self.stats.values())
        if n < 2:
            return DEFAULT_SIGMA
        total = sum(stat[1] for stat in self.stats.values())
        squares = sum(stat[2] for stat in self.stats.values())
        variance = max(squares / n - (total / n) ** 2, 0.0)
        return math.sqrt(variance) or DEFAULT_SIGMA

    def update(self, gains: Iterable[tuple[str, float]]) -> None:
        """Add observed (strategy name, fitness gain) pairs."""
        for name, gain in gains:
            stat = self.stats.setdefault(name, [0, 0.0, 0.0])
            stat[0] += 1
            stat[1] += gain
            stat[2] += gain * gain

    def state_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "stats": {name: list(stat) for name, stat in self.stats.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stats = {name: [int(s[0]), float(s[1]), float(s[2])] for name, s in state["stats"].items()}
