"""A stage's models by role: each spec loaded once, checked before the run folder exists, calls counted, closed.

Every stage (evolve, build, eval, eval-data) uses one pool:

    pool = ModelPool(run_dir / "cache.sqlite")
    pool.check([config.responder, config.target])      # paths, API keys, servers: before the run folder exists
    responder = pool.get(config.responder, "responder")  # loaded once per spec, through the response cache
    ...
    summary["model_calls"] = pool.calls()                # {"responder + target": {...} or None for local}
    pool.close()

Roles that name the same spec (with the same options) share one loaded model, and `calls()` lists it under all of
them joined with " + ". `release(role)` closes a model as soon as no role needs it (eval's models under test, one
at a time). The response cache file is created on first use, so loading models creates nothing on disk.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from evoalign.models import check_model, load_model
from evoalign.models.base import ChatModel


def _key(spec: Any) -> str:
    return json.dumps(spec, sort_keys=True, default=str)


class ModelPool:
    """Loads, shares, counts and closes a stage's models (see the module docstring)."""

    def __init__(self, cache: str | Path | None = None) -> None:
        self.cache = Path(cache) if cache is not None else None
        self._raw: dict[str, ChatModel] = {}
        self._cached: dict[str, ChatModel] = {}
        self._roles: dict[str, list[str]] = {}
        self._calls: dict[str, Any] = {}  # stats of released models, under their roles

    @staticmethod
    def check(specs: Iterable[Any]) -> None:
        """ModelError now, without loading weights, for a malformed spec, a missing local model or adapter, an unset
        API key variable or an unreachable server (`check_model` for each; None entries are skipped)."""
        for spec in specs:
            if spec is not None:
                check_model(spec)

    def get(self, spec: Any, role: str, *, cached: bool = True) -> ChatModel:
        """The model for `spec` serving `role`, loaded on first request; through the response cache unless
        `cached` is False (or the pool has no cache)."""
        key = _key(spec)
        if key not in self._raw:
            self._raw[key] = load_model(spec)
        roles = self._roles.setdefault(key, [])
        if role not in roles:
            roles.append(role)
        if not cached or self.cache is None:
            return self._raw[key]
        if key not in self._cached:
            from evoalign.models.cache import CachedChatModel

            self._cached[key] = CachedChatModel(self._raw[key], self.cache)
        return self._cached[key]

    def stats(self, role: str) -> dict[str, Any] | None:
        """The API call counts of the model serving `role` (None for a local model or an unknown role)."""
        key = next((key for key, roles in self._roles.items() if role in roles), None)
        if key is not None:
            return self._raw[key].call_stats()
        closed = next((roles for roles in self._calls if role in roles.split(" + ")), None)
        return self._calls[closed] if closed is not None else None

    def calls(self) -> dict[str, Any]:
        """Each model's API calls so far under the roles it served (`responder + target` for a shared model)."""
        live = {" + ".join(self._roles[key]): model.call_stats() for key, model in self._raw.items()}
        return {**self._calls, **live}

    def release(self, role: str) -> None:
        """Stop serving `role`; a model no other role uses is closed (its calls stay in `calls()`)."""
        for key, roles in list(self._roles.items()):
            if role in roles and key in self._raw:
                if len(roles) == 1:
                    self._close(key)
                else:
                    roles.remove(role)

    def _close(self, key: str) -> None:
        model = self._raw.pop(key)
        self._cached.pop(key, None)
        self._calls[" + ".join(self._roles.pop(key))] = model.call_stats()
        model.close()

    def close(self) -> None:
        """Close every loaded model (their calls stay in `calls()`)."""
        for key in list(self._raw):
            self._close(key)

    def __enter__(self) -> ModelPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
