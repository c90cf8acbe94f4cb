"""The one config system of every command: dataclasses with `help`, parsed by TRL's `TrlParser`.

`--config file.yaml` sets values and `--key value` flags override them, as in TRL's scripts; `--help` lists every
key with its help and default. Stage commands (evolve, build, eval, eval-data, judge, generate, quickstart) and
the recipes (sft, dpo, merge) all go through `ConfigParser`:

- flags of simple types convert as in TRL (`--iterations 3`, `--learning_rate 1e-5`); an optional one also takes
  `null` (`--limit null`);
- keys that hold lists, mappings or any value take YAML (`--targets '[smollm2, hf:/path]'`,
  `--seeds '{path: s.jsonl, limit: 5}'`), and a dotted flag reaches into a mapping (`--target_sampling.top_p 0.9`);
- a bare boolean flag means true (`--resume`), and `--no_<key>` turns a default-true one off;
- a YAML `env:` mapping sets environment variables (as in TRL).

Unknown keys, in the file or as flags, values of the wrong type and malformed YAML are `ConfigError`s naming the
file (or `flags`) and the key, with the closest valid key suggested. After parsing, each config's
`validate(where)` method runs: the one place for checks of ranges, choices and combinations of keys.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import os
import sys
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from transformers import HfArgumentParser
from trl import TrlParser

from evoalign.errors import ConfigError
from evoalign.io import read_text_strict

T = TypeVar("T")
_NULLS = ("null", "None", "~")
_SCALARS = (str, int, float)
EPILOG = (
    "--config FILE.yaml sets values and --key value overrides them. Lists and mappings are YAML: "
    "--targets '[smollm2, hf:/path]'; --target_sampling.top_p 0.9 sets one key of a mapping; --resume alone is true."
)


def _suggest(key: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _takes_yaml(annotation: Any) -> bool:
    """Whether a field's values are YAML on the command line: Any, lists of non-scalars, mappings, or a union
    holding one of these."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any or annotation in (list, dict) or origin is dict:
        return True
    if origin is list:
        return not args or args[0] not in _SCALARS
    if origin in (typing.Union, types.UnionType):
        return any(_takes_yaml(arg) for arg in args if arg is not type(None))
    return False


def _optional_scalar(annotation: Any) -> type | None:
    """X for `X | None` with X in str, int, float (not bool), else None."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args and len(args) == 2:
        inner = next(arg for arg in args if arg is not type(None))
        return inner if inner in _SCALARS else None
    return None


def yaml_value(text: str) -> Any:
    """A flag value parsed as YAML."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise argparse.ArgumentTypeError(f"invalid YAML {text!r} ({getattr(err, 'problem', err)})") from None


def _nullable(convert: Any) -> Any:
    def parse(text: str) -> Any:
        return None if text in _NULLS else convert(text)

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


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


