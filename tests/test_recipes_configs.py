"""The recipe configs, data loading, model specs and secret scrubbing, checked without training.

The Llama-3.1-8B YAMLs must hold the EvoRefuse training setup; every YAML must parse with the script's own
parser; the accelerate configs must load; the data loader must accept every form the build stage writes and
name the problem when it cannot.
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest
from recipes_support import RECIPES, ROOT, load_recipe, toy_rows, write_toy_dataset

from evoalign.errors import ConfigError, DataError
from evoalign.secrets import REDACTED, is_secret_key, scrub_secrets
from evoalign.train.configs import accumulation_steps
from evoalign.train.data import DPO_COLUMNS, SFT_COLUMNS, load_splits
from evoalign.train.models import resolve_model_path
from evoalign.train.run import find_checkpoint

LLAMA = RECIPES / "llama-3.1-8b-instruct"


def _parse(task: str, config, *flags: str):
    return load_recipe(task)["make_parser"]().parse_args_and_config(
        ["--config", str(config), "--use_cpu", "true", *flags]
    )


def _effective_batch(training_args) -> int:
    return training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps


@pytest.mark.parametrize("variant", ["lora", "qlora"])
def test_llama31_sft_recipes_hold_the_evorefuse_setup(variant):
    script, training, model = _parse("sft", LLAMA / "sft" / f"config_{variant}.yaml")

    assert model.model_name_or_path == "meta-llama/Llama-3.1-8B-Instruct" and model.dtype == "bfloat16"
    assert (model.use_peft, model.lora_r, model.lora_alpha, model.lora_target_modules) == (True, 8, 16, "all-linear")
    assert model.load_in_4bit == (variant == "qlora")
    assert (training.learning_rate, training.num_train_epochs, _effective_batch(training)) == (2e-5, 5, 32)
    assert (training.lr_scheduler_type.value, training.warmup_steps, training.max_length) == ("cosine", 0.03, 2048)
    assert training.bf16 and training.report_to == ["wandb"]
    assert (script.dataset_train_split, script.dataset_test_split) == ("train_sft", "test_sft")
    assert (script.tokenizer_pad_token, script.end_of_turn_token) == ("<|finetune_right_pad_id|>", "<|eot_id|>")


@pytest.mark.parametrize("variant", ["lora", "qlora", "lora_rpo"])
def test_llama31_dpo_recipes_hold_the_evorefuse_setup(variant):
    script, training, model = _parse("dpo", LLAMA / "dpo" / f"config_{variant}.yaml")

    assert (model.lora_r, model.lora_alpha, model.lora_target_modules) == (8, 16, "all-linear")
    assert model.load_in_4bit == (variant == "qlora")
    assert training.loss_type == (["sigmoid", "sft"] if variant == "lora_rpo" else ["sigmoid"])
    assert (training.beta, training.learning_rate, training.num_train_epochs) == (0.1, 1e-5, 5)
    assert (_effective_batch(training), training.max_length, training.bf16) == (8, 1024, True)
    assert (script.dataset_train_split, script.dataset_test_split) == ("train_prefs", "test_prefs")


@pytest.mark.parametrize(
    "config", sorted((RECIPES / "smollm2-135m-instruct").glob("[ds][pf][ot]/config_*.yaml")), ids=str
)
def test_smollm2_recipes_parse_and_name_the_bundled_model(config):
    script, training, model = _parse(config.parent.name, config)

    assert model.model_name_or_path == "smollm2" and not training.bf16 and training.report_to == []
    assert script.tokenizer_pad_token == "<|endoftext|>"


def test_flags_override_the_yaml():
    _, training, model = _parse("sft", LLAMA / "sft" / "config_lora.yaml", "--learning_rate", "1e-4", "--lora_r", "4")

    assert (training.learning_rate, model.lora_r, training.num_train_epochs) == (1e-4, 4, 5)


def test_global_batch_size_sets_gradient_accumulation():
    assert accumulation_steps(32, 4, 1) == 8
    assert accumulation_steps(32, 4, 8) == 1
    with pytest.raises(ConfigError, match="not a multiple"):
        accumulation_steps(32, 3, 1)
    with pytest.raises(ConfigError, match="not a multiple"):
        accumulation_steps(8, 2, 8)


@pytest.mark.parametrize(
    ("name", "kind", "processes"),
    [("single_gpu", "NO", 1), ("multi_gpu", "MULTI_GPU", 8), ("deepspeed_zero3", "DEEPSPEED", 8), ("fsdp", "FSDP", 8)],
)
def test_accelerate_configs_load(name, kind, processes):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(RECIPES / "accelerate_configs" / f"{name}.yaml"))

    assert (config.distributed_type.value, config.num_processes) == (kind, processes)
    if kind == "DEEPSPEED":
        assert config.deepspeed_config["zero_stage"] == 3


@pytest.mark.parametrize("readme", ["llama-3.1-8b-instruct/README.md", "smollm2-135m-instruct/README.md"])
def test_readme_commands_name_existing_files(readme):
    text = (RECIPES / readme).read_text()
    paths = set(re.findall(r"recipes/[\w./-]+\.(?:py|yaml)", text))

    assert paths and [path for path in paths if not (ROOT / path).is_file()] == []


def test_training_doc_names_existing_recipes():
    text = (ROOT / "docs" / "training.md").read_text()
    paths = set(re.findall(r"recipes/[\w./-]+\.(?:py|yaml)", text))

    assert len(paths) >= 8 and [path for path in paths if not (ROOT / path).is_file()] == []


@pytest.mark.parametrize("form", ["build_stage_folder", "save_to_disk", "jsonl_folder"])
def test_data_loads_from_what_the_build_stage_writes(form, tmp_path):
    subfolder = "dataset" if form == "build_stage_folder" else ""
    write_toy_dataset(tmp_path, save_to_disk=form != "jsonl_folder", jsonl=form != "save_to_disk", subfolder=subfolder)

    splits = load_splits(str(tmp_path), ["train_prefs", "test_prefs"], DPO_COLUMNS)

    assert (len(splits["train_prefs"]), len(splits["test_prefs"])) == (8, 4)
    assert splits["train_prefs"][0]["chosen"][0]["role"] == "assistant"


def test_a_single_jsonl_file_is_the_train_split(tmp_path):
    write_toy_dataset(tmp_path, save_to_disk=False)

    splits = load_splits(str(tmp_path / "train_sft.jsonl"), ["train_sft"], SFT_COLUMNS)

    assert len(splits["train_sft"]) == 8


def test_a_missing_split_is_named(tmp_path):
    write_toy_dataset(tmp_path, save_to_disk=False)
    (tmp_path / "test_sft.jsonl").unlink()

    with pytest.raises(DataError, match="no split 'test_sft'; found train_sft"):
        load_splits(str(tmp_path), ["train_sft", "test_sft"], SFT_COLUMNS)


def test_missing_columns_and_paths_are_named(tmp_path):
    write_toy_dataset(tmp_path, save_to_disk=False)

    with pytest.raises(DataError, match="missing column"):
        load_splits(str(tmp_path), ["train_sft"], DPO_COLUMNS)
    with pytest.raises(DataError, match="dataset not found"):
        load_splits(str(tmp_path / "absent"), ["train_sft"], SFT_COLUMNS)


def test_plain_string_rows_are_refused_because_they_bypass_the_chat_template(tmp_path):
    rows = [{"prompt": row["prompt"][0]["content"], "completion": "Sure."} for row in toy_rows()["train_sft"]]
    (tmp_path / "train_sft.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))

    with pytest.raises(DataError, match="must be conversational"):
        load_splits(str(tmp_path), ["train_sft"], SFT_COLUMNS)


def test_model_specs_resolve(smollm2_dir):
    assert resolve_model_path("smollm2") == smollm2_dir
    assert resolve_model_path("hf:meta-llama/Llama-3.1-8B-Instruct") == "meta-llama/Llama-3.1-8B-Instruct"
    assert resolve_model_path("meta-llama/Llama-3.1-8B-Instruct") == "meta-llama/Llama-3.1-8B-Instruct"
    with pytest.raises(ConfigError, match="cannot be fine-tuned"):
        resolve_model_path("openai:gpt-4o")


def test_secrets_are_scrubbed_and_token_names_are_kept():
    config = {
        "hub_token": "hf_abcdefghijklmnopqrstuvwxyz",
        "model_init_kwargs": {"token": "anything", "revision": "main"},
        "env": {"WANDB_API_KEY": "0123", "HF_TOKEN": "x"},
        "eos_token": "<|eot_id|>",
        "end_of_turn_token": "<|eot_id|>",
        "endpoint": "https://user:pa55@example.com/v1",
        "note": ["uses key sk-abcdefghijklmnopqrstuvwxyz"],
    }

    clean = scrub_secrets(config)

    assert clean["hub_token"] == clean["model_init_kwargs"]["token"] == REDACTED
    assert clean["env"] == {"WANDB_API_KEY": REDACTED, "HF_TOKEN": REDACTED}
    assert clean["eos_token"] == clean["end_of_turn_token"] == "<|eot_id|>"
    assert clean["endpoint"] == f"https://{REDACTED}@example.com/v1"
    assert clean["note"] == [f"uses key {REDACTED}"]
    assert not is_secret_key("max_new_tokens") and is_secret_key("HUGGING_FACE_HUB_TOKEN")


@pytest.mark.parametrize(("asked", "expected"), [(None, "checkpoint-10"), ("true", "checkpoint-10"), ("false", None)])
def test_resume_picks_the_last_checkpoint_unless_told_otherwise(asked, expected, tmp_path):
    for step in (2, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()

    found = find_checkpoint(SimpleNamespace(resume_from_checkpoint=asked, output_dir=str(tmp_path)))

    assert found == (str(tmp_path / expected) if expected else None)


def test_a_named_checkpoint_is_used_as_given(tmp_path):
    named = "/elsewhere/checkpoint-3"

    assert find_checkpoint(SimpleNamespace(resume_from_checkpoint=named, output_dir=str(tmp_path))) == named


def test_resume_true_without_a_checkpoint_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="holds no checkpoint"):
        find_checkpoint(SimpleNamespace(resume_from_checkpoint="true", output_dir=str(tmp_path)))
