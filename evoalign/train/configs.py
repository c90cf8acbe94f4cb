"""Config dataclasses for the recipes, in the TRL 1.x shape.

`TrlParser((SFTScriptArguments, SFTConfig, ModelConfig))` reads a recipe YAML as defaults and flags as
overrides, exactly like TRL's own scripts. The classes here subclass TRL's and add only evoalign's
fields, each with `help`:

- the split names default to the build stage's (`train_sft`/`test_sft`, `train_prefs`/`test_prefs`);
- `tokenizer_pad_token` / `end_of_turn_token` pin the tokenizer fixes (chosen automatically otherwise);
- `global_batch_size` keeps the effective batch fixed whatever the number of processes;
- `refusal_tokens` (SFT) trains refusal/respond control tokens (`evoalign.train.refusal_tokens`);
- `to_dict` (what wandb and tensorboard log) has every secret scrubbed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import trl

from evoalign.errors import ConfigError
from evoalign.secrets import scrub_secrets


@dataclass
class _TokenizerFields:
    tokenizer_pad_token: str | None = field(
        default=None,
        metadata={
            "help": "Padding token; must be in the vocabulary and differ from EOS and the end-of-turn token. When "
            "unset, an unused pad token is picked (Llama-3.1: <|finetune_right_pad_id|>)."
        },
    )
    end_of_turn_token: str | None = field(
        default=None,
        metadata={
            "help": "Token that ends an assistant turn (Llama-3.1: <|eot_id|>). When unset, it is read from the chat "
            "template; when set, it must match the template. It becomes the tokenizer's EOS so generation stops there."
        },
    )


@dataclass
class SFTScriptArguments(_TokenizerFields, trl.ScriptArguments):
    """Script arguments of `recipes/sft.py`: where the data is and how to fix the tokenizer."""

    dataset_train_split: str = field(default="train_sft", metadata={"help": "Split to train on."})
    dataset_test_split: str = field(default="test_sft", metadata={"help": "Split to evaluate on."})
    refusal_tokens: str = field(
        default="none",
        metadata={
            "help": "Refusal tokens (Jain et al., arXiv 2412.06748): 'single' starts every refusal (rows of kind "
            "safety) with <|refuse|> and every other answer with <|respond|>; 'per_category' uses one "
            "<|refuse:CATEGORY|> per value of the rows' 'category' column instead. The tokens are added to the "
            "tokenizer, their embedding rows trained and saved with the adapter; at inference the hf model options "
            "refusal_bias / refusal_threshold set the refusal rate. 'none' trains on the rows as they are.",
            "choices": ["none", "single", "per_category"],
        },
    )
    refusal_token_learning_rate: float = field(
        default=5.0e-3,
        metadata={
            "help": "Learning rate of the control tokens' output-embedding rows, their logits (their input rows and "
            "the rest train at learning_rate). Each new row starts as a copy of a word's ('Sorry', 'Sure'), so until "
            "it moves the model cannot tell the token from the word; at a LoRA learning rate it hardly moves in a "
            "short run (docs/training.md). 0: the same as learning_rate. LoRA runs only (full fine-tuning trains "
            "the whole embedding).",
        },
    )


@dataclass
class DPOScriptArguments(_TokenizerFields, trl.ScriptArguments):
    """Script arguments of `recipes/dpo.py`: where the preference data is and how to fix the tokenizer."""

    dataset_train_split: str = field(default="train_prefs", metadata={"help": "Split to train on."})
    dataset_test_split: str = field(default="test_prefs", metadata={"help": "Split to evaluate on."})


@dataclass
class _EvoalignTrainingFields:
    global_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Effective batch size (per_device_train_batch_size x processes x gradient_accumulation_steps). "
            "When set, gradient_accumulation_steps is derived from it, so one recipe gives the same optimisation on "
            "1 or 8 GPUs. Set it to null to control gradient_accumulation_steps by hand."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.global_batch_size is not None:
            self.gradient_accumulation_steps = accumulation_steps(
                self.global_batch_size, self.per_device_train_batch_size, self.world_size
            )

    def to_dict(self) -> dict[str, Any]:
        """The logged config (wandb, tensorboard, trainer state), with every secret redacted."""
        return scrub_secrets(super().to_dict())


@dataclass
class SFTConfig(_EvoalignTrainingFields, trl.SFTConfig):
    """TRL's `SFTConfig` plus `global_batch_size`, with secrets scrubbed from the logged config."""


@dataclass
class DPOConfig(_EvoalignTrainingFields, trl.DPOConfig):
    """TRL's `DPOConfig` plus `global_batch_size`, with secrets scrubbed from the logged config."""


@dataclass
class MergeArguments:
    """Arguments of `recipes/merge.py`: fold a LoRA adapter into its base model and save a full model."""

    adapter_path: str = field(metadata={"help": "Folder written by recipes/sft.py or recipes/dpo.py (the adapter)."})
    output_dir: str = field(metadata={"help": "Where to write the merged model and its tokenizer."})
    base_model: str | None = field(
        default=None,
        metadata={"help": "Base model spec or path; defaults to the base recorded in the adapter's config."},
    )
    dtype: str = field(
        default="bfloat16",
        metadata={
            "help": "Dtype of the merged weights. The base is loaded unquantized even for a QLoRA adapter.",
            "choices": ["bfloat16", "float16", "float32"],
        },
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow models that ship custom code."})


def accumulation_steps(global_batch_size: int, per_device_batch_size: int, world_size: int) -> int:
    """Gradient accumulation that makes `per_device x world_size x steps == global_batch_size`, or a ConfigError."""
    per_step = per_device_batch_size * world_size
    if global_batch_size < per_step or global_batch_size % per_step:
        raise ConfigError(
            f"global_batch_size {global_batch_size} is not a multiple of per_device_train_batch_size "
            f"{per_device_batch_size} x {world_size} process(es) = {per_step}"
        )
    return global_batch_size // per_step
