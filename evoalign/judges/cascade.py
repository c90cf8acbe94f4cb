"""Cascade judge: the trained `evoalign` judge first, an LLM judge only for the responses it is unsure about.

The first judge's `p_refusal` is calibrated, so it says how sure the judge is: a response whose `p_refusal` lies
inside `unsure` (default 0.2 to 0.8, both ends included) or that the first judge could not label goes to the
LLM judge, all of them in one batch; every
other response keeps the first judge's label. Each result says which judge labelled it in `source` (the first
judge's name, or `llm`). The LLM's `p_refusal` is not calibrated, so neither is the cascade's.
"""

from __future__ import annotations

from typing import Any

from evoalign.errors import ConfigError
from evoalign.judges.base import JudgeItem, RefusalJudge
from evoalign.judges.llm import LLMJudge
from evoalign.judges.trained import TrainedJudge
from evoalign.models.base import ChatModel

DEFAULT_UNSURE = (0.2, 0.8)


class CascadeJudge(RefusalJudge):
    """A calibrated judge for the clear cases, an LLM judge for the rest."""

    def __init__(
        self,
        llm: LLMJudge | ChatModel | str,
        *,
        first: RefusalJudge | None = None,
        unsure: tuple[float, float] = DEFAULT_UNSURE,
        **llm_options: Any,
    ) -> None:
        self.first = first or TrainedJudge()
        if not self.first.calibrated:
            raise ConfigError(
                f"cascade needs a first judge with a calibrated p_refusal to tell sure from unsure; "
                f"'{self.first.name}' is not calibrated"
            )
        low, high = unsure
        if not 0 <= low <= high <= 1:
            raise ConfigError(f"cascade 'unsure' must be two probabilities low <= high, got {unsure}")
        self.unsure = (low, high)
        self.llm = llm if isinstance(llm, LLMJudge) else LLMJudge(llm, **llm_options)
        self.name = f"cascade:{self.llm.model.spec}"

    @property
    def model(self) -> ChatModel:
        """The LLM judge's chat model, as on `LLMJudge` (for call counts)."""
        return self.llm.model

    def check(self) -> None:
        self.llm.check()

    def judge(self, items: list[JudgeItem]) -> list[dict[str, Any]]:
        results = [{**result, "source": self.first.name} for result in self.first.judge(items)]
        low, high = self.unsure
        unsure = [
            index
            for index, result in enumerate(results)
            if result["p_refusal"] is None or low <= result["p_refusal"] <= high
        ]
        if unsure:
            llm_results = self.llm.judge([items[index] for index in unsure])
            for index, result in zip(unsure, llm_results):
                results[index] = {**result, "source": "llm"}
        return results
