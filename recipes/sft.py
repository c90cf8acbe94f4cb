"""Supervised fine-tuning with LoRA/QLoRA on the build stage's prompt/completion conversations.

    accelerate launch recipes/sft.py --config recipes/llama-3.1-8b-instruct/sft/config_lora.yaml
    accelerate launch --config_file recipes/accelerate_configs/multi_gpu.yaml recipes/sft.py \
        --config recipes/llama-3.1-8b-instruct/sft/config_lora.yaml --learning_rate 1e-5

The YAML sets defaults and flags override them (TRL's `TrlParser`). A run resumes from the last
checkpoint in `output_dir`, and leaves the adapter, tokenizer, metrics and a model card there.
"""

from __future__ import annotations

import sys

from evoalign.errors import run_main
from evoalign.train import recipes


def build_trainer(script_args, training_args, model_args):
    """The SFTTrainer this recipe runs, and the prepared run (tokenizer, data, callbacks)."""
    return recipes.build_trainer("sft", script_args, training_args, model_args)


def main(script_args, training_args, model_args) -> dict[str, float]:
    """Train and save the adapter; returns the train (and eval) metrics."""
    return recipes.train("sft", script_args, training_args, model_args)


def make_parser():
    return recipes.make_parser("sft")


if __name__ == "__main__":
    sys.exit(run_main(lambda argv: main(*make_parser().parse_args_and_config(argv))))
