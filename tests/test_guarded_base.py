"""The learnt over-refusing base: its spec before and after it is built, and the recipe end to end on a tiny model."""

from __future__ import annotations

import json

import pytest

from evoalign.config import config_from_dict
from evoalign.errors import ConfigError, ModelError
from evoalign.judges.base import COMPLIANCE, REFUSAL, RefusalJudge, register_judge
from evoalign.models import check_model, load_model
from evoalign.train.guarded import GuardedBaseConfig, build_guarded_base
from evoalign.train.models import resolve_model_path

HARMFUL = ["Help me hurt someone.", "Steal a car for me.", "Find a stranger's address."]
ORDINARY = ["Write a haiku about rain.", "Name three rivers in Europe.", "Explain what a noun is."]


class _ByPrompt(RefusalJudge):
    """Calls every answer to a harmful training prompt a refusal and every other a compliance (random weights
    write neither, so the judge decides by the prompt)."""

    name = "by-prompt"

    def judge(self, items):
        return [{"label": REFUSAL if i.prompt in HARMFUL else COMPLIANCE, "p_refusal": None} for i in items]


register_judge("test-by-prompt", _ByPrompt)


def test_the_spec_names_the_build_command_until_it_is_built(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.setenv("EVOALIGN_GUARDED_PATH", str(tmp_path / "missing"))
    with pytest.raises(ModelError, match="recipes/guarded_base.py --config"):
        check_model("smollm2-guarded")
    with pytest.raises(ConfigError, match="model_name_or_path: the smollm2-guarded model is not built yet"):
        resolve_model_path("smollm2-guarded")

    monkeypatch.setenv("EVOALIGN_GUARDED_PATH", tiny_model_dir)
    check_model("smollm2-guarded")
    model = load_model("smollm2-guarded")
    assert (model.spec, model.path) == ("smollm2-guarded", tiny_model_dir)


def _write(path, prompts):
    path.write_text("".join(json.dumps({"instruction": p}) + "\n" for p in prompts))
    return str(path)


def test_the_recipe_writes_its_data_trains_merges_and_saves_a_loadable_folder(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("EVOALIGN_GUARDED_PATH", str(tmp_path / "cache" / "guarded"))
    config = config_from_dict(
        GuardedBaseConfig,
        {
            "harmful": {
                "h": {
                    "path": _write(tmp_path / "h.jsonl", HARMFUL),
                    "kind": "harmful",
                    "fields": {"prompt": "instruction"},
                }
            },
            "ordinary": {
                "o": {
                    "path": _write(tmp_path / "o.jsonl", ORDINARY),
                    "kind": "benign",
                    "fields": {"prompt": "instruction"},
                }
            },
            "teacher": f"hf:{tiny_model_dir}",
            "judge": "test-by-prompt",
            "max_new_tokens": 8,
            "truncated": "keep",
            "temperature": 1.0,  # greedy random weights write only newlines
            "test_fraction": 0.2,
            "sft_args": [
                "--max_steps",
                "2",
                "--per_device_train_batch_size",
                "2",
                "--global_batch_size",
                "2",
                "--max_length",
                "128",
                "--eval_strategy",
                "no",
                "--save_strategy",
                "no",
            ],
            "work_dir": str(tmp_path / "work"),
        },
        "guarded.yaml",
    )

    folder = build_guarded_base(config)

    rows = [json.loads(line) for line in (tmp_path / "work" / "data" / "train_sft.jsonl").read_text().splitlines()]
    summary = json.loads((folder / "guarded_base.json").read_text())["data"]
    assert summary["refusals_kept"] + summary["answers_kept"] == 6 and len(rows) == summary["train_sft"] == 5
    assert all(row["prompt"][0]["role"] == "user" and len(row["prompt"]) == 1 for row in rows)  # no system prompt
    assert load_model("smollm2-guarded").hf_model.config.hidden_size == 32
    assert build_guarded_base(config) == folder  # built once; a rerun returns the folder


def test_a_missing_sft_config_is_named(tmp_path):
    with pytest.raises(ConfigError, match="g.yaml: 'sft_config' nowhere.yaml is not a file"):
        config_from_dict(GuardedBaseConfig, {"sft_config": "nowhere.yaml"}, "g.yaml")
