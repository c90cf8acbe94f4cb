"""The configuration of `recipes/ablate.py`: prompt sets, the method and its candidate grid, the validation rule."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evoalign.benchmarks import BENCHMARKS, check_suite
from evoalign.errors import ConfigError
from evoalign.judges.loading import check_judge
from evoalign.models import check_spec
from evoalign.prompts import check_condition

SUITE_HELP = (
    "A prompt suite in eval's benchmark form: a list of registered names, or a mapping name -> {path, kind, fields: "
    "{prompt: COLUMN}, filter, limit}."
)
FIT_SETS = ("harmful", "harmless", "pseudo_harmful")
VALIDATION_SETS = ("validation_benign", "validation_harmful")


@dataclass
class AblationConfig:
    """Fit the false-refusal direction, choose its layer, position and orthogonalisation on validation, save."""

    output_dir: str = field(
        metadata={"help": "Folder for the edited model (an ordinary model folder) and the report."}
    )
    model: Any = field(default="smollm2", metadata={"help": "Model spec to edit (smollm2, hf:<folder or hub id>)."})
    condition: Any = field(
        default="default",
        metadata={"help": "Prompt condition the model is used behind (activations and validation both use it)."},
    )
    harmful: Any = field(
        default=None, metadata={"help": "Harmful training prompts (true-refusal side). " + SUITE_HELP}
    )
    harmless: Any = field(default=None, metadata={"help": "Ordinary training prompts (the baseline). " + SUITE_HELP})
    pseudo_harmful: Any = field(
        default=None, metadata={"help": "Harmless-but-scary training prompts (evolved rows, seeds). " + SUITE_HELP}
    )
    validation_benign: Any = field(
        default=None, metadata={"help": "Benign validation prompts, none of them fitted on. " + SUITE_HELP}
    )
    validation_harmful: Any = field(
        default=None, metadata={"help": "Harmful validation prompts, none of them fitted on. " + SUITE_HELP}
    )
    layers: list[int] = field(
        default_factory=list,
        metadata={
            "help": "Candidate layers (l = the residual stream entering block l, 0 = embeddings); empty: 1 to the last block."
        },
    )
    positions: list[int] = field(
        default_factory=lambda: [-1], metadata={"help": "Candidate token positions from the end of the prompt."}
    )
    strengths: list[float] = field(
        default_factory=lambda: [1.0, 0.5, 0.0],
        metadata={"help": "Candidate partial-orthogonalisation strengths (1: fully orthogonal to true refusal)."},
    )
    method: str = field(
        default="ablation",
        metadata={
            "help": "ablation: the false-refusal direction removed for every request (a weight edit); probe: "
            "the refusal direction removed only where a harmfulness probe finds the request harmless.",
            "choices": ["ablation", "probe"],
        },
    )
    probe_layers: list[int] = field(
        default_factory=list, metadata={"help": "Probe method: candidate probe layers; empty: the same as 'layers'."}
    )
    thresholds: list[float] = field(
        default_factory=lambda: [0.3, 0.5, 0.7],
        metadata={"help": "Probe method: candidate thresholds; requests with P(harmful) below one are steered."},
    )
    max_harmful_drop: float = field(
        default=5.0,
        metadata={
            "help": "The rule: a candidate qualifies if its validation harmful refusal is at most this many "
            "points below the base's; the qualifying one with the lowest benign refusal wins."
        },
    )
    filter_fit: bool = field(
        default=False,
        metadata={
            "help": "The paper's filter on the fitting prompts: keep the harmful and pseudo-harmful ones the model "
            "refuses and the harmless ones it answers (greedy answers, the judge's verdicts), so each mean is over "
            "the behaviour its direction stands for."
        },
    )
    judge: str = field(default="evoalign", metadata={"help": "Refusal judge for the validation answers."})
    max_new_tokens: int = field(default=48, metadata={"help": "Greedy tokens generated per validation prompt."})
    batch_size: int = field(default=32, metadata={"help": "Prompts per forward pass."})
    seed: int = field(default=0, metadata={"help": "Seed of the suites' `limit` subsamples."})
    benchmark_dir: str | None = field(
        default=None, metadata={"help": "Local folder holding registered benchmarks' published files."}
    )
    dtype: str = field(
        default="auto",
        metadata={
            "help": "Dtype of the model and the saved edit.",
            "choices": ["auto", "bfloat16", "float16", "float32"],
        },
    )

    def validate(self, where: str) -> None:
        """ConfigError naming `where` and the key for a missing or malformed setting; nothing is loaded."""
        check_spec(self.model, f"{where}: 'model'")
        check_condition(self.condition, f"{where}: 'condition'")
        check_judge(self.judge, f"{where}: 'judge'")
        for name in FIT_SETS + VALIDATION_SETS:
            value = getattr(self, name)
            if value is None:
                raise ConfigError(f"{where}: '{name}' is required")
            check_suite(value, f"{where}: '{name}'")
        for name in FIT_SETS:
            registered = [n for n in getattr(self, name) if n in BENCHMARKS]
            if registered:
                raise ConfigError(
                    f"{where}: '{name}' names the evaluation benchmark '{registered[0]}'; directions are fitted on "
                    "training prompts only"
                )
        if any(position >= 0 for position in self.positions) or not self.positions:
            raise ConfigError(
                f"{where}: 'positions' are negative (counted from the prompt's end), got {self.positions}"
            )
        if not self.strengths or any(not 0 <= s <= 1 for s in self.strengths):
            raise ConfigError(f"{where}: 'strengths' are in [0, 1], got {self.strengths}")
        if self.method not in ("ablation", "probe"):
            raise ConfigError(f"{where}: 'method' is ablation or probe, got {self.method!r}")
        if not self.thresholds or any(not 0 < t < 1 for t in self.thresholds):
            raise ConfigError(f"{where}: 'thresholds' are in (0, 1), got {self.thresholds}")
        if any(layer < 0 for layer in self.layers + self.probe_layers):
            raise ConfigError(f"{where}: 'layers' are >= 0, got {self.layers}")
        if self.max_harmful_drop < 0 or self.max_new_tokens < 1 or self.batch_size < 1:
            raise ConfigError(f"{where}: 'max_harmful_drop' >= 0, 'max_new_tokens' and 'batch_size' >= 1")
