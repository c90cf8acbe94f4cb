"""Trainer callbacks shared by the recipes.

`RunConfigCallback` records the whole run configuration (script, model and training arguments, the
tokenizer fix, package versions, the command line) once training starts: as `run_config.json` in the
output folder, and in the wandb run config next to what transformers' own callback logs. It also
rewrites each checkpoint's `training_args.bin` (a pickle of the arguments that transformers saves)
without credentials. Every value goes through `scrub_secrets` first.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from evoalign.io import atomic_write_json
from evoalign.secrets import is_secret_key, scrub_secrets

TRAINING_ARGS_FILE = "training_args.bin"


def scrubbed_arguments(args: TrainingArguments) -> TrainingArguments:
    """A shallow copy of `args` with secret fields emptied and secrets inside other fields redacted."""
    clean = copy.copy(args)
    for field in dataclasses.fields(args):
        value = getattr(args, field.name)
        if is_secret_key(field.name) and value:
            setattr(clean, field.name, None)
        elif isinstance(value, (dict, list, str)):
            setattr(clean, field.name, scrub_secrets(value))
    return clean


def save_scrubbed_arguments(args: TrainingArguments, folder: str | Path) -> None:
    """Overwrite `folder/training_args.bin` with the scrubbed arguments."""
    import torch

    torch.save(scrubbed_arguments(args), Path(folder) / TRAINING_ARGS_FILE)


class RunConfigCallback(TrainerCallback):
    """Write `run_config.json`, add evoalign's arguments to the wandb config and scrub saved arguments."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = scrub_secrets(config)

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero:
            return
        atomic_write_json(Path(args.output_dir) / "run_config.json", self.config)
        if "wandb" in (args.report_to or []):
            import wandb

            if wandb.run is not None:
                wandb.config.update({"evoalign": self.config}, allow_val_change=True)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        checkpoint = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if state.is_world_process_zero and (checkpoint / TRAINING_ARGS_FILE).is_file():
            save_scrubbed_arguments(args, checkpoint)
