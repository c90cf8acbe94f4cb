"""The evolve stage end to end: config + flags, output files, resume, and a loopback mutator/verifier."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from evoalign.errors import ConfigError
from evoalign.evolve.cli import main
from evoalign.io import read_jsonl
from evoalign.testing import openai_server
from tests.reliability_support import in_protocol, section

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "datagen" / "configs" / "tiny.yaml")
SEEDS = str(ROOT / "datagen" / "seeds" / "starter.jsonl")


def tiny_args(output_dir: Path, model_dir: str, *extra: str) -> list[str]:
    return [
        "--config", TINY,
        "--output_dir", str(output_dir),
        "--seeds.path", SEEDS,
        "--targets", f"[{{spec: 'hf:{model_dir}', batch_size: 64}}]",
        *extra,
    ]  # fmt: skip


def test_offline_run_writes_a_datasets_loadable_set_and_a_summary(tmp_path, tiny_model_dir, capsys):
    run_dir = tmp_path / "run"
    assert main(tiny_args(run_dir, tiny_model_dir)) == 0
    printed = capsys.readouterr().out
    assert "mean fitness" in printed and "refusal rate on fresh samples" in printed
    for name in ("config.yaml", "run_info.json", "cache.sqlite", "summary.json", "duplicates.jsonl"):
        assert (run_dir / name).exists(), name
    rows = read_jsonl(run_dir / "evolved.jsonl")
    assert 1 <= len(rows) <= 6
    row = rows[0]
    assert {"seed", "instruction", "lineage", "fitness", "targets", "verdict", "reason", "fresh"} <= set(row)
    assert row["verdict"] == "benign" and len(row["lineage"]) == 3
    target = row["targets"][0]
    # K = 2 samples per evaluation: the final instruction keeps those it was selected on and each re-estimate's
    assert target["model"].startswith("hf:") and len(target["responses"]) >= 2 and len(target["responses"]) % 2 == 0
    assert {"text", "label", "p_refusal", "logprob_sum", "num_tokens"} <= set(target["responses"][0])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [it["iteration"] for it in summary["iterations"]] == [0, 1, 2, 3]
    assert set(summary["strategies"]) >= {"recombine_rule"}
    from datasets import load_dataset

    loaded = load_dataset("json", data_files=str(run_dir / "evolved.jsonl"), split="train")
    assert loaded.num_rows == len(rows) and "lineage" in loaded.column_names


def test_existing_run_needs_resume_and_resume_reproduces_the_output(tmp_path, tiny_model_dir):
    run_dir = tmp_path / "run"
    main(tiny_args(run_dir, tiny_model_dir, "--iterations", "1"))
    with pytest.raises(ConfigError, match="--resume"):
        main(tiny_args(run_dir, tiny_model_dir, "--iterations", "1"))
    first = (run_dir / "evolved.jsonl").read_text()
    main(tiny_args(run_dir, tiny_model_dir, "--iterations", "1", "--resume"))
    assert (run_dir / "evolved.jsonl").read_text() == first
    main(tiny_args(run_dir, tiny_model_dir, "--iterations", "2", "--resume"))  # extend a finished run
    assert all(len(row["lineage"]) == 2 for row in read_jsonl(run_dir / "evolved.jsonl"))


def test_config_errors_are_one_line_and_early(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'iterations'"):
        main(["--config", TINY, "--output_dir", str(tmp_path), "--iteratons", "2"])
    with pytest.raises(ConfigError, match="need a mutator"):
        main(["--config", TINY, "--output_dir", str(tmp_path), "--seeds.path", SEEDS, "--strategies", "[anger]"])
    with pytest.raises(ConfigError, match="fitness"):
        main(["--config", TINY, "--output_dir", str(tmp_path), "--fitness", "elbo"])


# ---- a scripted mutator and verifier behind the loopback OpenAI-compatible server ---------------------------

BEHAVIOUR = {  # strategy prompt keyword -> what the scripted mutator answers
    "extreme anger": "valid",
    "violent words": "valid_violent",
    "extreme despair": "no_brackets",
    "extreme disgust": "empty",
    "content filters": "refusal",
    "social groups": "unchanged",
}


def scripted(messages, request) -> str:
    prompt = messages[-1]["content"]
    if prompt.startswith("You are a safety reviewer"):
        instruction = section(prompt, "INSTRUCTION")
        answer = "Clearly harmful. [[harmful]]" if "REJECT" in instruction else "Alarming words only. [[benign]]"
        return in_protocol(prompt, answer)
    if prompt.startswith("Here are two harmless instructions"):
        first, second = re.search(r"1\. (.*)\n2\. (.*)\n", prompt).groups()
        return f"[{first} {second.split()[-1]}] (Both parts were harmless.)"
    instruction = re.search(r"Instruction: (.*)\n", prompt).group(1)
    behaviour = next((b for key, b in BEHAVIOUR.items() if key in prompt), "valid")
    return {
        "valid": f"[I'm furious! {instruction}] (It only adds anger to a harmless request.)",
        "valid_violent": f"[{instruction} This bug is killing me.] (The violence is figurative.)",
        "no_brackets": f"Here you go: {instruction} - so sad.",
        "empty": "",
        "refusal": "I'm sorry, but I can't help with rewriting that request.",
        "unchanged": f"[{instruction}] (It is the same request.)",
    }[behaviour]


def test_malformed_mutator_output_is_counted_and_skipped(tmp_path, tiny_model_dir):
    with openai_server.OpenAIServer(scripted) as server:
        spec = f"openai:test-model@{server.base_url}"
        args = tiny_args(
            tmp_path / "run",
            tiny_model_dir,
            "--mutator", spec,
            "--verifier", f"['{spec}']",
            "--strategies", "[anger, despair, disgust, generic_keywords, prejudiced_keywords, violent_keywords]",
            "--selection", "fixed",
            "--population", "6",
            "--iterations", "2",
            "--mutation_rounds", "2",
        )  # fmt: skip
        assert main(args) == 0
        reviewed = [r for r in server.requests if "safety reviewer" in r["messages"][-1]["content"]]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["failures"]["no_brackets"] > 0
    assert summary["failures"]["empty"] > 0
    assert summary["failures"]["mutator_refusal"] > 0
    assert summary["failures"]["unchanged"] > 0
    assert summary["strategies"]["anger"]["evaluated"] > 0
    assert summary["strategies"]["recombine_llm"]["attempts"] > 0
    assert any("says it is harmless because" in r["messages"][-1]["content"] for r in reviewed)
    rows = read_jsonl(tmp_path / "run" / "evolved.jsonl")
    assert rows and all(row["verdict"] == "benign" for row in rows)
    assert any(row["instruction"].startswith("I'm furious!") for row in rows)


def test_shipped_configs_parse_and_resolve_their_strategies():
    from evoalign.config import parse_config
    from evoalign.evolve.config import EvolveConfig
    from evoalign.evolve.strategies import available_strategies, select_strategies

    paper = parse_config(EvolveConfig, ["--config", str(ROOT / "datagen" / "configs" / "paper.yaml")])
    assert (paper.iterations, paper.population, paper.recombinations, paper.samples) == (5, 4, 2, 10)
    assert (paper.fitness, paper.fitness_lambda, paper.condition) == ("paper", 0.03, "safety_prior")
    assert paper.recombination_operator == "llm" and paper.verifier == ["openai:gpt-4o"]
    assert len(select_strategies(paper.strategies, available_strategies(), has_mutator=True)) == 9
    offline = parse_config(EvolveConfig, ["--config", str(ROOT / "datagen" / "configs" / "offline.yaml")])
    assert offline.mutator is None and offline.verifier == "rules" and offline.condition == "refusal_prone"
    assert offline.recombination_operator == "rule" and offline.iterations == 5
