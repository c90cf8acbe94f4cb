"""The flow that `recipes/sft.py` and `recipes/dpo.py` share around their TRL trainer.

`prepare_run` resolves the model spec, loads and fixes the tokenizer, loads and checks the splits and
builds the callbacks; the script then builds its trainer; `train_and_save` resumes from the last
checkpoint in `output_dir` when there is one, trains, saves train/eval metrics, the trainer state, the
adapter with its tokenizer, and the model card.
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evoalign.errors import ConfigError
from evoalign.runinfo import package_versions
from evoalign.train.callbacks import RunConfigCallback, save_scrubbed_arguments
from evoalign.train.data import DPO_COLUMNS, SFT_COLUMNS, load_splits
from evoalign.train.model_card import write_model_card
from evoalign.train.models import resolve_model_path
from evoalign.train.refusal_tokens import RefusalTokenSetup, apply_to_splits
from evoalign.train.tokenizer import TokenizerFix, align_model_with_tokenizer, fix_tokenizer

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase, Trainer, TrainerCallback, TrainingArguments
    from trl import ModelConfig

logger = logging.getLogger("evoalign.train")

_COLUMNS = {"sft": SFT_COLUMNS, "dpo": DPO_COLUMNS}
_CARD_FIELDS = (
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "lr_scheduler_type",
    "warmup_steps",
    "max_length",
    "bf16",
    "gradient_checkpointing",
    "seed",
    "beta",
    "loss_type",
    "loss_weights",
)
_CARD_MODEL_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "load_in_4bit", "dtype")


@dataclass
class PreparedRun:
    """Everything a recipe needs to build its trainer."""

    task: str
    model_spec: str
    tokenizer: PreTrainedTokenizerBase
    tokenizer_fix: TokenizerFix
    train_dataset: Dataset
    eval_dataset: Dataset | None
    callbacks: list[TrainerCallback]
    refusal_tokens: RefusalTokenSetup | None = None  # SFT with refusal tokens: the model must learn their rows


def _setup_logging(training_args: TrainingArguments) -> None:
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if training_args.process_index == 0 else logging.WARNING)


def _model_init_kwargs(model_args: ModelConfig, training_args: TrainingArguments) -> dict[str, Any]:
    kwargs = {
        "revision": model_args.model_revision,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
    }
    return {**kwargs, **(training_args.model_init_kwargs or {})}


def _load_tokenizer(path: str, model_args: ModelConfig, training_args: TrainingArguments) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(
        path, revision=model_args.model_revision, trust_remote_code=training_args.trust_remote_code
    )


def _run_config(
    task: str,
    spec: str,
    fix: TokenizerFix,
    script_args: Any,
    training_args: TrainingArguments,
    model_args: ModelConfig,
) -> dict[str, Any]:
    return {
        "task": task,
        "model_spec": spec,
        "command": shlex.join(sys.argv),
        "script_args": dataclasses.asdict(script_args),
        "model_args": dataclasses.asdict(model_args),
        "training_args": training_args.to_dict(),
        "tokenizer_fix": dataclasses.asdict(fix),
        "versions": package_versions(),
    }


def _fixed_tokenizer(
    script_args: Any, training_args: TrainingArguments, model_args: ModelConfig
) -> tuple[PreTrainedTokenizerBase, TokenizerFix]:
    """The model's tokenizer with pad and end of turn fixed; SFT's `eos_token` follows the end of turn."""
    tokenizer = _load_tokenizer(model_args.model_name_or_path, model_args, training_args)
    end_of_turn = script_args.end_of_turn_token or getattr(training_args, "eos_token", None)
    fix = fix_tokenizer(tokenizer, pad_token=script_args.tokenizer_pad_token, end_of_turn=end_of_turn)
    if hasattr(training_args, "eos_token"):
        training_args.eos_token = fix.end_of_turn  # SFTTrainer mirrors it onto the model's configs
    return tokenizer, fix


def _load_data(task: str, script_args: Any, training_args: TrainingArguments) -> tuple[Dataset, Dataset | None]:
    """The train split, and the test split when evaluation is on."""
    evaluate = training_args.eval_strategy != "no"
    splits = [script_args.dataset_train_split, *([script_args.dataset_test_split] if evaluate else [])]
    data = load_splits(
        script_args.dataset_name,
        splits,
        _COLUMNS[task],
        config=script_args.dataset_config,
        streaming=script_args.dataset_streaming,
    )
    return data[script_args.dataset_train_split], data[script_args.dataset_test_split] if evaluate else None


def prepare_run(task: str, script_args: Any, training_args: TrainingArguments, model_args: ModelConfig) -> PreparedRun:
    """Resolve the model, fix the tokenizer, load the splits; `model_args.model_name_or_path` becomes a path."""
    _setup_logging(training_args)
    spec = model_args.model_name_or_path
    if not spec:
        raise ConfigError("model_name_or_path is required (a Hub id, a local folder, or a spec such as smollm2)")
    if not script_args.dataset_name:
        raise ConfigError("dataset_name is required (the build stage's output folder, a JSONL file or a Hub id)")
    model_args.model_name_or_path = resolve_model_path(spec)
    training_args.model_init_kwargs = _model_init_kwargs(model_args, training_args)
    tokenizer, fix = _fixed_tokenizer(script_args, training_args, model_args)
    logger.info("model %s -> %s; tokenizer %s", spec, model_args.model_name_or_path, fix.describe())
    train_dataset, eval_dataset = _load_data(task, script_args, training_args)
    refusal = None
    if getattr(script_args, "refusal_tokens", "none") != "none":
        splits = {"train": train_dataset, "test": eval_dataset}
        splits, refusal = apply_to_splits(script_args.refusal_tokens, tokenizer, splits, script_args.dataset_name)
        train_dataset, eval_dataset = splits["train"], splits["test"]
    config = _run_config(task, spec, fix, script_args, training_args, model_args)
    config["refusal_tokens"] = refusal.describe() if refusal else None
    return PreparedRun(
        task=task,
        model_spec=spec,
        tokenizer=tokenizer,
        tokenizer_fix=fix,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        callbacks=[RunConfigCallback(config)],
        refusal_tokens=refusal,
    )


def find_checkpoint(training_args: TrainingArguments) -> str | None:
    """The checkpoint to resume from: the one named, else the last one in `output_dir`, else None.

    `resume_from_checkpoint` may be a folder, unset (resume when a checkpoint exists), `true` (a checkpoint
    must exist) or `false` (start afresh even when checkpoints exist).
    """
    from transformers.trainer_utils import get_last_checkpoint

    asked = str(training_args.resume_from_checkpoint or "").strip()
    if asked.lower() == "false":
        return None
    if asked and asked.lower() != "true":
        return asked
    output_dir = Path(training_args.output_dir)
    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if asked and last is None:
        raise ConfigError(f"resume_from_checkpoint is true but {output_dir} holds no checkpoint-* folder")
    return last


def _card_hyperparameters(training_args: TrainingArguments, model_args: ModelConfig) -> dict[str, Any]:
    rows = {name: getattr(training_args, name) for name in _CARD_FIELDS if hasattr(training_args, name)}
    rows["effective_batch_size"] = (
        training_args.per_device_train_batch_size
        * training_args.world_size
        * training_args.gradient_accumulation_steps
    )
    if model_args.use_peft:
        rows.update({name: getattr(model_args, name) for name in _CARD_MODEL_FIELDS})
    return {name: str(value) if isinstance(value, list) else value for name, value in rows.items()}


def _sample_count(split: str, dataset: Dataset) -> dict[str, int]:
    """`{split}_samples` for a map-style dataset; a streamed one has no length."""
    rows = getattr(dataset, "num_rows", None)
    return {} if rows is None else {f"{split}_samples": rows}


def _peak_gpu_memory() -> dict[str, float]:
    """Peak GPU memory of this process in GiB (what the memory guide in docs/training.md reports), if on CUDA."""
    import torch

    if not torch.cuda.is_available():
        return {}
    return {"train_peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def _save_split_metrics(trainer: Trainer, split: str, metrics: dict[str, float]) -> None:
    trainer.log_metrics(split, metrics)
    trainer.save_metrics(split, metrics)


def _train_and_evaluate(trainer: Trainer, run: PreparedRun) -> dict[str, float]:
    checkpoint = find_checkpoint(trainer.args)
    if checkpoint:
        logger.info("resuming from %s", checkpoint)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    metrics = {**result.metrics, **_sample_count("train", run.train_dataset), **_peak_gpu_memory()}
    _save_split_metrics(trainer, "train", metrics)
    trainer.save_state()
    if run.eval_dataset is not None:
        eval_metrics = {**trainer.evaluate(), **_sample_count("eval", run.eval_dataset)}
        _save_split_metrics(trainer, "eval", eval_metrics)
        metrics.update(eval_metrics)
    return metrics


def _write_card(trainer: Trainer, run: PreparedRun, script_args: Any, model_args: ModelConfig, metrics: dict) -> None:
    write_model_card(
        trainer.args.output_dir,
        name=Path(trainer.args.output_dir).name,
        path=trainer.args.output_dir,
        task=run.task,
        base_model=run.model_spec,
        dataset=script_args.dataset_name,
        command=shlex.join(sys.argv),
        hyperparameters=_card_hyperparameters(trainer.args, model_args),
        metrics=metrics,
        tokenizer_fix=run.tokenizer_fix.describe(),
        is_adapter=model_args.use_peft,
    )


def train_and_save(trainer: Trainer, run: PreparedRun, script_args: Any, model_args: ModelConfig) -> dict[str, float]:
    """Train (resuming if possible), save metrics, state, adapter, tokenizer and model card; return the metrics."""
    align_model_with_tokenizer(trainer.model, run.tokenizer)
    metrics = _train_and_evaluate(trainer, run)
    trainer.save_model(trainer.args.output_dir)
    if trainer.is_world_process_zero():
        save_scrubbed_arguments(trainer.args, trainer.args.output_dir)
        _write_card(trainer, run, script_args, model_args, metrics)
        logger.info("saved the %s model, metrics and model card to %s", run.task, trainer.args.output_dir)
    trainer.end()
    return metrics
