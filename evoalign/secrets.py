"""Keep credentials out of everything a run writes or logs: the one secret scrubber.

Configs reach `run_info.json` (with the command line), reports, judged rows, dataset and model cards, trackers
(wandb, tensorboard), `run_config.json`, error messages and log lines. A token can hide in a field meant for it
(`hub_token`), in a nested mapping (`model_init_kwargs: {token: hf_...}`), in an environment block, or inside a
string (a URL with `user:password@` or a `?api_key=` parameter, as in `openai:m@http://user:KEY@host/v1`).
`scrub_secrets` removes all of these; `install_log_scrubber` passes every log record through it, and
`evoalign.errors.run_main` every error message. `check_variable_name` refuses a key pasted where the name of
an environment variable belongs, without echoing it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "<redacted>"

_SECRET_KEY = re.compile(r"secret|passw|api_?key|access_?key|credential|private_?key")
_TOKEN_KEY_SUFFIXES = ("hub_token", "hf_token", "auth_token", "access_token", "api_token", "bearer_token")
_SECRET_VALUE = re.compile(
    r"hf_[A-Za-z0-9]{20,}"  # Hugging Face tokens
    r"|sk-[A-Za-z0-9_\-]{16,}"  # OpenAI-style API keys
    r"|(?<=://)[^/\s@]+(?=@)"  # user:password (or a bare token) before the host of a URL
    r"|(?<=[?&])(?:api[_-]?key|key|token|access_token|auth|password|sig)=[^&\s#]+"  # a credential URL parameter
)
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
        return _SECRET_VALUE.sub(_redact, value)
    return value


def _redact(match: re.Match[str]) -> str:
    name, equals, _ = match.group(0).partition("=")
    return f"{name}={REDACTED}" if equals and match.start() > 0 else REDACTED


def check_variable_name(value: Any, where: str) -> str | None:
    """Why `value` cannot be the name of an environment variable (a field like `api_key_env` names the variable
    that holds a key), else None. A value that looks like a key is not echoed in the reason."""
    if value is None:
        return None
    named = isinstance(value, str) and _VARIABLE_NAME.fullmatch(value)
    keylike = isinstance(value, str) and (
        bool(_SECRET_VALUE.search(value))
        or (len(value) >= 24 and any(c.isdigit() for c in value) and any(c.islower() for c in value))
    )
    if named and not keylike:
        return None
    shown = "the value looks like a key and is not shown" if keylike else f"got {value!r}"
    return f"{where} must name an environment variable (such as OPENAI_API_KEY), not hold a key; {shown}"


class _ScrubbingRecordFactory:
    """Wraps the logging record factory so every record's message leaves with its secrets redacted."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's to report, not ours
            return record
        clean = scrub_secrets(message)
        if clean != message:
            record.msg, record.args = clean, None
        return record


def install_log_scrubber() -> None:
    """Redact secrets in every log record from now on (any logger, e.g. the HTTP client's request lines)."""
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _ScrubbingRecordFactory):
        logging.setLogRecordFactory(_ScrubbingRecordFactory(factory))
