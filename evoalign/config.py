"""YAML + flag configs for the datagen and eval stage scripts, in the TRL style.

`--config file.yaml` sets defaults, `--key value` flags override them (values are parsed as YAML, so
`--targets '[smollm2, hf:/path]'` works), and dotted flags reach into mapping fields
(`--fitness.lambda 0.1`). Unknown or mistyped keys are errors that name the file and the key and
suggest the closest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from evoalign.errors import ConfigError
from evoalign.io import read_text_strict

T = TypeVar("T")


def _suggest(key: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_type(name: str, value: Any, annotation: Any, where: str) -> Any:
    """Coerce simple scalars and reject values of the wrong kind with a message naming the field."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check_type(name, value, arg, where)
            except ConfigError as err:
                errors.append(err)
        raise errors[0]
    if annotation is Any or annotation is object:
        return value
    expected = origin or annotation
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected in (list, tuple) and isinstance(value, (list, tuple)):
        return list(value)
    if expected is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: '{name}' must be true or false, got {value!r}")
    if isinstance(expected, type) and not isinstance(value, expected):
        raise ConfigError(f"{where}: '{name}' must be {expected.__name__}, got {type(value).__name__} {value!r}")
    return value


def config_from_dict(cls: type[T], data: dict[str, Any], where: str) -> T:
    """Build dataclass `cls` from `data`, rejecting unknown keys and values of the wrong type."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown key '{key}'{_suggest(key, list(fields))}")
        kwargs[key] = _check_type(key, value, hints[key], where)
    try:
        config = cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from None
    validate = getattr(config, "validate", None)
    if validate:
        validate(where)
    return config


def _help(cls: type) -> str:
    lines = [f"usage: --config FILE.yaml [--key value ...]\n\n{(cls.__doc__ or '').strip()}\n\nkeys:"]
    for field in dataclasses.fields(cls):
        default = field.default if field.default is not dataclasses.MISSING else "(required)"
        if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = field.default_factory()  # type: ignore[misc]
        lines.append(f"  --{field.name} (default: {default!r})\n      {field.metadata.get('help', '')}")
    return "\n".join(lines)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {} if child is None else child
            if not isinstance(child, dict):
                raise ConfigError(f"flag --{key}: '{part}' is not a mapping")
            node[part] = child
        node = child
    node[parts[-1]] = value


def parse_args(cls: type[T], argv: Sequence[str] | None = None) -> T:
    """Parse `--config file.yaml` plus `--key value` overrides into dataclass `cls`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(_help(cls))
        raise SystemExit(0)
    data: dict[str, Any] = {}
    where = "flags"
    overrides: list[tuple[str, Any]] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument '{arg}'; flags look like --key value")
        key, has_value, value = arg[2:].partition("=")
        if not has_value:
            if index + 1 < len(argv) and not argv[index + 1].startswith("--"):
                index += 1
                value = argv[index]
            else:
                value = "true"  # a bare flag such as --resume
        index += 1
        key = key.replace("-", "_")
        if key == "config":
            data = load_yaml_mapping(value)
            where = value
        else:
            overrides.append((key, yaml.safe_load(value)))
    for key, value in overrides:
        _set_dotted(data, key, value)
    return config_from_dict(cls, data, where)


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Load a YAML file that must hold a mapping; syntax errors name the file and line."""
    text = read_text_strict(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: invalid YAML ({getattr(err, 'problem', err)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys to values")
    return data


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
