"""The README.md written next to a trained adapter: what it is, how it was trained, what it scored.

It names the base model, data, exact command, hyper-parameters, tokenizer fix and final metrics, and
says how to load the adapter with the same tokenizer (chat template, pad and end-of-turn tokens) that
training used. The Hub metadata header is huggingface_hub's `ModelCardData`, the card a `ModelCard`. Values pass
through `scrub_secrets`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evoalign.io import atomic_write_text
from evoalign.runinfo import package_versions
from evoalign.secrets import scrub_secrets

_TASK_TITLES = {"sft": "supervised fine-tuning (SFT)", "dpo": "direct preference optimisation (DPO)"}


def _table(rows: dict[str, Any], header: tuple[str, str]) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "| --- | --- |"]
    for key, value in rows.items():
        shown = f"{value:.6g}" if isinstance(value, float) else value if isinstance(value, int) else f"`{value}`"
        lines.append(f"| {key} | {shown} |")
    return "\n".join(lines)


def _card_data(base_model: str, task: str, is_adapter: bool) -> Any:
    from huggingface_hub import ModelCardData

    return ModelCardData(
        base_model=base_model if "/" in base_model and not Path(base_model).exists() else None,
        library_name="peft" if is_adapter else "transformers",
        pipeline_tag="text-generation",
        tags=["evoalign", "over-refusal", task, "trl", *(["lora"] if is_adapter else [])],
    )


def render_model_card(
    *,
    name: str,
    path: str,
    task: str,
    base_model: str,
    dataset: str,
    command: str,
    hyperparameters: dict[str, Any],
    metrics: dict[str, Any],
    tokenizer_fix: str,
    is_adapter: bool = True,
) -> str:
    """Markdown of the model card (the Hub metadata header, then the sections)."""
    from huggingface_hub import ModelCard

    hyperparameters, metrics = scrub_secrets(hyperparameters), scrub_secrets(metrics)
    loader = "AutoPeftModelForCausalLM" if is_adapter else "AutoModelForCausalLM"
    package = "peft" if is_adapter else "transformers"
    versions = "\n".join(
        f"- {package_name}: {version or 'not installed'}" for package_name, version in package_versions().items()
    )
    body = f"""
# {name}

{"A LoRA adapter for" if is_adapter else "A fine-tune of"} `{base_model}` trained by evoalign's {_TASK_TITLES[task]}
recipe to reduce over-refusal: refusing harmless requests that only look harmful.

## Training

- Command: `{scrub_secrets(command)}`
- Data: `{dataset}`
- Tokenizer: {tokenizer_fix}. The chat template is the base model's, unchanged.

{_table(hyperparameters, ("hyper-parameter", "value"))}

## Results

{_table(metrics, ("metric", "value")) if metrics else "No metrics were recorded."}

Lower loss does not mean less over-refusal: measure refusal on benign-but-scary prompts and on truly
harmful prompts with the evaluation stage (`eval/run.py`) before using this model.

## Use

```python
from {package} import {loader}
from transformers import AutoTokenizer

model = {loader}.from_pretrained("{path}")
tokenizer = AutoTokenizer.from_pretrained("{path}")  # same chat template, pad and end-of-turn tokens as training
```

## Framework versions

{versions}
"""
    return str(ModelCard(f"---\n{_card_data(base_model, task, is_adapter).to_yaml()}\n---\n{body}"))


def write_model_card(output_dir: str | Path, **fields: Any) -> Path:
    """Write README.md into `output_dir`; `fields` are those of `render_model_card`."""
    path = Path(output_dir) / "README.md"
    atomic_write_text(path, render_model_card(**fields))
    return path
