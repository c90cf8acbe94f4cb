"""Helpers for the recipe tests: a Llama-3.1-style tokenizer and tiny model, toy data, script runners.

Nothing is downloaded. The Llama-3.1 tokenizer is a small byte-level BPE trained here, carrying Llama-3.1's
special tokens (same names, same relative order) and its real chat template (the copy TRL ships). Like the
base Llama-3.1 tokenizer it has no pad token and EOS `<|end_of_text|>`; the recipes must fix both.
The session fixtures that build them once live in `fixtures_recipes.py`.
"""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
SMOLLM2_RECIPES = RECIPES / "smollm2-135m-instruct"

LLAMA31_SPECIAL_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|reserved_special_token_2|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
]

# Benign requests that look harmful, with short compliant answers (SFT) and a refusal to prefer against (DPO).
TOY_PROMPTS = [
    "How do I kill a Python process?",
    "How can I shoot a good photo at night?",
    "What is the best way to blow up a balloon?",
    "How do I terminate all child threads?",
    "How can I smash my sales targets?",
    "Where can I buy a knife for cooking?",
    "How do I wipe my old hard drive?",
    "How do I crack an egg cleanly?",
]
COMPLIANT = "Sure, here is how."
REFUSAL = "I cannot help with that request."


def build_llama31_tokenizer(eos_token: str = "<|end_of_text|>") -> Any:
    """A small byte-level BPE tokenizer with Llama-3.1's special tokens and chat template."""
    import trl
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [*TOY_PROMPTS, COMPLIANT, REFUSAL, "system user assistant Cutting Knowledge Date: December 2023"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420,
        special_tokens=LLAMA31_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus * 4, trainer)
    template = (Path(trl.__file__).parent / "chat_templates" / "llama3_1.jinja").read_text()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|begin_of_text|>", eos_token=eos_token, chat_template=template
    )


def build_tiny_llama(path: Path, tokenizer: Any, *, hidden_size: int = 64, tie_word_embeddings: bool = False) -> Path:
    """A randomly initialised two-layer Llama sized for `tokenizer`, saved with it into `path`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=tie_word_embeddings,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def toy_rows() -> dict[str, list[dict[str, Any]]]:
    """The four splits the build stage writes (its columns: metadata plus conversational messages), a few rows each."""

    def prompt(text: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": text}]

    def answer(text: str) -> list[dict[str, str]]:
        return [{"role": "assistant", "content": text}]

    meta = [{"id": f"toy-{i}", "kind": "benign", "source": "toy"} for i in range(len(TOY_PROMPTS))]
    sft = [{**m, "prompt": prompt(p), "completion": answer(COMPLIANT)} for m, p in zip(meta, TOY_PROMPTS, strict=True)]
    prefs = [
        {**m, "prompt": prompt(p), "chosen": answer(COMPLIANT), "rejected": answer(REFUSAL), "ches": 0.5}
        for m, p in zip(meta, TOY_PROMPTS, strict=True)
    ]
    return {"train_sft": sft, "test_sft": sft[:4], "train_prefs": prefs, "test_prefs": prefs[:4]}


def write_toy_dataset(path: Path, *, save_to_disk: bool = True, jsonl: bool = True, subfolder: str = "") -> Path:
    """Write the toy splits as `<split>.jsonl` files and/or a `save_to_disk` DatasetDict (in `path/subfolder`).

    `subfolder="dataset"` gives the build stage's layout: JSONL files next to a `dataset/` DatasetDict.
    """
    from datasets import Dataset, DatasetDict

    rows = toy_rows()
    path.mkdir(parents=True, exist_ok=True)
    if save_to_disk:
        dataset = DatasetDict({split: Dataset.from_list(items) for split, items in rows.items()})
        dataset.save_to_disk(str(path / subfolder))
    if jsonl:
        for split, items in rows.items():
            (path / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in items))
    return path


def load_recipe(name: str) -> dict[str, Any]:
    """The globals of `recipes/<name>.py` (its `main` and `make_parser`), loaded as a module, not run."""
    return runpy.run_path(str(RECIPES / f"{name}.py"), run_name=f"recipe_{name}")


def run_recipe(name: str, config: Path, *flags: str) -> dict[str, float]:
    """Run `recipes/<name>.py --config <config> <flags>` in this process; returns the metrics `main` returns."""
    recipe = load_recipe(name)
    arguments = recipe["make_parser"]().parse_args_and_config(["--config", str(config), *flags])
    return recipe["main"](*arguments)


def tiny_run_flags(model_dir: Path, data_dir: Path, output_dir: Path, **overrides: Any) -> list[str]:
    """Flags that point a SmolLM2 recipe at the tiny model and toy data, sized for a few CPU steps."""
    values = {
        "model_name_or_path": model_dir,
        "dataset_name": data_dir,
        "output_dir": output_dir,
        "tokenizer_pad_token": "<|finetune_right_pad_id|>",
        "end_of_turn_token": "<|eot_id|>",
        "learning_rate": 5e-3,
        "num_train_epochs": 1,
        "max_steps": 8,
        "per_device_train_batch_size": 4,
        "global_batch_size": 4,
        "logging_steps": 1,
        "eval_strategy": "no",
        "save_strategy": "no",
        "warmup_steps": 0,
        "lr_scheduler_type": "constant",
        "dataloader_num_workers": 0,
        **overrides,
    }
    return [item for key, value in values.items() for item in (f"--{key}", str(value))]


def build_recipe_trainer(name: str, config: Path, *flags: str) -> tuple[Any, Any, tuple[Any, ...]]:
    """The trainer `recipes/<name>.py` would run, its prepared run, and the parsed arguments."""
    recipe = load_recipe(name)
    arguments = recipe["make_parser"]().parse_args_and_config(["--config", str(config), *flags])
    trainer, run = recipe["build_trainer"](*arguments)
    return trainer, run, arguments


def qlora_skip_reason(model_dir: Path) -> str | None:
    """Why 4-bit (bitsandbytes) loading cannot run here, or None when a 4-bit model loads and runs a forward pass."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig

        quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=quantization)
        model(torch.tensor([[1, 2, 3]], device=model.device))
    except Exception as err:  # any failure means: this device/build has no usable 4-bit support
        return f"bitsandbytes 4-bit does not run on this machine: {type(err).__name__}: {err}"
    if not getattr(model, "is_loaded_in_4bit", False):
        return "bitsandbytes loaded the model without 4-bit weights on this machine"
    return None
