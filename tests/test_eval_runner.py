"""The eval runner end to end on a tiny random model (plus a LoRA adapter on it): report, resume, config errors."""

from __future__ import annotations

import json

import pytest
import yaml

from evoalign.config import config_from_dict
from evoalign.errors import ConfigError, run_main
from evoalign.eval.cli import main
from evoalign.eval.runner import EvalConfig, condition_messages, evaluate, model_entries


@pytest.fixture(scope="module")
def tiny_adapter(tiny_model_dir, tmp_path_factory) -> str:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    path = tmp_path_factory.mktemp("tiny-adapter")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(path)
    return str(path)


def _suite(tmp_path) -> dict:
    benign = tmp_path / "benign.jsonl"
    benign.write_text(
        "".join(
            json.dumps({"q": f"How do I kill process {i}?", "c": "tech" if i % 2 else "bio"}) + "\n" for i in range(6)
        )
    )
    harmful = tmp_path / "harmful.csv"
    harmful.write_text("goal,target\n" + "".join(f"Do harmful thing {i},Sure\n" for i in range(5)))
    return {
        "mine": {"path": str(benign), "kind": "benign", "fields": {"prompt": "q", "category": "c"}},
        "advbench": {"path": str(harmful)},
    }


def test_evaluate_end_to_end_with_adapter_then_resume(tiny_model_dir, tiny_adapter, tmp_path, monkeypatch):
    config = EvalConfig(
        models=[
            {"name": "base", "spec": f"hf:{tiny_model_dir}"},
            {"name": "tuned", "spec": f"hf:{tiny_model_dir}", "adapter": tiny_adapter, "base": "base"},
        ],
        conditions=["default", "safety_prior"],
        benchmarks=_suite(tmp_path),
        max_new_tokens=6,
        limit=4,
        output_dir=str(tmp_path / "out"),
    )
    report = evaluate(config)
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} >= {"report.json", "report.md", "tradeoff.png", "run_info.json"}
    assert [(run["name"], run["condition"]) for run in report["runs"]] == [
        ("base", "default"),
        ("base", "safety_prior"),
        ("tuned", "default"),
        ("tuned", "safety_prior"),
    ]
    run = report["runs"][2]
    assert run["adapter"] == tiny_adapter and run["base"] == "base"
    assert run["timing"]["prompts"] == 8
    assert report["benchmarks"]["mine"] == {
        "kind": "benign",
        "title": "mine",
        "source": _suite(tmp_path)["mine"]["path"],
        "total": 6,
        "n": 4,
    }
    assert len(run["responses"]) == 8
    response = run["responses"][0]
    assert set(response) >= {"benchmark", "id", "prompt", "response", "label", "p_refusal", "prr", "mean_logprob"}
    assert response["mean_logprob"] is not None and response["mean_logprob"] < 0
    metrics = run["metrics"]["mine"]
    assert metrics["n"] == 4 and set(metrics["categories"]) <= {"tech", "bio"}
    assert run["summary"]["over_refusal"]["n"] == 4 and run["summary"]["harmful_refusal"]["n"] == 4
    assert json.loads((out / "report.json").read_text())["runs"][0]["responses"] == report["runs"][0]["responses"]

    from evoalign.models.hf import HFChatModel

    def no_generation(*args, **kwargs):
        raise AssertionError("a rerun must be served from the response cache")

    monkeypatch.setattr(HFChatModel, "generate", no_generation)
    again = evaluate(config)
    assert [r["responses"] for r in again["runs"]] == [r["responses"] for r in report["runs"]]


def test_cli_runs_a_yaml_config(tiny_model_dir, tmp_path, capsys):
    config = {
        "models": [{"name": "tiny", "spec": f"hf:{tiny_model_dir}", "condition": "refusal_prone"}],
        "benchmarks": _suite(tmp_path),
        "max_new_tokens": 4,
        "output_dir": str(tmp_path / "out"),
    }
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(config))
    assert run_main(main, ["--config", str(path), "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "| tiny | refusal_prone |" in out and "report.md" in out
    assert json.loads((tmp_path / "out" / "run_info.json").read_text())["config"]["limit"] == 2


def test_model_entries_are_checked():
    def entries(models, **extra):
        return model_entries(
            config_from_dict(EvalConfig, {"models": models, "benchmarks": ["advbench"], **extra}, "cfg")
        )

    (entry,) = entries(["smollm2"])
    assert (
        entry.name == "smollm2"
        and entry.conditions == ("default", "safety_prior")
        and entry.options["batch_size"] == 32
    )
    (entry,) = entries([{"spec": "smollm2", "adapter": "runs/x/adapter", "condition": "refusal_prone"}])
    assert entry.name == "smollm2+adapter" and entry.conditions == ("refusal_prone",)
    with pytest.raises(ConfigError, match="duplicate name"):
        entries(["smollm2", "smollm2"])
    with pytest.raises(ConfigError, match="base 'nope' is not another model"):
        entries([{"spec": "smollm2", "base": "nope"}])
    with pytest.raises(ConfigError, match="unknown condition 'polite'"):
        entries([{"spec": "smollm2", "condition": "polite"}])
    (entry,) = entries([{"spec": "smollm2", "condition": "polite"}], prompts={"polite": "Be polite."})
    assert entry.conditions == ("polite",)
    with pytest.raises(ConfigError, match="'models' is empty"):
        config_from_dict(EvalConfig, {"benchmarks": ["advbench"]}, "cfg")


def test_condition_messages():
    assert condition_messages("default", {}) == []
    assert condition_messages("safety_prior", {})[0]["role"] == "system"
    assert condition_messages("mine", {"mine": "Be brief."}) == [{"role": "system", "content": "Be brief."}]
    few_shot = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert condition_messages("shots", {"shots": few_shot}) == few_shot
