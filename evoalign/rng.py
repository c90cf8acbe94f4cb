"""Derived random seeds: every random choice of a run comes from a generator seeded by its purpose, never global state.

`derive_seed(run seed, purpose, item, step, ...)` is stable across processes and Python versions, so a run that is
interrupted and resumed (or sharded over processes) draws exactly what an uninterrupted one draws. Used by the
evolve search and the other generators.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any


def derive_seed(*keys: Any) -> int:
    """A 63-bit integer that depends only on `keys` (stable across processes and Python versions)."""
    digest = hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def model_seed(*keys: Any) -> int:
    """A derived seed for a model call: 31 bits, which every backend accepts (llama.cpp takes uint32)."""
    return derive_seed(*keys) % 2**31


def derive_rng(*keys: Any) -> random.Random:
    return random.Random(derive_seed(*keys))
