"""Direct preference optimisation with LoRA/QLoRA on the build stage's prompt/chosen/rejected pairs.

    accelerate launch recipes/dpo.py --config recipes/llama-3.1-8b-instruct/dpo/config_lora.yaml

To start from an SFT adapter, merge it first (TRL refuses a PeftModel together with a peft_config):

    python recipes/merge.py --adapter_path runs/llama-sft --output_dir runs/llama-sft-merged
    accelerate launch recipes/dpo.py --config recipes/llama-3.1-8b-instruct/dpo/config_lora.yaml \
        --model_name_or_path runs/llama-sft-merged

The reference model is the base with the adapter disabled, so no second copy of the model is loaded.
"""

from __future__ import annotations

import sys

from evoalign.errors import run_main
from evoalign.train import recipes


def build_trainer(script_args, training_args, model_args):
    """The DPOTrainer this recipe runs, and the prepared run (tokenizer, data, callbacks)."""
    return recipes.build_trainer("dpo", script_args, training_args, model_args)


def main(script_args, training_args, model_args) -> dict[str, float]:
    """Train and save the adapter; returns the train (and eval) metrics."""
    return recipes.train("dpo", script_args, training_args, model_args)


def make_parser():
    return recipes.make_parser("dpo")


if __name__ == "__main__":
    sys.exit(run_main(lambda argv: main(*make_parser().parse_args_and_config(argv))))
