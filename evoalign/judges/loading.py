"""A stage's refusal judge, built through the stage's model pool.

A model-backed judge (`llm:<spec>`, `cascade:<spec>`) gets its chat model from the pool, so its calls go through
the run's response cache, are counted under the `judge` role, and a model that another role also uses is loaded
once. Every other judge comes from the registry (`get_judge`).
"""

from __future__ import annotations

from typing import Any

from evoalign.errors import ConfigError
from evoalign.judges.base import RefusalJudge, get_judge, split_judge_spec
from evoalign.judges.cascade import CascadeJudge
from evoalign.judges.llm import LLMJudge
from evoalign.models import check_spec
from evoalign.models.pool import ModelPool

MODEL_JUDGES: dict[str, Any] = {"llm": LLMJudge, "cascade": CascadeJudge}


def check_judge(spec: Any, where: str) -> None:
    """ConfigError naming `where` for a judge spec that names no judge, or a model-backed judge whose model spec
    is malformed; nothing is loaded."""
    try:
        name, argument = split_judge_spec(spec)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    if name in MODEL_JUDGES:
        check_spec(argument, f"{where}: judge '{name}'")


def judge_model_spec(spec: str) -> str | None:
    """The chat model spec a model-backed judge names (None for the others)."""
    name, _, argument = spec.partition(":")
    return argument if name in MODEL_JUDGES and argument else None


def load_judge(spec: str, pool: ModelPool, *, cached: bool = True) -> RefusalJudge:
    """The judge `spec` names, its chat model (if any) served by `pool` as role `judge`."""
    model_spec = judge_model_spec(spec)
    if model_spec is None:
        return get_judge(spec)
    return MODEL_JUDGES[spec.partition(":")[0]](pool.get(model_spec, "judge", cached=cached))
