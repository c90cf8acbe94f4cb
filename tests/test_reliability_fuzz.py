"""Fuzz: seeded malformed configs, flags and input rows through every stage's entry point (`evoalign <stage>`,
in-process). Each case must exit with code 2, print exactly one line (`error: ...`) on stderr, and leave no run
folder (or output file) behind. Models are never reached: loading or checking one fails the test, so every bad
value is caught while the config is parsed or the input read, before any model sees it."""

from __future__ import annotations

import dataclasses
import json
import random
import time
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from evoalign import cli
from tests.reliability_support import BENIGN_INSTRUCTIONS, HARMFUL_PROMPTS, evolved_row

CASES_PER_STAGE = 200  # at least this many cases through each stage
RANDOM_CASES = 50  # at least this many seeded combinations per stage
KEY = "sk-live0123456789abcdefABCDEF"  # a pasted key: never echoed


class ReachedModels(BaseException):
    """A malformed case got past parsing and input reading to the models."""


@pytest.fixture(autouse=True)
def _no_models(monkeypatch):
    def reached(*args: Any, **kwargs: Any) -> None:
        raise ReachedModels(f"a model was loaded or checked: {args[:2]}")

    for target in (
        "evoalign.models.pool.ModelPool.check",
        "evoalign.models.pool.load_model",
        "evoalign.generate.load_model",
    ):
        monkeypatch.setattr(target, reached)
    monkeypatch.setenv("EVOALIGN_NO_PROGRESS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# ---- the valid starting point of each stage -------------------------------------------------------------------


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def base_configs(tmp: Path) -> dict[str, tuple[dict[str, Any], str, str]]:
    """stage -> (config, the key of its input file, the key of the path that must not appear)."""
    seeds = _write_jsonl(tmp / "seeds.jsonl", [{"instruction": text} for text in BENIGN_INSTRUCTIONS[:3]])
    evolved = _write_jsonl(tmp / "evolved.jsonl", [evolved_row(text) for text in BENIGN_INSTRUCTIONS[:3]])
    harmful = _write_jsonl(tmp / "harmful.jsonl", [{"instruction": text} for text in HARMFUL_PROMPTS[:3]])
    bench = _write_jsonl(tmp / "bench.jsonl", [{"prompt": text} for text in BENIGN_INSTRUCTIONS[:3]])
    responses = _write_jsonl(
        tmp / "responses.jsonl", [{"prompt": text, "response": "Run kill PID."} for text in BENIGN_INSTRUCTIONS[:3]]
    )
    run = str(tmp / "run")
    return {
        "evolve": (
            {"seeds": seeds, "output_dir": run, "targets": ["smollm2"], "verifier": "rules", "iterations": 1},
            "seeds",
            "output_dir",
        ),
        "build": (
            {"evolved": evolved, "harmful_prompts": {"path": harmful}, "output_dir": run, "responder": "smollm2"},
            "evolved",
            "output_dir",
        ),
        "eval": (
            {
                "models": ["smollm2"],
                "benchmarks": {"mine": {"path": bench, "kind": "benign", "fields": {"prompt": "prompt"}}},
                "output_dir": run,
            },
            "benchmarks",
            "output_dir",
        ),
        "eval-data": ({"data": seeds, "targets": ["smollm2"], "output_dir": run}, "data", "output_dir"),
        "judge": ({"input": responses, "output": str(tmp / "run" / "judged.jsonl")}, "input", "output"),
        "generate": (
            {"model": "smollm2", "input": bench, "prompt_field": "prompt", "output": str(tmp / "run" / "out.jsonl")},
            "input",
            "output",
        ),
    }


# ---- malformed values -----------------------------------------------------------------------------------------

BAD_BY_TYPE: dict[Any, list[Any]] = {
    bool: ["perhaps", 2, [True]],
    int: ["many", 1.5, [1], {"a": 1}, True],
    float: ["lots", [0.5], {"a": 1}, True],
    str: [[1], {"a": 1}, 3],
    list: ["just a string", 5, {"a": 1}],
    dict: [[1], "x", 5],
}
BAD_SOURCES = [
    {"limit": -1},
    {"limit": 0},
    {"limit": "ten"},
    {"limit": 1.5},
    {"path": 5},
    {"path": ["a.jsonl"]},
    {"fields": ["instruction"]},
    {"fields": {"instruction": 5}},
    {"filter": "category"},
    {"colour": "red"},
    {"split": 3},
]
BAD_SAMPLING = [
    {"temperature": -1},
    {"temperature": "hot"},
    {"top_p": 0},
    {"top_p": 2},
    {"n": 0},
    {"max_new_tokens": 0},
    {"temprature": 0.7},
    {"top_k": -1},
    {"top_k": "x"},
    {"seed": "x"},
]
BAD_MODELS = [
    "bogus",
    "",
    5,
    [],
    {"spec": 5},
    {"spec": "hf:/m", "batch_size": 0},
    {"spec": "hf:/m", "batch_size": "a"},
    {"spec": "hf:/m", "colour": 1},
    {"spec": "hf:/m", "trust_remote_code": "yes"},
    {"spec": "openai:m@http://127.0.0.1:9/v1", "api_key_env": KEY},
    {"spec": "openai:m@http://127.0.0.1:9/v1", "timeout": -1},
    {"spec": "openai:m@http://127.0.0.1:9/v1", "max_concurrency": 0},
    {"spec": "openai:m@http://127.0.0.1:9/v1", "max_retries": "lots"},
    {"adapter": "/x"},
]
BAD_CONDITIONS = ["nonexistent", [{"role": "boss", "content": "x"}], [5], {"a": 1}, [{"role": "system"}]]
BAD_VERIFIERS = [5, [], {"spec": "bogus"}, ["rules"], "rulez", [{"spec": "hf:/m", "batch_size": -2}]]
BAD_JUDGES = ["nonexistent", "llm:bogus", "llm:", "cascade:bogus", 5]

# key -> malformed values, by stage (ranges, enumerations, nested structures)
BAD_VALUES: dict[str, dict[str, list[Any]]] = {
    "evolve": {
        "iterations": [0, -1],
        "population": [0],
        "samples": [0, -3],
        "recombinations": [-1],
        "mutation_rounds": [0],
        "max_instruction_words": [0],
        "fresh_samples": [-1],
        "dedup_ngram": [0],
        "dedup_threshold": [0, 1.5],
        "refusal_floor": [0, 1, -0.1],
        "fitness": ["best"],
        "selection": ["random"],
        "recombination": ["crossover"],
        "fitness_lambda": [-0.1, "x"],
        "tau_min": [0, -1],
        "tau_start": [0.01],
        "tau_decay": [-0.1],
        "verifier_voting": ["plurality"],
        "verifier_strictness": ["paranoid"],
        "strategies": [["no_such_strategy"], "llm", [5]],
        "strategies_file": [5],
        "seeds": [None, 5, [1, 2], *({"path": "SEEDS", **bad} for bad in BAD_SOURCES)],
        "targets": [[], *([bad] for bad in BAD_MODELS), [{"spec": "smollm2", "condition": "nonexistent"}]],
        "mutator": BAD_MODELS[1:],
        "verifier": BAD_VERIFIERS,
        "judge": BAD_JUDGES,
        "condition": BAD_CONDITIONS,
        "target_sampling": BAD_SAMPLING,
        "mutator_sampling": BAD_SAMPLING,
        "output_dir": ["", 5],
    },
    "build": {
        "max_new_tokens": [0],
        "temperature": [-0.5],
        "retry_temperature": [-1],
        "max_judge_doubt": [1.5, -0.1],
        "max_retries": [-1],
        "truncated": ["chop"],
        "safety_ratio": [-1],
        "test_size": [0, 1, 2],
        "near_dup_threshold": [0, 2],
        "shingle_size": [0],
        "target_samples": [0],
        "target_temperature": [-1],
        "ches_drop_fraction": [1, -0.5],
        "ches_batch_size": [0],
        "assume_verdict": ["harmful"],
        "verifier_voting": ["plurality"],
        "verifier": BAD_VERIFIERS,
        "judge": BAD_JUDGES,
        "responder": BAD_MODELS,
        "refusal_writer": BAD_MODELS[1:],
        "target": BAD_MODELS[1:],
        "policy": BAD_MODELS[1:],
        "target_condition": BAD_CONDITIONS,
        "train_condition": BAD_CONDITIONS,
        "harmful_prompts": [5, [1], *({"path": "HARMFUL", **bad} for bad in BAD_SOURCES)],
        "output_dir": ["", 5],
    },
    "eval": {
        "max_new_tokens": [0, -5],
        "temperature": [-1],
        "batch_size": [0],
        "limit": [0, -1],
        "models": [[], *([bad] for bad in BAD_MODELS), [{"spec": "smollm2", "condition": "nonexistent"}]],
        "conditions": [[], ["nonexistent"], "default", [5]],
        "prompts": [{"mine": 5}, {"mine": [{"role": "boss", "content": "x"}]}, ["x"]],
        "benchmarks": [
            [],
            ["no_such_benchmark"],
            5,
            {"mine": {"path": "BENCH", "kind": "scary"}},
            {"mine": {"path": "BENCH", "kind": "benign", "limit": 0}},
            {"mine": {"path": "BENCH", "kind": "benign", "limit": -1}},
            {"mine": {"path": "BENCH", "kind": "benign", "limit": "x"}},
            {"mine": {"path": "BENCH", "kind": "benign", "fields": ["prompt"]}},
            {"mine": {"path": "BENCH", "kind": "benign", "colour": "red"}},
            {"mine": 5},
            {"xstest": {"limit": 0}},
        ],
        "judge": BAD_JUDGES,
        "output_dir": ["", 5],
    },
    "eval-data": {
        "msttr_window": [0],
        "self_bleu_n": [0],
        "distinct_n": [[0], ["x"], []],
        "max_new_tokens": [0],
        "batch_size": [0],
        "limit": [0, -1],
        "verifier_voting": ["plurality"],
        "verifier_strictness": ["paranoid"],
        "verifier": BAD_VERIFIERS,
        "judge": BAD_JUDGES,
        "condition": ["nonexistent"],
        "targets": [[bad] for bad in BAD_MODELS],
        "data": [None, 5, *({"path": "SEEDS", **bad} for bad in BAD_SOURCES)],
        "output_dir": ["", 5],
    },
    "judge": {"judge": BAD_JUDGES, "input": ["", 5]},
    "generate": {
        "n": [0],
        "temperature": [-1],
        "top_p": [0, 2],
        "max_new_tokens": [0],
        "condition": ["nonexistent"],
        "model": BAD_MODELS,
        "input": ["", 5],
        "prompt_field": ["", 5],
    },
}

# lines of an input file that must each be refused (the file's other rows are fine)
BAD_ROWS = [
    "{not json",
    "[1, 2]",
    '"just a string"',
    '{"instruction": ""}',
    '{"instruction": "   "}',
    '{"instruction": 5}',
    '{"instruction": null}',
    '{"instruction": ["a"]}',
    '{"other": "no instruction"}',
    '{"instruction": "a\x00b"}',
]
INPUT_FIELDS = {"evolve": "instruction", "eval-data": "instruction", "build": "instruction", "eval": "prompt"}


def _flag_cases(stage: str) -> list[list[str]]:
    common = [["--no_such_key", "1"], ["--output_dir"], ["stray"], ["--config", "/no/such/file.yaml"]]
    by_stage = {
        "evolve": [
            ["--targets", "[unclosed"],
            ["--seeds", "{path: "],
            ["--iterations", "1.5"],
            ["--iterations", "many"],
            ["--resume", "maybe"],
            ["--target_sampling.temperature", "hot"],
            ["--target_sampling.temprature", "0.5"],
            ["--seeds.limit", "-1"],
            ["--target_sampling", "[1, 2]"],
        ],
        "build": [["--max_retries", "x"], ["--responder", "{spec: "], ["--test_size", "two"]],
        "eval": [
            ["--limit", "0"],
            ["--models", "[unclosed"],
            ["--temperature", "-1"],
            ["--benchmarks.mine.limit", "0"],
        ],
        "eval-data": [["--limit", "-1"], ["--distinct_n", "[0]"]],
        "judge": [["--judge", "nonexistent"]],
        "generate": [["--n", "0"], ["--top_p", "5"]],
    }
    return common + by_stage[stage]


def _hints(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _hints(inner[0]) if len(inner) == 1 else None
    return origin or annotation


def _config_class(stage: str) -> type:
    from evoalign.build.config import BuildConfig
    from evoalign.eval.data_quality import DataQualityConfig
    from evoalign.eval.runner import EvalConfig
    from evoalign.evolve.config import EvolveConfig
    from evoalign.generate import GenerateConfig
    from evoalign.judges.cli import JudgeConfig

    return {
        "evolve": EvolveConfig,
        "build": BuildConfig,
        "eval": EvalConfig,
        "eval-data": DataQualityConfig,
        "judge": JudgeConfig,
        "generate": GenerateConfig,
    }[stage]


def mutations(stage: str, base: dict[str, Any]) -> list[tuple[str, Callable[[dict, Path], list[str]]]]:
    """Every malformed change this stage must refuse: (description, apply(config, folder) -> extra flags)."""
    found: list[tuple[str, Callable[[dict, Path], list[str]]]] = []

    def set_value(key: str, value: Any) -> Callable[[dict, Path], list[str]]:
        def apply(config: dict, folder: Path) -> list[str]:
            config[key] = _resolve(value, config, base)
            return []

        return apply

    skip_types = {"render", "render_only"}
    for field in dataclasses.fields(_config_class(stage)):
        kind = _hints(typing.get_type_hints(_config_class(stage))[field.name])
        if field.name in skip_types:
            continue
        for value in BAD_BY_TYPE.get(kind, []):
            found.append((f"{field.name}: {value!r} (wrong type)", set_value(field.name, value)))
    for key, values in BAD_VALUES[stage].items():
        for value in values:
            found.append((f"{key}: {value!r}", set_value(key, value)))
    for key in list(base)[:3]:
        typo = key[:-1] if len(key) > 3 else key + "x"
        found.append((f"unknown key {typo!r}", lambda c, f, k=key, t=typo: (c.__setitem__(t, c.pop(k)), [])[1]))
    for flags in _flag_cases(stage):
        found.append((f"flags {flags}", lambda c, f, fl=tuple(flags): list(fl)))
    if stage in INPUT_FIELDS:
        for row in BAD_ROWS:
            found.append((f"input row {row!r}", lambda c, f, r=row: _bad_input(stage, c, f, r)))
        found.append(("input: non-UTF-8 bytes", lambda c, f: _bad_input(stage, c, f, None, raw=b"\xff\xfe bad\n")))
        found.append(("input: empty file", lambda c, f: _bad_input(stage, c, f, None, raw=b"")))
    if stage == "judge":
        for row in ('{"prompt": "p"}', '{"prompt": 5, "response": "r"}', "{bad", "[]"):
            found.append((f"judge row {row!r}", lambda c, f, r=row: _bad_judge_input(c, f, r)))
    return found


def _resolve(value: Any, config: dict, base: dict) -> Any:
    """Placeholders (SEEDS, HARMFUL, BENCH) in a malformed value stand for the stage's real input file."""
    if isinstance(value, dict):
        return {k: _resolve(v, config, base) for k, v in value.items()}
    if value == "SEEDS":
        return base.get("seeds") or base.get("data")
    if value == "HARMFUL":
        return base["harmful_prompts"]["path"]
    if value == "BENCH":
        return base["benchmarks"]["mine"]["path"]
    return value


def _bad_input(stage: str, config: dict, folder: Path, row: str | None, raw: bytes | None = None) -> list[str]:
    field = INPUT_FIELDS[stage]
    good = json.dumps({field: "How do I kill a Python process?"})
    if stage == "build":
        good = json.dumps(evolved_row("How do I kill a Python process?"))

    path = folder / "bad_input.jsonl"
    path.write_bytes(raw if raw is not None else f"{good}\n{row}\n".encode())
    if stage == "evolve":
        config["seeds"] = str(path)
    elif stage == "eval-data":
        config["data"] = str(path)
    elif stage == "build":
        config["evolved"] = str(path)
    else:
        config["benchmarks"] = {"mine": {"path": str(path), "kind": "benign", "fields": {"prompt": "prompt"}}}
    return []


def _bad_judge_input(config: dict, folder: Path, row: str) -> list[str]:
    path = folder / "bad_rows.jsonl"
    path.write_text(json.dumps({"prompt": "p", "response": "r"}) + "\n" + row + "\n")
    config["input"] = str(path)
    return []


def run_case(stage: str, config: dict[str, Any], flags: list[str], folder: Path, capsys) -> tuple[int, str]:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    capsys.readouterr()
    code = cli.main([stage, "--config", str(path), *flags])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("stage", ["evolve", "build", "eval", "eval-data", "judge", "generate"])
def test_malformed_configs_and_rows_exit_2_with_one_line_and_no_run_folder(stage, tmp_path, capsys):
    started = time.monotonic()
    bases = base_configs(tmp_path)
    base, _, output_key = bases[stage]
    cases = mutations(stage, base)
    rng = random.Random(f"fuzz-{stage}")
    chosen = [[case] for case in cases]  # every single mutation once, then seeded combinations of one or two
    chosen += [rng.sample(cases, k=rng.choice((1, 2))) for _ in range(max(RANDOM_CASES, CASES_PER_STAGE - len(cases)))]
    failures = []
    for index, picked in enumerate(chosen):
        folder = tmp_path / f"case{index}"
        folder.mkdir()
        config = json.loads(json.dumps(base))
        flags: list[str] = []
        for _, apply in picked:
            flags += apply(config, folder)
        names = " + ".join(name for name, _ in picked)
        try:
            code, err = run_case(stage, config, flags, folder, capsys)
        except ReachedModels as reached:
            failures.append(f"{names}: reached the models ({reached})")
            continue
        except Exception as crash:  # noqa: BLE001 - a traceback is exactly what this test looks for
            failures.append(f"{names}: traceback {type(crash).__name__}: {str(crash)[:200]}")
            continue
        lines = err.strip().splitlines()
        output = Path(str(base[output_key]))
        if code != 2 or len(lines) != 1 or not lines[0].startswith("error: "):
            failures.append(f"{names}: exit {code}, stderr {err.strip()[-300:]!r}")
        elif output.exists():
            failures.append(f"{names}: {output} was left behind")
        elif KEY in err:
            failures.append(f"{names}: the pasted key was echoed")
    assert not failures, f"{len(failures)} of {len(chosen)} cases failed:\n" + "\n".join(failures[:40])
    assert len(chosen) >= CASES_PER_STAGE
    assert time.monotonic() - started < 180
