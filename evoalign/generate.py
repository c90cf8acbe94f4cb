"""`evoalign generate`: batched generation from a prompts file with any model spec.

    evoalign generate --model smollm2 --input prompts.jsonl [--prompt_field instruction] [--condition refusal_prone]
                      [--n 1 --temperature 0 --max_new_tokens 128] [--output out.jsonl]

Each output row is the input row plus `responses` (text, log-prob sum, token count). Runs through the
response cache next to the output, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evoalign.config import parse_config
from evoalign.io import atomic_write_jsonl
from evoalign.models import SamplingParams, check_spec, load_model
from evoalign.prompts import check_condition, with_condition
from evoalign.sources import load_source


@dataclass
class GenerateConfig:
    """Generate responses for every prompt in a file."""

    model: str = dataclasses.field(
        default="smollm2", metadata={"help": "model spec: smollm2, hf:<path>, openai:<model>[@url]"}
    )
    input: str = dataclasses.field(default="", metadata={"help": "prompts file (.jsonl/.csv/.json) or hub dataset id"})
    prompt_field: str = dataclasses.field(default="instruction", metadata={"help": "column holding the prompt"})
    output: str = dataclasses.field(
        default="", metadata={"help": "output JSONL (default: <input stem>.responses.jsonl)"}
    )
    condition: str = dataclasses.field(
        default="default", metadata={"help": "prompt condition: default, safety_prior, refusal_prone"}
    )
    n: int = dataclasses.field(default=1, metadata={"help": "samples per prompt"})
    temperature: float = dataclasses.field(default=0.0, metadata={"help": "0 = greedy"})
    top_p: float = dataclasses.field(default=1.0, metadata={"help": "nucleus sampling mass"})
    max_new_tokens: int = dataclasses.field(default=128, metadata={"help": "longest response in tokens"})
    seed: int = dataclasses.field(default=0, metadata={"help": "sampling seed (per prompt and sample index)"})

    def validate(self, where: str) -> None:
        from evoalign.errors import ConfigError

        if not self.input:
            raise ConfigError(f"{where}: 'input' is required (a prompts file)")
        if not self.prompt_field:
            raise ConfigError(f"{where}: 'prompt_field' is empty")
        check_spec(self.model, f"{where}: 'model'")
        check_condition(self.condition, f"{where}: 'condition'")
        self.sampling(where)

    def sampling(self, where: str = "generate") -> SamplingParams:
        """The sampling parameters, checked (a ConfigError naming `where`)."""
        keys = ("n", "temperature", "top_p", "max_new_tokens", "seed")
        return SamplingParams.from_dict({key: getattr(self, key) for key in keys}, where)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(GenerateConfig, argv, prog="evoalign generate")
    rows = load_source({"path": config.input, "fields": {"prompt": config.prompt_field}}, required=("prompt",))
    output = Path(config.output or Path(config.input).with_suffix("").as_posix() + ".responses.jsonl")
    model = load_model(config.model, cache=output.parent / ".evoalign-cache.sqlite")
    params = config.sampling()
    samples = model.generate(with_condition([r["prompt"] for r in rows], config.condition), params, desc="generate")
    atomic_write_jsonl(
        output,
        (
            {**{k: v for k, v in row.items() if k != "_line"}, "responses": [s.to_dict() for s in row_samples]}
            for row, row_samples in zip(rows, samples)
        ),
    )
    print(f"wrote {len(rows)} rows x {config.n} samples to {output}")
    return 0