def check_type(name: str, value: Any, annotation: Any, where: str) -> Any:
    """`value` coerced to `annotation` where that is lossless (int -> float, tuple -> list), or a ConfigError
    naming the key."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return check_type(name, value, arg, where)
            except ConfigError as err:
                errors.append(err)
        raise errors[0]
    if annotation is Any or annotation is object:
        return value
    expected = origin or annotation
    if expected in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{where}: '{name}' must be {expected.__name__}, got {value!r}")
    if expected is float and isinstance(value, int):
        return float(value)
    if expected in (list, tuple) and isinstance(value, (list, tuple)):
        items = list(value)
        if args and args[0] is not Any and (expected is list or args[-1] is Ellipsis):
            items = [check_type(f"{name}[{i}]", item, args[0], where) for i, item in enumerate(items)]
        return tuple(items) if expected is tuple else items
    if expected is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: '{name}' must be true or false, got {value!r}")
    if isinstance(expected, type) and not isinstance(value, expected):
        raise ConfigError(f"{where}: '{name}' must be {expected.__name__}, got {type(value).__name__} {value!r}")
    if expected is dict and len(args) == 2:
        return {
            check_type(f"{name} key", key, args[0], where): check_type(f"{name}.{key}", item, args[1], where)
            for key, item in value.items()
        }
    return value


def check_fields(cls: type[T], data: Any, where: str) -> T:
    """An instance of the dataclass `cls` from a mapping (a nested config value such as a data source or sampling
    parameters), checked like a config file: unknown keys with a "did you mean", types, the class's own checks
    (`__post_init__`) and its `validate(where)` hook; every problem is a ConfigError naming `where`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__} {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = [key for key in data if key not in fields]
    if unknown:
        raise ConfigError(f"{where}: unknown key '{unknown[0]}'{_suggest(str(unknown[0]), fields)}")
    hints = typing.get_type_hints(cls)
    return _construct(cls, {key: check_type(key, value, hints[key], where) for key, value in data.items()}, where)


def _construct(cls: type[T], kwargs: dict[str, Any], where: str, origins: Mapping[str, str] | None = None) -> T:
    """`cls(**kwargs)` then its `validate(where)` hook; errors become ConfigErrors, re-addressed to where the
    offending key's value came from (`origins`: key -> `flags`)."""
    try:
        instance = cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {str(err).splitlines()[0]}") from None
    validate = getattr(instance, "validate", None)
    if callable(validate):
        try:
            validate(where)
        except ConfigError as err:
            raise ConfigError(_relocated(str(err), where, origins or {})) from None
    return instance


class ConfigParser(TrlParser):
    """TRL's parser with evoalign's value forms, one-line errors and validation (see the module docstring).

    `check_types` type-checks every value against its field (evoalign's own configs); the recipes leave TRL's
    classes to their own `__post_init__` checks, as TRL's scripts do.
    """

    def __init__(
        self, dataclass_types: Any, *, prog: str | None = None, check_types: bool = True, **kwargs: Any
    ) -> None:
        dataclass_types = list(dataclass_types) if isinstance(dataclass_types, Iterable) else [dataclass_types]
        description = (dataclass_types[0].__doc__ or "").strip() if dataclass_types else None
        super().__init__(
            dataclass_types, prog=prog, description=description, epilog=EPILOG, allow_abbrev=False, **kwargs
        )
        self.check_types = check_types
        self.add_argument("--config", metavar="FILE.yaml", help="YAML file of keys and values; flags override it")
        self._fields = {
            field.name: (dtype, field) for dtype in self.dataclass_types for field in dataclasses.fields(dtype)
        }

    @staticmethod
    def _parse_dataclass_field(parser: argparse.ArgumentParser, field: dataclasses.Field) -> None:
        first = len(parser._actions)
        if _takes_yaml(field.type):
            options = [f"--{field.name}"] + ([f"--{field.name.replace('_', '-')}"] if "_" in field.name else [])
            default = field.default
            if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                default = field.default_factory()  # type: ignore[misc]
            parser.add_argument(
                *options,
                type=yaml_value,
                default=None if default is dataclasses.MISSING else default,
                help=field.metadata.get("help"),
                metavar="YAML",
            )
        else:
            nullable = _optional_scalar(field.type)
            HfArgumentParser._parse_dataclass_field(parser, field)
            if nullable is not None:
                parser._actions[-1].type = _nullable(parser._actions[-1].type)
        for action in parser._actions[first:]:
            if action.help:  # argparse formats help with %-interpolation
                action.help = action.help.replace("%", "%%")

    def error(self, message: str) -> typing.NoReturn:
        raise ConfigError(f"flags: {message}")

    def _action(self, name: str) -> argparse.Action | None:
        return next((action for action in self._actions if action.dest == name and action.option_strings), None)

    def _convert(self, name: str, value: Any, where: str) -> Any:
        """A YAML value converted as argparse converts a string default (TRL's behaviour for config values)."""
        action = self._action(name)
        if not isinstance(value, str) or action is None or action.type in (None, yaml_value):
            return value
        try:
            return action.type(value)
        except (TypeError, ValueError, argparse.ArgumentTypeError):
            kind = getattr(action.type, "__name__", "value")
            raise ConfigError(f"{where}: '{name}' must be {kind}, got {value!r}") from None

    def parse_mapping(
        self, data: Mapping[str, Any], where: str = "config", origins: Mapping[str, str] | None = None
    ) -> tuple[Any, ...]:
        """The configs for a mapping of key -> value (a YAML file's content, or flags already merged into it).
        `origins` names where a key's value came from when that is not `where` (`flags`), so an error names the
        place the user has to fix."""
        origins = origins or {}
        unknown = [key for key in data if key not in self._fields]
        if unknown:
            raise ConfigError(f"{where}: unknown key '{unknown[0]}'{_suggest(unknown[0], self._fields)}")
        values = {key: self._convert(key, value, origins.get(key, where)) for key, value in data.items()}
        configs = []
        for dtype in self.dataclass_types:
            hints = typing.get_type_hints(dtype)
            kwargs = {f.name: values[f.name] for f in dataclasses.fields(dtype) if f.init and f.name in values}
            if self.check_types:
                kwargs = {
                    key: check_type(key, value, hints[key], origins.get(key, where)) for key, value in kwargs.items()
                }
            configs.append(_construct(dtype, kwargs, where, origins))
        return tuple(configs)

    def parse_args_and_config(self, args: Sequence[str] | None = None, **_: Any) -> tuple[Any, ...]:  # type: ignore[override]
        """Parse `--config FILE.yaml` and flag overrides into the dataclasses (see the module docstring)."""
        argv = list(sys.argv[1:] if args is None else args)
        if "-h" in argv or "--help" in argv:
            self.print_help()
            raise SystemExit(0)
        path, argv = _pop_config(argv)
        data = load_yaml_mapping(path) if path else {}
        where = str(path) if path else "flags"
        _set_environment(data.pop("env", None), where)
        dotted, argv = _pop_dotted(argv)
        unknown = [key for key in data if key not in self._fields]
        if unknown:
            raise ConfigError(f"{where}: unknown key '{unknown[0]}'{_suggest(unknown[0], self._fields)}")
        namespace = self._parse_flags(argv, required_met=set(data))
        given = self._given(argv)
        data.update({dest: getattr(namespace, dest) for dest in given})
        for key, value in dotted:
            self._set_dotted(data, key, value)
        origins = dict.fromkeys([*given, *(key.split(".", 1)[0] for key, _ in dotted)], "flags")
        return self.parse_mapping(data, where, origins)

    def _parse_flags(self, argv: list[str], required_met: set[str]) -> argparse.Namespace:
        """argparse over the flags; keys the config file gives are not required as flags."""
        relaxed = [a for a in self._actions if a.required and a.dest in required_met]
        for action in relaxed:
            action.required = False
        try:
            namespace, rest = self.parse_known_args(argv)
        finally:
            for action in relaxed:
                action.required = True
        if rest:
            flag = rest[0].split("=", 1)[0]
            if not flag.startswith("--"):
                raise ConfigError(f"unexpected argument '{rest[0]}'; flags look like --key value")
            name = flag[2:].replace("-", "_")
            raise ConfigError(f"flags: unknown key '{name}'{_suggest(name, self._fields)}")
        return namespace

    def _given(self, argv: list[str]) -> list[str]:
        """The dests of the flags on the command line (so defaults do not override the config file)."""
        given = []
        for arg in argv:
            action = self._option_string_actions.get(arg.split("=", 1)[0]) if arg.startswith("--") else None
            if action is not None and action.dest not in given:
                given.append(action.dest)
        return given

    def _set_dotted(self, data: dict[str, Any], key: str, value: Any) -> None:
        head, *path = key.split(".")
        if head not in self._fields:
            raise ConfigError(f"flags: unknown key '{head}'{_suggest(head, self._fields)}")
        if head not in data:
            field = self._fields[head][1]
            default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default  # type: ignore[misc]
            data[head] = copy.deepcopy(default) if default is not dataclasses.MISSING else None
        node = data
        for part in [head, *path[:-1]]:
            if node.get(part) is None:
                node[part] = {}
            if not isinstance(node[part], dict):
                raise ConfigError(f"flag --{key}: '{part}' is not a mapping")
            node = node[part]
        node[path[-1]] = value


def _relocated(message: str, where: str, origins: Mapping[str, str]) -> str:
    """A validation message `WHERE: 'key' ...` re-addressed to where that key's value came from (e.g. flags)."""
    prefix = f"{where}: '"
    if not message.startswith(prefix):
        return message
    key = message[len(prefix) :].split("'", 1)[0]
    head = key.split(".", 1)[0].split("[", 1)[0]
    origin = origins.get(head)
    return f"{origin}: {message[len(where) + 2 :]}" if origin and origin != where else message


def _pop_config(argv: list[str]) -> tuple[str | None, list[str]]:
    """The `--config FILE` (or `--config=FILE`) value and the other arguments."""
    rest, path = [], None
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--config":
            if index + 1 == len(argv):
                raise ConfigError("flags: --config needs a YAML file")
            path, index = argv[index + 1], index + 2
            continue
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        index += 1
    return path, rest


def _pop_dotted(argv: list[str]) -> tuple[list[tuple[str, Any]], list[str]]:
    """Dotted flags (`--a.b value`) as (key, YAML value), and the other arguments."""
    dotted, rest = [], []
    index = 0
    while index < len(argv):
        arg = argv[index]
        key, has_value, value = arg[2:].partition("=")
        if arg.startswith("--") and "." in key:
            if not has_value:
                if index + 1 == len(argv):
                    raise ConfigError(f"flags: --{key} needs a value")
                index += 1
                value = argv[index]
            head, _, tail = key.partition(".")
            try:
                dotted.append((f"{head.replace('-', '_')}.{tail}", yaml.safe_load(value)))
            except yaml.YAMLError as err:
                raise ConfigError(f"flag --{key}: invalid YAML {value!r} ({getattr(err, 'problem', err)})") from None
        else:
            rest.append(arg)
        index += 1
    return dotted, rest


def _set_environment(env: Any, where: str) -> None:
    if env is None:
        return
    if not isinstance(env, dict):
        raise ConfigError(f"{where}: 'env' must be a mapping of environment variables to values")
    for name, value in env.items():
        os.environ[str(name)] = str(value)


def parse_config(cls: type[T], argv: Sequence[str] | None = None, *, prog: str | None = None) -> T:
    """The config of a stage command: `ConfigParser((cls,))` over `argv` (default: the command line)."""
    (config,) = ConfigParser((cls,), prog=prog).parse_args_and_config(argv)
    return config


def config_from_dict(cls: type[T], data: Mapping[str, Any], where: str = "config") -> T:
    """The config for a mapping of key -> value, checked and validated exactly as a config file is."""
    (config,) = ConfigParser((cls,)).parse_mapping(dict(data), where)
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
