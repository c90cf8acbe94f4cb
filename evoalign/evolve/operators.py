"""The operator facade the search calls: mutation and recombination, LLM and rule-based.

`Operators` batches all LLM requests of one step into a single `generate` call and runs rule operators inline.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from evoalign.evolve import rule_operators
from evoalign.evolve.proposal import Proposal
from evoalign.evolve.strategies import RULE, Strategy

if TYPE_CHECKING:
    from evoalign.evolve.llm_operators import LLMOperators

RECOMBINATIONS = ("llm", "rule", "none")


@dataclass(frozen=True)
class MutationRequest:
    """Rewrite `instruction` with `strategy`; `rng` drives the rule operators' choices."""

    instruction: str
    strategy: Strategy
    rng: random.Random


class Operators:
    """Mutation and recombination for one run: LLM operators when a mutator is configured, rules always."""

    def __init__(self, llm: LLMOperators | None, recombination: str, max_words: int) -> None:
        if recombination == "llm" and llm is None:
            raise ValueError("LLM recombination needs a mutator model")
        self.llm = llm
        self.recombination = recombination
        self.max_words = max_words

    @property
    def recombination_name(self) -> str:
        return f"recombine_{self.recombination}"

    def mutate(self, requests: Sequence[MutationRequest], seed: int) -> list[Proposal]:
        """One proposal per request, in order; all LLM requests go out in one batched call."""
        proposals: list[Proposal | None] = [None] * len(requests)
        llm_indices = [i for i, r in enumerate(requests) if r.strategy.kind != RULE]
        for index, request in enumerate(requests):
            if request.strategy.kind == RULE:
                proposals[index] = rule_operators.mutate(request.instruction, request.strategy, request.rng)
        if llm_indices:
            assert self.llm is not None, "LLM strategies are rejected at config time without a mutator"
            batch = [(requests[i].instruction, requests[i].strategy) for i in llm_indices]
            for index, proposal in zip(llm_indices, self.llm.mutate(batch, seed)):
                proposals[index] = proposal
        return [self._bounded(p) for p in proposals if p is not None]

    def recombine(self, pairs: Sequence[tuple[str, str]], seed: int) -> list[Proposal]:
        """One proposal per pair, in order (the configured recombination operator)."""
        if self.recombination == "none" or not pairs:
            return [Proposal.failed("disabled") for _ in pairs]
        if self.recombination == "rule":
            proposals = [rule_operators.recombine(first, second) for first, second in pairs]
        else:
            assert self.llm is not None
            proposals = self.llm.recombine(list(pairs), seed)
        return [self._bounded(p) for p in proposals]

    def _bounded(self, proposal: Proposal) -> Proposal:
        if proposal.instruction is not None and len(proposal.instruction.split()) > self.max_words:
            return Proposal.failed("too_long")
        return proposal
