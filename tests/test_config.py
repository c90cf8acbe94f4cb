"""The one config system: YAML + flags through TRL's parser, every command's --help, one-line errors."""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from evoalign.cli import COMMANDS
from evoalign.cli import main as cli_main
from evoalign.config import ConfigParser, parse_config
from evoalign.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Example:
    """An example config."""

    name: str = field(default="x", metadata={"help": "a name"})
    count: int = field(default=1, metadata={"help": "how many (100% of them)"})
    limit: int | None = field(default=None, metadata={"help": "at most this many"})
    resume: bool = field(default=False, metadata={"help": "continue"})
    items: list = field(default_factory=lambda: ["a"], metadata={"help": "a list"})
    sampling: dict = field(default_factory=lambda: {"temperature": 1.0, "top_p": 0.9}, metadata={"help": "a map"})
    source: Any = field(default=None, metadata={"help": "a path or a mapping"})

    def validate(self, where: str) -> None:
        if self.count < 0:
            raise ConfigError(f"{where}: 'count' must be >= 0")


def write(tmp_path: Path, data: dict) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_yaml_sets_values_and_flags_override_them(tmp_path):
    config = write(tmp_path, {"name": "from-yaml", "count": 3, "source": {"path": "s.jsonl", "limit": 2}})
    parsed = parse_config(Example, ["--config", config, "--count", "5", "--items", "[b, c]", "--resume"])
    assert (parsed.name, parsed.count, parsed.items, parsed.resume) == ("from-yaml", 5, ["b", "c"], True)
    parsed = parse_config(Example, ["--config", config, "--source.limit", "4", "--sampling.top_p", "0.5"])
    assert parsed.source == {"path": "s.jsonl", "limit": 4}
    assert parsed.sampling == {"temperature": 1.0, "top_p": 0.5}, "a dotted flag merges into the default mapping"
    assert (
        parse_config(Example, ["--limit", "7"]).limit == 7 and parse_config(Example, ["--limit", "null"]).limit is None
    )
    assert parse_config(Example, ["--resume", "false"]).resume is False


@pytest.mark.parametrize(
    ("data", "flags", "message"),
    [
        ({"cout": 3}, [], r"config.yaml: unknown key 'cout' \(did you mean 'count'\?\)"),
        ({}, ["--cont", "3"], r"flags: unknown key 'cont' \(did you mean 'count'\?\)"),
        ({"count": "three"}, [], r"config.yaml: 'count' must be int, got 'three'"),
        ({"items": "not-a-list"}, [], r"'items' must be list"),
        ({}, ["--count", "three"], r"flags: argument --count: invalid int value: 'three'"),
        ({}, ["--items", "[a,"], r"invalid YAML"),
        ({}, ["--nme.x", "1"], r"unknown key 'nme' \(did you mean 'name'\?\)"),
        ({"count": -1}, [], r"config.yaml: 'count' must be >= 0"),
    ],
)
def test_bad_input_is_one_config_error_naming_the_file_and_key(tmp_path, data, flags, message):
    with pytest.raises(ConfigError, match=message) as raised:
        parse_config(Example, ["--config", write(tmp_path, data), *flags])
    assert "\n" not in str(raised.value)


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ncount: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: invalid YAML"):
        parse_config(Example, ["--config", str(path)])


def test_env_block_sets_environment_variables(tmp_path, monkeypatch):
    monkeypatch.delenv("EVOALIGN_TEST_VARIABLE", raising=False)
    parse_config(Example, ["--config", write(tmp_path, {"env": {"EVOALIGN_TEST_VARIABLE": 1}})])
    import os

    assert os.environ.pop("EVOALIGN_TEST_VARIABLE") == "1"


CONFIG_CLASSES = {
    "quickstart": "evoalign.quickstart:QuickstartConfig",
    "evolve": "evoalign.evolve.config:EvolveConfig",
    "build": "evoalign.build.config:BuildConfig",
    "eval": "evoalign.eval.runner:EvalConfig",
    "eval-data": "evoalign.eval.data_quality:DataQualityConfig",
    "judge": "evoalign.judges.cli:JudgeConfig",
    "generate": "evoalign.generate:GenerateConfig",
    "generate-orbench": "evoalign.generators.config:ORBenchConfig",
    "generate-phtest": "evoalign.generators.config:PHTestConfig",
}


def _config_classes(command: str) -> list[type]:
    if command in ("sft", "dpo"):  # script, training and model arguments
        from evoalign.train.recipes import make_parser

        return list(make_parser(command).dataclass_types)
    module, _, name = CONFIG_CLASSES[command].partition(":")
    return [getattr(importlib.import_module(module), name)]


def test_every_command_is_covered():
    assert set(COMMANDS) == {*CONFIG_CLASSES, "sft", "dpo"}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_lists_every_key_with_its_help(command, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli_main([command, "--help"])
    assert stopped.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    classes = _config_classes(command)
    assert classes, command
    for cls in classes:
        for item in dataclasses.fields(cls):
            if not item.init:
                continue
            assert f"--{item.name}" in text, (command, item.name)
            words = " ".join(str(item.metadata.get("help", "")).split())[:40]
            assert words.replace("%%", "%") in text.replace("%%", "%"), (command, item.name, words)


def test_recipes_take_the_same_parser():
    from evoalign.train.recipes import make_parser

    assert isinstance(make_parser("sft"), ConfigParser) and isinstance(make_parser("dpo"), ConfigParser)


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return [value] if isinstance(value, str) else []


SHIPPED_YAML = sorted(
    p for p in ROOT.rglob("*.yaml") if not {".venv", "runs", ".git"} & set(p.relative_to(ROOT).parts)
)


def test_no_shipped_config_names_a_path_outside_the_repository():
    assert len(SHIPPED_YAML) > 20
    for path in SHIPPED_YAML:
        text = path.read_text()
        outside = [s for s in _strings(yaml.safe_load(text)) if s.startswith(("../", "/", "~")) or "/../" in s]
        assert not outside and "shared/data" not in text, (path, outside)
