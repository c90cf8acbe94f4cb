"""recipes/sft.py end to end on CPU: the loss goes down, only LoRA weights move, and the run leaves its files.

Runs go through the real script (its `build_trainer`/`main`, or `accelerate launch`) with a SmolLM2 recipe
pointed at a tiny random Llama-3.1-style model and the toy data, for a few steps each.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from recipes_support import (
    ROOT,
    SMOLLM2_RECIPES,
    build_recipe_trainer,
    load_recipe,
    qlora_skip_reason,
    run_recipe,
    tiny_run_flags,
)

from evoalign.errors import run_main
from evoalign.train.run import train_and_save

SFT_LORA = SMOLLM2_RECIPES / "sft" / "config_lora.yaml"
SECRET = "hf_abcdefghijklmnopqrstuvwxyz0123456789"

pytest_plugins = ["fixtures_recipes"]


def _logged_losses(output_dir: Path) -> list[float]:
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


@pytest.mark.train
def test_sft_lowers_the_loss_and_changes_only_lora_weights(tiny_llama31_dir, toy_data_dir, tmp_path):
    flags = tiny_run_flags(tiny_llama31_dir, toy_data_dir, tmp_path, eval_strategy="epoch")
    trainer, run, (script_args, _, model_args) = build_recipe_trainer("sft", SFT_LORA, *flags)
    before = {name: param.detach().clone() for name, param in trainer.model.named_parameters()}

    metrics = train_and_save(trainer, run, script_args, model_args)  # what main() does after build_trainer

    changed = {name for name, param in trainer.model.named_parameters() if not torch.equal(param, before[name])}
    assert changed and all("lora_" in name for name in changed)
    losses = _logged_losses(tmp_path)
    assert len(losses) == 8 and losses[-1] < losses[0]
    history = json.loads((tmp_path / "trainer_state.json").read_text())["log_history"]
    eval_losses = [entry["eval_loss"] for entry in history if "eval_loss" in entry]
    assert eval_losses[-1] < eval_losses[0]
    assert json.loads((tmp_path / "eval_results.json").read_text())["eval_loss"] == pytest.approx(metrics["eval_loss"])
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer_config.json", "README.md"):
        assert (tmp_path / name).is_file(), name
    for name in ("train_results.json", "eval_results.json", "all_results.json", "run_config.json"):
        assert (tmp_path / name).is_file(), name


@pytest.mark.train
def test_saved_adapter_holds_only_lora_matrices_and_a_model_card(tiny_llama31_dir, toy_data_dir, tmp_path):
    from safetensors.torch import load_file

    metrics = run_recipe("sft", SFT_LORA, *tiny_run_flags(tiny_llama31_dir, toy_data_dir, tmp_path, max_steps=2))

    adapter = load_file(tmp_path / "adapter_model.safetensors")
    assert adapter and all("lora_A" in key or "lora_B" in key for key in adapter)
    assert any(tensor.abs().sum() > 0 for key, tensor in adapter.items() if "lora_B" in key)  # B starts at zero
    card = (tmp_path / "README.md").read_text()
    for expected in ("library_name: peft", str(toy_data_dir), "learning_rate", "lora_r", "<|eot_id|>", "train_loss"):
        assert expected in card, expected
    assert json.loads((tmp_path / "train_results.json").read_text())["train_loss"] == pytest.approx(
        metrics["train_loss"]
    )


@pytest.mark.train
def test_sft_resumes_from_the_last_checkpoint(tiny_llama31_dir, toy_data_dir, tmp_path, caplog):
    first = tiny_run_flags(tiny_llama31_dir, toy_data_dir, tmp_path, max_steps=2, save_strategy="steps")
    run_recipe("sft", SFT_LORA, *first, "--save_steps", "2")
    assert (tmp_path / "checkpoint-2").is_dir()

    caplog.set_level(logging.INFO, logger="evoalign.train")
    run_recipe("sft", SFT_LORA, *tiny_run_flags(tiny_llama31_dir, toy_data_dir, tmp_path, max_steps=4))

    assert f"resuming from {tmp_path / 'checkpoint-2'}" in caplog.text
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    assert [entry["step"] for entry in state["log_history"] if "loss" in entry] == [1, 2, 3, 4]


@pytest.mark.train
def test_logging_to_wandb_offline_and_tensorboard_keeps_secrets_out(
    tiny_llama31_dir, toy_data_dir, tmp_path, monkeypatch
):
    import yaml

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.delenv("EXTRA_API_KEY", raising=False)  # set by the config's env block; restored after the test
    (tmp_path / "wandb").mkdir()
    config = yaml.safe_load(SFT_LORA.read_text())
    config.update(
        report_to=["wandb", "tensorboard"],
        hub_token=SECRET,
        model_init_kwargs={"token": SECRET},
        env={"EXTRA_API_KEY": SECRET},
    )
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    output = tmp_path / "out"
    flags = tiny_run_flags(tiny_llama31_dir, toy_data_dir, output, max_steps=2, save_strategy="steps")

    run_recipe("sft", tmp_path / "config.yaml", *flags, "--save_steps", "2")

    assert list((tmp_path / "wandb").rglob("*.wandb")), "no offline wandb run was written"
    assert list(output.rglob("events.out.tfevents.*")), "no tensorboard events were written"
    written = [path for folder in (output, tmp_path / "wandb") for path in folder.rglob("*") if path.is_file()]
    assert [path for path in written if SECRET.encode() in path.read_bytes()] == []
    logged = json.loads((output / "run_config.json").read_text())
    assert logged["training_args"]["hub_token"] == "<redacted>"
    assert logged["training_args"]["model_init_kwargs"]["token"] == "<redacted>"


@pytest.mark.train
def test_qlora_recipe_trains_a_4bit_base(tiny_llama31_dir, toy_data_dir, tmp_path):
    reason = qlora_skip_reason(tiny_llama31_dir)
    if reason:
        pytest.skip(reason)
    flags = tiny_run_flags(tiny_llama31_dir, toy_data_dir, tmp_path, max_steps=3)
    trainer, run, (script_args, _, model_args) = build_recipe_trainer(
        "sft", SMOLLM2_RECIPES / "sft" / "config_qlora.yaml", *flags
    )
    assert trainer.model.is_loaded_in_4bit
    assert any(type(module).__name__ == "Linear4bit" for module in trainer.model.modules())

    metrics = train_and_save(trainer, run, script_args, model_args)

    assert torch.isfinite(torch.tensor(metrics["train_loss"]))
    assert json.loads((tmp_path / "adapter_config.json").read_text())["r"] == 8


def test_bad_input_stops_with_one_line(tiny_llama31_dir, tmp_path, capsys):
    recipe = load_recipe("sft")
    argv = ["--config", str(SFT_LORA), *tiny_run_flags(tiny_llama31_dir, tmp_path / "missing", tmp_path / "out")]

    code = run_main(lambda args: recipe["main"](*recipe["make_parser"]().parse_args_and_config(args)), argv)

    assert code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"error: {tmp_path / 'missing'}: dataset not found"
    assert "Traceback" not in err


@pytest.mark.train
@pytest.mark.subprocess
def test_accelerate_launch_runs_the_sft_script(tiny_llama31_dir, toy_data_dir, tmp_path):
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ROOT / "recipes" / "accelerate_configs" / "single_gpu.yaml"),
        str(ROOT / "recipes" / "sft.py"),
        "--config",
        str(SFT_LORA),
        *tiny_run_flags(tiny_llama31_dir, toy_data_dir, tmp_path, max_steps=2, eval_strategy="epoch"),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "adapter_model.safetensors").is_file()
    assert json.loads((tmp_path / "all_results.json").read_text())["train_samples"] == 8
