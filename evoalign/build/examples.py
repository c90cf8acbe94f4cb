"""The build stage's working unit, and the rows it becomes in the SFT and preference splits.

An `Example` is one instruction with the response we want a model to give (`answer`) and responses a target
actually gave that we do not want (`rejected`). The two kinds are mirror images:

- `benign`: a pseudo-malicious instruction the verifier judged benign; answer = a compliant response,
  rejected = the target's refusals;
- `safety`: a harmful instruction; answer = a refusal, rejected = compliant (harmful) responses.

SFT rows are (instruction, answer); preference rows are (instruction, answer, first rejected).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from evoalign.judges import COMPLIANCE, PARTIAL, REFUSAL
from evoalign.labels import BENIGN, SAFETY

# Judge labels of the response each kind should be trained to give, and of the responses it should not give
# (in order of preference for the rejected side of a pair).
WANTED_ANSWER = {BENIGN: COMPLIANCE, SAFETY: REFUSAL}
WANTED_REJECTED = {BENIGN: (REFUSAL, PARTIAL), SAFETY: (COMPLIANCE,)}


@dataclass
class Example:
    """One instruction on its way to the training sets (see the module docstring)."""

    instruction: str
    kind: str
    source: str
    verdict: str | None = None
    reason: str | None = None
    group: str | None = None  # rows evolved from the same seed share a group, so they share a split
    answer: str | None = None
    rejected: list[str] = field(default_factory=list)
    rejected_origin: str | None = None  # where rejected[0] came from: evolve, sampled, imported
    ches: float | None = None
    context: list[dict[str, str]] = field(default_factory=list)  # messages before the request (train_condition)
    category: str | None = None  # a safety row's harm category, from the harmful-prompt set (refusal tokens use it)

    @property
    def id(self) -> str:
        return hashlib.sha256(f"{self.kind}\n{self.instruction}".encode()).hexdigest()[:16]

    def prompt(self) -> list[dict[str, str]]:
        return [*self.context, {"role": "user", "content": self.instruction}]

    def sft_row(self) -> dict[str, Any]:
        """The `prompt`/`completion` row (conversational) of this example."""
        return {
            "id": self.id,
            "kind": self.kind,
            "source": self.source,
            "category": self.category,
            "prompt": self.prompt(),
            "completion": [{"role": "assistant", "content": self.answer}],
        }

    def pair_row(self) -> dict[str, Any]:
        """The `prompt`/`chosen`/`rejected` row (conversational) of this example."""
        return {
            "id": self.id,
            "kind": self.kind,
            "source": self.source,
            "prompt": self.prompt(),
            "chosen": [{"role": "assistant", "content": self.answer}],
            "rejected": [{"role": "assistant", "content": self.rejected[0]}],
            "ches": self.ches,
        }
