"""Chat models: the one interface every role uses, its backends, and spec resolution.

A model is named by a spec string, optionally with options in a mapping (YAML-friendly):

- `smollm2`: the bundled SmolLM2-135M-Instruct (see `evoalign.models.bundled`); `smollm2-guarded`: the learnt
  over-refusing base built from it by `recipes/guarded_base.py` (loads once built);
- `hf:<hub id | local dir | file.gguf>`: transformers backend (options: adapter, batch_size, dtype, device,
  steering: a probe-conditioned steering file, see `evoalign.models.steering`; soft_prompt: a learnt system
  prompt, see `evoalign.models.soft_prompt`; refusal_bias / refusal_threshold: the refusal-token knob, see
  `evoalign.models.refusal_tokens`, ...);
- `openai:<model>` or `openai:<model>@<base_url>`: OpenAI or any OpenAI-compatible server
  (options: api_key_env, max_concurrency, timeout, max_retries).

`load_model(spec_or_mapping, cache=...)` resolves all of them; with a cache path the model is wrapped in the
content-addressed response cache. Backends import their heavy dependencies only when constructed.
`check_model(spec)` finds a missing path, API key or server without loading weights, so a stage can check all
its models before it creates its run folder; `check_context` names the input line of a prompt too long for a
model. `ModelPool` (`evoalign.models.pool`) loads a stage's models by role.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evoalign.errors import ConfigError, DataError, ModelError
from evoalign.models.base import (
    TOKENIZE,
    TRANSFORMERS,
    ChatModel,
    Sample,
    SamplingParams,
    Score,
    as_conversation,
)
from evoalign.models.refusal_tokens import OPTIONS as REFUSAL_OPTIONS
from evoalign.models.refusal_tokens import check_options as check_refusal_options
from evoalign.paths import is_local_path
from evoalign.prompts import Conversation
from evoalign.secrets import check_variable_name

__all__ = [
    "TOKENIZE",
    "TRANSFORMERS",
    "ChatModel",
    "Conversation",
    "Sample",
    "SamplingParams",
    "Score",
    "as_conversation",
    "check_context",
    "check_model",
    "check_spec",
    "load_model",
    "parse_spec",
]

_HF_OPTIONS = {
    "adapter",
    "gguf_file",
    "device",
    "dtype",
    "batch_size",
    "min_shared_prefix",
    "trust_remote_code",
    "revision",
    "steering",
    "soft_prompt",
    *REFUSAL_OPTIONS,  # refusal_bias, refusal_threshold: checked by evoalign.models.refusal_tokens.check_options
}
_OPENAI_OPTIONS = {"api_key_env", "max_concurrency", "timeout", "max_retries", "backoff_base", "backoff_max"}
# option -> (type, lowest allowed value or None): checked before any model is built
_OPTION_TYPES: dict[str, tuple[type | tuple[type, ...], float | None]] = {
    "adapter": (str, None),
    "gguf_file": (str, None),
    "device": (str, None),
    "dtype": (str, None),
    "revision": (str, None),
    "steering": (str, None),
    "soft_prompt": (str, None),
    "trust_remote_code": (bool, None),
    "batch_size": (int, 1),
    "min_shared_prefix": (int, 0),
    "api_key_env": (str, None),
    "max_concurrency": (int, 1),
    "max_retries": (int, 0),
    "timeout": ((int, float), 1e-9),
    "backoff_base": ((int, float), 0),
    "backoff_max": ((int, float), 0),
}


def _check_option(spec: str, name: str, value: Any) -> None:
    if name in REFUSAL_OPTIONS:
        return
    if name == "api_key_env":
        problem = check_variable_name(value, f"model '{spec}': api_key_env")
        if problem:
            raise ModelError(problem)
        return
    kind, lowest = _OPTION_TYPES[name]
    wrong_type = not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool)
    if value is None and name in ("adapter", "gguf_file", "revision", "steering", "soft_prompt"):
        return
    if wrong_type:
        expected = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ModelError(f"model '{spec}': option '{name}' must be {expected}, got {value!r}")
    if lowest is not None and value < lowest:
        bound = "> 0" if lowest == 1e-9 else f">= {lowest}"
        raise ModelError(f"model '{spec}': option '{name}' must be {bound}, got {value!r}")


BUNDLED = ("smollm2", "smollm2-guarded")  # specs without a colon: the bundled model and the learnt base built from it


def bundled_path(name: str) -> str:
    """The local folder of a bundled spec (`smollm2`, or `smollm2-guarded` once built)."""
    from evoalign.models.bundled import built_guarded_path, smollm2_path

    return smollm2_path() if name == "smollm2" else built_guarded_path()


def parse_spec(spec: str | Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """Split a spec into (backend, target, options); a mapping carries the spec under `spec`."""
    options: dict[str, Any] = {}
    if isinstance(spec, Mapping):
        options = {k: v for k, v in spec.items() if k != "spec"}
        if "spec" not in spec:
            raise ModelError(f"a model mapping needs a 'spec' key; got the keys {', '.join(map(str, spec))}")
        spec = spec["spec"]
    elif not isinstance(spec, str):
        raise ModelError(f"a model is a spec string or a mapping with 'spec', got {type(spec).__name__} {spec!r}")
    if not isinstance(spec, str) or not spec.strip():
        raise ModelError(f"model spec must be a non-empty string, got {spec!r}")
    backend, sep, target = (spec, "", spec) if spec in BUNDLED else spec.partition(":")
    if backend not in BUNDLED and (not sep or backend not in ("hf", "openai") or not target):
        raise ModelError(
            f"unknown model spec '{spec}': use smollm2, smollm2-guarded, hf:<path or id>, or openai:<model>[@<base_url>]"
        )
    allowed = _OPENAI_OPTIONS if backend == "openai" else _HF_OPTIONS
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ModelError(
            f"model '{spec}': unknown option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    for name, value in options.items():
        _check_option(spec, name, value)
    check_refusal_options(spec, options)
    return backend, target, options


def check_spec(spec: Any, where: str) -> None:
    """ConfigError naming `where` (a config key) for a malformed model spec or option; nothing is loaded."""
    try:
        parse_spec(spec)
    except ModelError as err:
        raise ConfigError(f"{where}: {err}") from None


def spec_string(spec: str | Mapping[str, Any]) -> str:
    return spec["spec"] if isinstance(spec, Mapping) else spec


def load_model(spec: str | Mapping[str, Any], *, cache: str | Path | None = None) -> ChatModel:
    """Build the ChatModel a spec names; wrap it in the response cache when `cache` is a path."""
    backend, target, options = parse_spec(spec)
    steering = options.pop("steering", None)
    model: ChatModel
    if backend in BUNDLED:
        from evoalign.models.hf import HFChatModel

        model = HFChatModel(bundled_path(backend), spec=backend, **options)
    elif backend == "hf":
        from evoalign.models.hf import HFChatModel

        model = HFChatModel(target, spec=f"hf:{target}", **options)
    else:
        from evoalign.models.openai_backend import OpenAIChatModel

        model_name, _, base_url = target.partition("@")
        model = OpenAIChatModel(model_name, base_url=base_url or None, **options)
    if steering is not None:
        from evoalign.models.steering import SteeredChatModel

        model = SteeredChatModel(model, steering)
    if cache is not None:
        from evoalign.models.cache import CachedChatModel

        model = CachedChatModel(model, cache)
    return model


def check_model(spec: str | Mapping[str, Any]) -> None:
    """ModelError now, without loading weights, if the spec is malformed, a local hf model or adapter path is
    missing, or an API model's key variable is unset or its server out of reach."""
    backend, target, options = parse_spec(spec)
    if backend == "smollm2-guarded":
        from evoalign.models.bundled import built_guarded_path

        built_guarded_path()
    elif backend == "hf":
        if is_local_path(target) and not Path(target).expanduser().exists():
            raise ModelError(f"model path not found: {target}")
        if options.get("adapter") and not Path(options["adapter"]).expanduser().exists():
            raise ModelError(f"adapter path not found: {options['adapter']}")
    if backend != "openai" and options.get("soft_prompt"):
        from evoalign.models.soft_prompt import check_soft_prompt_path

        check_soft_prompt_path(options["soft_prompt"])
    if backend != "openai" and options.get("steering") and not Path(options["steering"]).expanduser().is_file():
        raise ModelError(f"steering file not found: {options['steering']}")
    elif backend == "openai":
        model = load_model(spec)
        try:
            model.check()
        finally:
            model.close()


def check_context(
    model: ChatModel,
    conversations: Sequence[Conversation],
    max_new_tokens: int,
    origins: Sequence[str] | None = None,
    *,
    prompt_ids: Sequence[Sequence[int]] | None = None,
) -> None:
    """DataError naming the origin (`file:line`, else `conversation N`) of the first conversation that, with
    `max_new_tokens` more tokens, does not fit the model's context. Only models that tokenize locally (hf) can be
    checked; pass `prompt_ids` when the conversations are already tokenized."""
    limit = model.max_context
    if not limit or (prompt_ids is None and TOKENIZE not in model.capabilities):
        return
    if prompt_ids is None:
        prompt_ids = model.prompt_ids(list(conversations))
    for index, (ids, conversation) in enumerate(zip(prompt_ids, conversations)):
        if len(ids) + max_new_tokens > limit:
            origin = origins[index] if origins else f"conversation {index}"
            raise DataError(
                f"{origin}: the prompt ('{conversation[-1]['content'][:60]}...') is {len(ids)} tokens; with "
                f"{max_new_tokens} new tokens it exceeds the model context of {limit} tokens ({model.spec})"
            )
