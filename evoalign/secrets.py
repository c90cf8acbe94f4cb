"""Keep credentials out of every config that a run logs or writes: the one secret scrubber.

Configs reach `run_info.json`, dataset and model cards, trackers (wandb, tensorboard) and `run_config.json`. A token can hide in
a field meant for it (`hub_token`), in a nested mapping (`model_init_kwargs: {token: hf_...}`), in an
environment block, or inside a string (a URL with a password). `scrub_secrets` removes all of these.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "<redacted>"

_SECRET_KEY = re.compile(r"secret|passw|api_?key|access_?key|credential|private_?key")
_TOKEN_KEY_SUFFIXES = ("hub_token", "hf_token", "auth_token", "access_token", "api_token", "bearer_token")
_SECRET_VALUE = re.compile(
    r"hf_[A-Za-z0-9]{20,}"  # Hugging Face tokens
    r"|sk-[A-Za-z0-9_\-]{16,}"  # OpenAI-style API keys
    r"|(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"  # user:password in a URL
)


def is_secret_key(key: str) -> bool:
    """True for names that hold credentials (`hub_token`, `HF_TOKEN`, `api_key`), not token names like `eos_token`
    nor names of the environment variable that holds a key (`api_key_env`)."""
    lowered = key.lower().replace("-", "_")
    if lowered.endswith("_env"):
        return False
    return lowered == "token" or lowered.endswith(_TOKEN_KEY_SUFFIXES) or bool(_SECRET_KEY.search(lowered))


def scrub_secrets(value: Any) -> Any:
    """Return a copy of `value` with secret-named entries and secret-looking substrings redacted."""
    if isinstance(value, Mapping):
        return {
            key: REDACTED if is_secret_key(str(key)) and value[key] else scrub_secrets(value[key]) for key in value
        }
    if isinstance(value, (list, tuple)):
        return [scrub_secrets(item) for item in value]
    if isinstance(value, str):
        return _SECRET_VALUE.sub(REDACTED, value)
    return value
