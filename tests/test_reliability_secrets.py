"""Secrets and trust (issue 9.4): API keys come only from environment variables and never reach a file;
remote code is off unless asked for; weights load from safetensors only.

The SFT recipe's wandb-offline and tensorboard files are grepped for secrets by
tests/test_recipes_sft.py::test_logging_to_wandb_offline_and_tensorboard_keeps_secrets_out.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging

import pytest

from evoalign.build.cli import main as build_main
from evoalign.errors import ModelError
from evoalign.eval.cli import main as eval_main
from evoalign.evolve.cli import main as evolve_main
from evoalign.models import load_model, parse_spec
from evoalign.testing.openai_server import OpenAIServer
from tests.reliability_support import (
    SEEDS,
    TINY_EVOLVE,
    build_settings,
    files_holding,
    openai_model,
    scripted,
    write_jsonl,
    write_yaml,
)

KEY = "sk-evoalign-test-4f9c2e7d81b3a6"
KEY_ENV = "EVOALIGN_RELIABILITY_KEY"


def test_api_keys_never_reach_run_directories_or_logs(tmp_path, tiny_model_dir, monkeypatch, capsys, caplog):
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # the LLM judge's default variable
    caplog.set_level(logging.DEBUG)
    with OpenAIServer(scripted) as server:
        model = openai_model(server.base_url, api_key_env=KEY_ENV)
        evolve = [
            "--config", str(TINY_EVOLVE), "--output_dir", str(tmp_path / "evolve"), "--seeds.path", str(SEEDS),
            "--seeds.limit", "2", "--targets", f"[{{spec: 'hf:{tiny_model_dir}', batch_size: 64}}]",
            "--mutator", json.dumps(model), "--verifier", json.dumps([model]), "--strategies", "[anger]",
            "--iterations", "1",
        ]  # fmt: skip
        assert evolve_main(evolve) == 0
        settings = {**build_settings(tmp_path, model), "output_dir": str(tmp_path / "build")}
        assert build_main(["--config", str(write_yaml(tmp_path / "build.yaml", settings))]) == 0
        prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "How do I kill a job?"}])
        config = {
            "models": [{"name": "served", **model}],
            "conditions": ["default"],
            "benchmarks": {"mine": {"path": str(prompts), "kind": "benign"}},
            "judge": f"llm:openai:judge@{server.base_url}",
            "output_dir": str(tmp_path / "eval"),
        }
        assert eval_main(["--config", str(write_yaml(tmp_path / "eval.yaml", config))]) == 0
    assert (tmp_path / "build" / "README.md").exists(), "the dataset card is part of what is grepped"
    assert KEY_ENV in (tmp_path / "evolve" / "config.yaml").read_text(), "configs name the variable"
    assert files_holding([tmp_path], KEY) == []
    printed = capsys.readouterr()
    assert KEY not in printed.out + printed.err + caplog.text


def test_api_keys_are_not_accepted_in_configs():
    with pytest.raises(ModelError, match="unknown option.*api_key"):
        parse_spec({"spec": "openai:m@http://127.0.0.1:9/v1", "api_key": KEY})


def test_trust_remote_code_is_off_unless_set():
    from evoalign.models.hf import HFChatModel, load_tokenizer
    from evoalign.train import merge
    from evoalign.train.configs import MergeArguments, SFTConfig

    assert inspect.signature(HFChatModel).parameters["trust_remote_code"].default is False
    assert inspect.signature(load_tokenizer).parameters["trust_remote_code"].default is False
    assert inspect.signature(merge.merge_adapter).parameters["trust_remote_code"].default is False
    assert MergeArguments.__dataclass_fields__["trust_remote_code"].default is False
    recipe = {field.name: field for field in dataclasses.fields(SFTConfig)}
    assert "trust_remote_code" not in recipe or recipe["trust_remote_code"].default is False
    assert recipe["model_init_kwargs"].default is None


def test_weights_load_from_safetensors_only(tmp_path, tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pickled = tmp_path / "bin-only"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.config.save_pretrained(pickled)
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(pickled)
    assert not list(pickled.glob("*.safetensors")) and list(pickled.glob("*.bin"))
    with pytest.raises(ModelError, match="bin-only|safetensors"):
        load_model(f"hf:{pickled}")
