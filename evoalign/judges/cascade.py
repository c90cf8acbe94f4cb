"""Cascade judge: the `evoalign` string rules first, an LLM judge only for what the rules cannot decide.

The rules are sure about most responses (a clear opening refusal, a plain answer with no refusal vocabulary)
and send the rest (late refusals, redirections, partial refusals, answers full of apologies or policy words) to
the LLM judge in one batch. Each result says which judge labelled it in `source` (`rules` or `llm`).
"""

from __future__ import annotations

from typing import Any

from evoalign.judges.base import JudgeItem, RefusalJudge
from evoalign.judges.llm import LLMJudge
from evoalign.judges.rules import EvoalignRules
from evoalign.models.base import ChatModel


class CascadeJudge(RefusalJudge):
    """Rules for the easy cases, an LLM judge for the rest."""

    def __init__(
        self, llm: LLMJudge | ChatModel | str, *, rules: EvoalignRules | None = None, **llm_options: Any
    ) -> None:
        self.llm = llm if isinstance(llm, LLMJudge) else LLMJudge(llm, **llm_options)
        self.rules = rules or EvoalignRules()
        self.name = f"cascade:{self.llm.model.spec}"

    @property
    def model(self) -> ChatModel:
        """The LLM judge's chat model, as on `LLMJudge` (for call counts)."""
        return self.llm.model

    def check(self) -> None:
        self.llm.check()

    def judge(self, items: list[JudgeItem]) -> list[dict[str, Any]]:
        results = [{**result, "source": "rules"} for result in self.rules.judge(items)]
        undecided = [index for index, result in enumerate(results) if not result["decided"]]
        if undecided:
            llm_results = self.llm.judge([items[index] for index in undecided])
            for index, result in zip(undecided, llm_results):
                results[index] = {**result, "source": "llm"}
        return results
