"""recipes/dpo.py and recipes/merge.py end to end on CPU: positive reward margins, the RPO term, SFT -> merge -> DPO.

The Llama-3.1-8B recipes themselves run here too, for one step each on the tiny Llama-3.1-style model (bf16 and
logging switched off for CPU), so that the configs the GPU runs use are known to load and train.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from recipes_support import (
    RECIPES,
    SMOLLM2_RECIPES,
    load_recipe,
    qlora_skip_reason,
    run_recipe,
    tiny_run_flags,
)

pytest_plugins = ["fixtures_recipes"]

LLAMA_RECIPES = RECIPES / "llama-3.1-8b-instruct"
CPU_FLAGS = {"bf16": False, "report_to": "none", "global_batch_size": 8, "max_steps": 1}


def _first_logged_loss(output_dir: Path) -> float:
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return next(entry["loss"] for entry in history if "loss" in entry)


@pytest.mark.train
def test_dpo_on_separable_pairs_gives_positive_reward_margins(tiny_llama31_dir, toy_data_dir, tmp_path):
    flags = tiny_run_flags(tiny_llama31_dir, toy_data_dir, tmp_path, learning_rate=1e-2, eval_strategy="epoch")

    metrics = run_recipe("dpo", SMOLLM2_RECIPES / "dpo" / "config_lora.yaml", *flags)

    assert metrics["eval_rewards/margins"] > 0
    assert metrics["eval_rewards/accuracies"] >= 0.75
    assert json.loads((tmp_path / "eval_results.json").read_text())["eval_rewards/margins"] > 0
    assert (tmp_path / "adapter_model.safetensors").is_file() and (tmp_path / "README.md").is_file()


@pytest.mark.train
@pytest.mark.parametrize(
    "config",
    ["sft/config_lora.yaml", "sft/config_qlora.yaml", "dpo/config_lora.yaml", "dpo/config_qlora.yaml"]
    + ["dpo/config_lora_rpo.yaml"],
)
def test_llama31_8b_recipes_train_a_step_on_the_tiny_model(config, tiny_llama31_dir, toy_data_dir, tmp_path):
    if "qlora" in config and (reason := qlora_skip_reason(tiny_llama31_dir)):
        pytest.skip(reason)
    task = config.split("/")[0]
    flags = tiny_run_flags(tiny_llama31_dir, toy_data_dir, tmp_path, **CPU_FLAGS)
    if "qlora" not in config:
        flags += ["--dtype", "float32"]

    run_recipe(task, LLAMA_RECIPES / config, *flags)

    assert (tmp_path / "adapter_model.safetensors").is_file()
    loss = _first_logged_loss(tmp_path)
    if task == "dpo":  # the policy starts equal to the reference, so the sigmoid loss starts at ln 2
        sft_term = "rpo" in config
        assert (loss > math.log(2) + 1) if sft_term else loss == pytest.approx(math.log(2), abs=1e-3)


@pytest.mark.train
def test_sft_adapter_merged_then_dpo(tiny_llama31_dir, toy_data_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import TrlParser

    from evoalign.train.configs import MergeArguments

    sft_dir, merged_dir, dpo_dir = tmp_path / "sft", tmp_path / "merged", tmp_path / "dpo"
    run_recipe(
        "sft", SMOLLM2_RECIPES / "sft" / "config_lora.yaml", *tiny_run_flags(tiny_llama31_dir, toy_data_dir, sft_dir)
    )
    (merge_args,) = TrlParser((MergeArguments,)).parse_args_and_config(
        ["--adapter_path", str(sft_dir), "--output_dir", str(merged_dir), "--dtype", "float32"]
    )
    load_recipe("merge")["main"](merge_args)

    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama31_dir), str(sft_dir))
    ids = torch.tensor([[6, 30, 40, 7, 50, 9]])
    torch.testing.assert_close(merged(ids).logits, with_adapter(ids).logits, rtol=1e-4, atol=1e-4)
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    assert (tokenizer.pad_token, tokenizer.eos_token) == ("<|finetune_right_pad_id|>", "<|eot_id|>")
    assert merged.generation_config.eos_token_id[0] == tokenizer.eos_token_id
    assert not (merged_dir / "adapter_config.json").exists()

    flags = tiny_run_flags(merged_dir, toy_data_dir, dpo_dir, max_steps=2)
    metrics = run_recipe("dpo", SMOLLM2_RECIPES / "dpo" / "config_lora.yaml", *flags)

    assert metrics["train_loss"] > 0 and (dpo_dir / "adapter_model.safetensors").is_file()
    assert json.loads((dpo_dir / "adapter_config.json").read_text())["base_model_name_or_path"] == str(merged_dir)
