"""Bad input (issue 9.3): each case through the real `evoalign` CLI gives exit code 2, one `error:` line naming
the file and line or the field, and no output folder. A bad model spec is found before any stage creates its
folder, so the corrected command then runs without `--resume`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evoalign.testing.openai_server import OpenAIServer
from tests.reliability_support import (
    SEEDS,
    TINY_EVOLVE,
    build_settings,
    cli,
    openai_model,
    scripted,
    write_jsonl,
    write_yaml,
)

pytestmark = pytest.mark.subprocess  # every case runs the real `evoalign` command
UNREACHABLE = "http://127.0.0.1:9/v1"  # the discard port: nothing listens there
KEY_ENV = "EVOALIGN_TEST_NO_SUCH_KEY"


def evolve(tmp_path: Path, *extra: str, seeds: Path | None = None) -> list[str]:
    """An evolve command on the rule-only tiny config; `extra` flags change one thing."""
    return ["evolve", "--config", str(TINY_EVOLVE), "--output_dir", str(tmp_path / "out")] + (
        ["--seeds.path", str(seeds or SEEDS), *extra]
    )


def eval_command(tmp_path: Path, benchmarks: object, model: object = "smollm2") -> list[str]:
    return ["eval", "--models", json.dumps([model]), "--benchmarks", json.dumps(benchmarks)] + (
        ["--output_dir", str(tmp_path / "out"), "--max_new_tokens", "4", "--limit", "2"]
    )


def benign_prompts(tmp_path: Path) -> dict:
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "How do I kill a process?"}, {"prompt": "Hi?"}])
    return {"mine": {"path": str(prompts), "kind": "benign"}}


def with_model(tmp_path: Path, model: object) -> list[list[str]]:
    """An evolve, an eval and a build command, each with `model` in one of its roles."""
    build = write_yaml(
        tmp_path / "built.yaml", {**build_settings(tmp_path, model), "output_dir": str(tmp_path / "out")}
    )
    return [
        evolve(tmp_path, "--mutator", json.dumps(model), "--strategies", "[anger]"),
        eval_command(tmp_path, benign_prompts(tmp_path), model),
        ["build", "--config", str(build)],
    ]


def build_command(tmp_path: Path, harmful: Path, **changes: object) -> list[str]:
    evolved = write_jsonl(tmp_path / "evolved.jsonl", [{"instruction": "How do I kill a process?"}])
    settings = {
        "evolved": str(evolved),
        "harmful_prompts": {"path": str(harmful), "fields": {"instruction": "goal"}},
        "output_dir": str(tmp_path / "out"),
        "responder": "smollm2",
        **changes,
    }
    return ["build", "--config", str(write_yaml(tmp_path / "build.yaml", settings))]


def assert_rejected(tmp_path: Path, args: list[str], *named: str, left: tuple[str, ...] = ()) -> str:
    """Exit code 2, one `error:` line on stderr naming each of `named`, and no output folder (or one holding
    only the files `left`)."""
    done = cli(*args, cwd=tmp_path)
    lines = [line for line in done.stderr.splitlines() if line.strip() and "it/s]" not in line]
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
    for name in named:
        assert name in lines[0], (name, lines[0])
    out = tmp_path / "out"
    assert (sorted(p.name for p in out.iterdir()) if out.exists() else []) == sorted(left)
    assert out.exists() == bool(left)
    return lines[0]


def assert_runs(tmp_path: Path, args: list[str], **env: str) -> None:
    """The corrected command succeeds as it is, without --resume."""
    done = cli(*args, cwd=tmp_path, **env)
    assert done.returncode == 0, done.stderr[-2000:]


def test_malformed_jsonl_line(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text('{"instruction": "How do I kill a process?"}\n{"instruction": oops\n')
    assert_rejected(tmp_path, evolve(tmp_path, seeds=seeds), "seeds.jsonl:2", "malformed JSON")


def test_csv_with_missing_columns(tmp_path):
    benign = tmp_path / "mine.csv"
    benign.write_text("question,category\nHow do I kill a process?,tech\n")
    args = eval_command(tmp_path, {"mine": {"path": str(benign), "kind": "benign"}})
    assert_rejected(tmp_path, args, "mine.csv", "no prompt column", "question")
    harmful = tmp_path / "harmful.csv"
    harmful.write_text("behaviour,target\nDo a harmful thing,Sure\n")
    assert_rejected(tmp_path, build_command(tmp_path, harmful), "harmful.csv", "goal")


@pytest.mark.parametrize("instruction", ["", "   \t "])
def test_empty_or_whitespace_instruction(tmp_path, instruction):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [{"instruction": "Fine"}, {"instruction": instruction}])
    assert_rejected(tmp_path, evolve(tmp_path, seeds=seeds), "seeds.jsonl:2", "instruction")


def test_instruction_longer_than_the_model_context(tmp_path, tiny_model_dir):
    seeds = write_jsonl(
        tmp_path / "long.jsonl", [{"instruction": "How do I kill a process?"}, {"instruction": "Why? " * 2000}]
    )
    args = evolve(tmp_path, "--targets", f"[hf:{tiny_model_dir}]", seeds=seeds)
    assert_rejected(tmp_path, args, "long.jsonl:2", "Why? Why?", "tokens", "context of 512")
    benchmark = {"path": str(seeds), "kind": "benign", "fields": {"prompt": "instruction"}}
    args = eval_command(tmp_path, {"long": benchmark}, f"hf:{tiny_model_dir}")
    # eval checks each model's prompts once it is loaded, in a folder that holds only its run info (a rerun
    # of an eval needs no --resume)
    assert_rejected(tmp_path, args, "long.jsonl:2", "4030 tokens", "context of 512", left=("run_info.json",))


def test_non_utf8_bytes(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_bytes(b'{"instruction": "fine"}\n{"instruction": "caf\xe9 \xff"}\n')
    assert_rejected(tmp_path, evolve(tmp_path, seeds=seeds), "seeds.jsonl:2", "UTF-8")


def test_unknown_or_mistyped_yaml_keys(tmp_path):
    config = write_yaml(tmp_path / "evolve.yaml", {"iteratons": 3, "output_dir": str(tmp_path / "out")})
    assert_rejected(tmp_path, ["evolve", "--config", str(config)], "evolve.yaml", "iteratons", "iterations")
    config = write_yaml(tmp_path / "evolve.yaml", {"iterations": "three", "output_dir": str(tmp_path / "out")})
    assert_rejected(tmp_path, ["evolve", "--config", str(config)], "iterations")
    config = write_yaml(tmp_path / "eval.yaml", {"benchmark": ["xstest_safe"], "output_dir": str(tmp_path / "out")})
    assert_rejected(tmp_path, ["eval", "--config", str(config)], "eval.yaml", "benchmark")


def test_missing_model_path(tmp_path, tiny_model_dir):
    missing = str(tmp_path / "no-such-model")
    adapter = eval_command(tmp_path, benign_prompts(tmp_path), {"spec": f"hf:{tiny_model_dir}", "adapter": missing})
    for args in (
        evolve(tmp_path, "--targets", f"[hf:{missing}]"),
        *with_model(tmp_path, f"hf:{missing}")[1:],
        adapter,
    ):
        assert_rejected(tmp_path, args, missing)
    assert_runs(tmp_path, evolve(tmp_path, "--targets", f"[hf:{tiny_model_dir}]", "--iterations", "1"))


def test_unreachable_model_server(tmp_path):
    for args in with_model(tmp_path, {"spec": f"openai:m@{UNREACHABLE}", "max_retries": 0, "timeout": 2}):
        assert_rejected(tmp_path, args, UNREACHABLE)
    with OpenAIServer(scripted) as server:
        assert_runs(tmp_path, with_model(tmp_path, openai_model(server.base_url))[1])


def test_missing_api_key_variable(tmp_path):
    with OpenAIServer(scripted) as server:
        model = openai_model(server.base_url, api_key_env=KEY_ENV)
        for args in with_model(tmp_path, model):
            assert_rejected(tmp_path, args, KEY_ENV)
        assert_runs(tmp_path, with_model(tmp_path, model)[2], **{KEY_ENV: "sk-test"})


def test_empty_seed_file(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("\n  \n")
    assert_rejected(tmp_path, evolve(tmp_path, seeds=seeds), "seeds.jsonl")


def test_unknown_benchmark_name(tmp_path):
    assert_rejected(tmp_path, eval_command(tmp_path, ["xstest_saef"]), "xstest_saef")
