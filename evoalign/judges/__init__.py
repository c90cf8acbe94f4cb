"""Refusal judges and the harmfulness verifier.

`get_judge(spec, **options)` resolves a judge by name: `evoalign` (the default: a calibrated classifier over
lexical features of prompt and response, trained on human labels), the `evoalign-rules`, `xstest` and `evorefuse`
string rules, `llm:<model spec>`, `classifier:<hf id or path>` and `cascade:<model spec>`. Every judge has
`classify(items) -> list[dict]` over `{prompt, response}` items, and says with `calibrated` whether its
`p_refusal` is a probability. Verifiers (`evoalign.judges.verifiers`) judge instructions as benign,
controversial or harmful: `get_verifier(spec)` builds the `rules` lexicon guard or an ensemble of chat models
(`HarmfulnessVerifier`). Importing this package does not import
torch: model-backed judges load their backends when they are built.
"""

from __future__ import annotations

from typing import Any

from evoalign.judges.base import (
    COMPLIANCE,
    LABELS,
    PARTIAL,
    REFUSAL,
    UNKNOWN,
    JudgeItem,
    RefusalJudge,
    get_judge,
    is_refusing,
    judge_names,
    register_judge,
)
from evoalign.judges.cascade import CascadeJudge
from evoalign.judges.llm import LLMJudge
from evoalign.judges.metrics import agreement, summarize
from evoalign.judges.rules import EvoalignRules, EvoRefuseRules, RuleJudge, XSTestRules
from evoalign.judges.trained import TrainedJudge
from evoalign.judges.verifiers import HarmfulnessVerifier, RuleVerifier, Verifier, get_verifier

__all__ = [
    "COMPLIANCE",
    "LABELS",
    "PARTIAL",
    "REFUSAL",
    "UNKNOWN",
    "CascadeJudge",
    "EvoRefuseRules",
    "EvoalignRules",
    "HarmfulnessVerifier",
    "JudgeItem",
    "LLMJudge",
    "RefusalJudge",
    "RuleJudge",
    "RuleVerifier",
    "Verifier",
    "TrainedJudge",
    "XSTestRules",
    "agreement",
    "get_judge",
    "get_verifier",
    "is_refusing",
    "judge_names",
    "register_judge",
    "summarize",
]


def _classifier(model: str, **options: Any) -> RefusalJudge:
    from evoalign.judges.classifier import ClassifierJudge

    return ClassifierJudge(model, **options)


register_judge("xstest", XSTestRules)
register_judge("evorefuse", EvoRefuseRules)
register_judge("evoalign", TrainedJudge)
register_judge("evoalign-rules", EvoalignRules)
register_judge("llm", LLMJudge, takes_argument=True)
register_judge("cascade", CascadeJudge, takes_argument=True)
register_judge("classifier", _classifier, takes_argument=True)
