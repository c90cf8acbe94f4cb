"""The SFT and DPO recipes as library functions; `recipes/sft.py` and `recipes/dpo.py` are thin scripts over them.

Both recipes share everything but their TRL trainer and config classes: the tokenizer fix, data checks,
LoRA/QLoRA from `ModelConfig`, resume, metrics and model card (see `evoalign.train.run`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evoalign.config import ConfigParser
from evoalign.train import refusal_tokens
from evoalign.train.configs import DPOConfig, DPOScriptArguments, SFTConfig, SFTScriptArguments
from evoalign.train.run import PreparedRun, prepare_run, train_and_save

TASKS: dict[str, tuple[type, type, str]] = {
    "sft": (SFTScriptArguments, SFTConfig, "SFTTrainer"),
    "dpo": (DPOScriptArguments, DPOConfig, "DPOTrainer"),
}


def build_trainer(task: str, script_args: Any, training_args: Any, model_args: Any) -> tuple[Any, PreparedRun]:
    """The trainer a recipe runs: fixed tokenizer, checked data, LoRA/QLoRA from the model arguments."""
    import trl

    run = prepare_run(task, script_args, training_args, model_args)
    model, peft_config = model_args.model_name_or_path, trl.get_peft_config(model_args)
    quantization_config = trl.get_quantization_config(model_args)
    if run.refusal_tokens is not None:  # loaded here: the embeddings grow before PEFT wraps the model
        setup = run.refusal_tokens
        model = refusal_tokens.load_model(model, training_args, quantization_config, run.tokenizer, setup, peft_config)
        quantization_config = None
    trainer_class = getattr(trl, TASKS[task][2])
    trainer = trainer_class(
        model=model,
        args=training_args,
        train_dataset=run.train_dataset,
        eval_dataset=run.eval_dataset,
        processing_class=run.tokenizer,
        callbacks=run.callbacks,
        peft_config=peft_config,
        quantization_config=quantization_config,
    )
    if run.refusal_tokens is not None:
        refusal_tokens.finish_wrapped_model(trainer.model)
        refusal_tokens.give_token_rows_their_learning_rate(trainer, script_args.refusal_token_learning_rate)
    return trainer, run


def train(task: str, script_args: Any, training_args: Any, model_args: Any) -> dict[str, float]:
    """Train and save an adapter; returns the train (and eval) metrics."""
    trainer, run = build_trainer(task, script_args, training_args, model_args)
    return train_and_save(trainer, run, script_args, model_args)


def make_parser(task: str) -> ConfigParser:
    """The recipe's parser: TRL's script, training and model arguments, checked by TRL's own classes."""
    from trl import ModelConfig

    script_class, config_class, _ = TASKS[task]
    return ConfigParser((script_class, config_class, ModelConfig), prog=f"evoalign {task}", check_types=False)


def run_cli(task: str, argv: Sequence[str] | None = None) -> int:
    """`evoalign sft|dpo --config FILE.yaml [--key value ...]`, the same as the recipe scripts."""
    train(task, *make_parser(task).parse_args_and_config(argv))
    return 0


def sft_cli(argv: Sequence[str] | None = None) -> int:
    return run_cli("sft", argv)


def dpo_cli(argv: Sequence[str] | None = None) -> int:
    return run_cli("dpo", argv)
