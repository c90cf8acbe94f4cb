"""Classifier judge: any Hugging Face sequence-classification model, by hub id or local path.

The model reads the response alone (as the rejection classifier `protectai/distilroberta-base-rejection-v1`
that the EvoRefuse fitness uses does). `label_map` maps the model's own label names (from `config.id2label`,
or class indices) to ours; without it, names are read by keyword (`REJECTION`/`refusal` -> refusal,
`NORMAL`/`compliance` -> compliance, `partial` -> partial_refusal). `p_refusal` is the softmax mass on the
refusing classes; it counts as a calibrated probability (`calibrated`) only when you say so (`calibrated=True`,
after checking it against human labels, e.g. with `benchmarks/judges.py --judge`). Inputs are batched by length
and truncated at the model's maximum length. torch and transformers are imported only when a classifier is built.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from evoalign.errors import ConfigError, ModelError
from evoalign.judges.base import COMPLIANCE, PARTIAL, REFUSAL, JudgeItem, RefusalJudge, is_refusing

_KEYWORDS = ((PARTIAL, r"partial"), (REFUSAL, r"reject|refus|declin"), (COMPLIANCE, r"normal|compl|accept|answer"))
# Models whose position ids start after the padding index, so fewer positions than max_position_embeddings fit.
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "longformer")


def resolve_label_map(id2label: Mapping[int, str], label_map: Mapping[Any, str] | None) -> list[str]:
    """Our label for each of the model's classes, in class-index order."""
    ours = []
    for index in range(len(id2label)):
        name = str(id2label[index])
        if label_map is not None:
            label = label_map.get(name, label_map.get(index, label_map.get(str(index))))
        else:
            label = next((ours_ for ours_, pattern in _KEYWORDS if re.search(pattern, name, re.I)), None)
        if label is None:
            names = ", ".join(str(id2label[i]) for i in range(len(id2label)))
            raise ConfigError(f"classifier label '{name}' has no mapping; pass label_map for its labels ({names})")
        if label not in (COMPLIANCE, REFUSAL, PARTIAL):
            raise ConfigError(f"label_map maps '{name}' to '{label}'; use compliance, refusal or partial_refusal")
        ours.append(label)
    return ours


class ClassifierJudge(RefusalJudge):
    """Labels responses with a sequence classifier; `p_refusal` is its probability of the refusing classes."""

    def __init__(
        self,
        model: str,
        *,
        label_map: Mapping[Any, str] | None = None,
        batch_size: int = 32,
        max_length: int | None = None,
        device: str | None = None,
        calibrated: bool = False,
    ) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.model = AutoModelForSequenceClassification.from_pretrained(model)
        except (OSError, ValueError) as err:
            raise ModelError(f"cannot load classifier '{model}': {str(err).splitlines()[0]}") from None
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        self.labels = resolve_label_map(self.model.config.id2label, label_map)
        self.batch_size = batch_size
        self.max_length = max_length or self._model_max_length()
        self.name = f"classifier:{model}"
        self.calibrated = calibrated

    def _model_max_length(self) -> int:
        limits = []
        if 0 < self.tokenizer.model_max_length < 1_000_000:
            limits.append(self.tokenizer.model_max_length)
        config = self.model.config
        positions = getattr(config, "max_position_embeddings", None)
        if positions:
            if config.model_type in _OFFSET_POSITIONS:
                positions -= (config.pad_token_id or 0) + 1
            limits.append(positions)
        return min(limits) if limits else 512

    def judge(self, items: list[JudgeItem]) -> list[dict[str, Any]]:
        import torch

        order = sorted(range(len(items)), key=lambda index: len(items[index].response))
        results: list[dict[str, Any]] = [{} for _ in items]
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            encoded = self.tokenizer(
                [items[index].response for index in batch],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            with torch.no_grad():
                probabilities = self.model(**encoded).logits.float().softmax(dim=-1).cpu()
            for index, row in zip(batch, probabilities.tolist()):
                results[index] = self._result(row)
        return results

    def _result(self, probabilities: list[float]) -> dict[str, Any]:
        best = max(range(len(probabilities)), key=probabilities.__getitem__)
        p_refusal = sum(p for p, label in zip(probabilities, self.labels) if is_refusing(label))
        return {"label": self.labels[best], "p_refusal": min(1.0, max(0.0, p_refusal))}
