"""Near-duplicate removal across a whole evolved set: word n-gram Jaccard, exact or via MinHash LSH.

Two instructions are near-duplicates when the Jaccard similarity of their word n-gram sets reaches the
threshold. Items are visited best first (highest score, then input order) and an item is dropped when it is a
near-duplicate of one already kept, so the survivor of each group is its best-scoring member. `ngram` compares
every pair (exact; fine for thousands of items); `minhash` finds candidate pairs with MinHash signatures and
locality-sensitive hashing bands, then confirms each with the exact Jaccard, so it scales to large sets and
never drops a pair below the threshold.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

METHODS = ("ngram", "minhash", "none")
_WORD = re.compile(r"\w+")
_PRIME = (1 << 31) - 1
NUM_PERM = 128


def shingles(text: str, n: int = 3) -> frozenset[str]:
    """The set of lower-cased word n-grams (the whole text when it has fewer than n words)."""
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return frozenset([" ".join(words)])
    return frozenset(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _hash32(shingle: str) -> int:
    return int.from_bytes(hashlib.blake2b(shingle.encode(), digest_size=4).digest(), "big")


class MinHasher:
    """MinHash signatures with `num_perm` universal hash functions (fixed seed: reproducible)."""

    def __init__(self, num_perm: int = NUM_PERM) -> None:
        generator = np.random.default_rng(1)
        self.a = generator.integers(1, _PRIME, size=num_perm, dtype=np.int64)
        self.b = generator.integers(0, _PRIME, size=num_perm, dtype=np.int64)

    def signature(self, items: frozenset[str]) -> np.ndarray:
        values = np.array([_hash32(s) % _PRIME for s in sorted(items)], dtype=np.int64)
        return ((np.outer(values, self.a) + self.b) % _PRIME).min(axis=0)


def lsh_bands(threshold: float, num_perm: int = NUM_PERM) -> tuple[int, int]:
    """(bands, rows) whose LSH threshold (1/b)^(1/r) is the largest not above `threshold` - 0.1 (recall first)."""
    options = [(num_perm // r, r) for r in range(1, num_perm + 1) if num_perm // r >= 1]
    below = [(b, r) for b, r in options if (1 / b) ** (1 / r) <= max(threshold - 0.1, 0.05)]
    return max(below, key=lambda br: (1 / br[0]) ** (1 / br[1])) if below else options[0]


def deduplicate(
    texts: Sequence[str],
    scores: Sequence[float | None],
    *,
    method: str = "minhash",
    threshold: float = 0.7,
    n: int = 3,
) -> tuple[list[int], dict[int, int]]:
    """Indices to keep (in input order) and {dropped index: the kept index it duplicates}."""
    if method not in METHODS:
        raise ValueError(f"unknown dedup method '{method}'; choose from {', '.join(METHODS)}")
    if method == "none":
        return list(range(len(texts))), {}
    order = sorted(range(len(texts)), key=lambda i: (-(scores[i] if scores[i] is not None else -np.inf), i))
    sets = [shingles(text, n) for text in texts]
    finder = _MinHashIndex(threshold) if method == "minhash" else None
    kept: list[int] = []
    dropped: dict[int, int] = {}
    for index in order:
        candidates = finder.candidates(sets[index]) if finder else kept
        match = next((k for k in candidates if jaccard(sets[index], sets[k]) >= threshold), None)
        if match is None:
            kept.append(index)
            if finder:
                finder.add(index, sets[index])
        else:
            dropped[index] = match
    return sorted(kept), dropped


class _MinHashIndex:
    """LSH buckets over the kept items' signatures."""

    def __init__(self, threshold: float) -> None:
        self.hasher = MinHasher()
        self.bands, self.rows = lsh_bands(threshold)
        self.buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)
        self.order: dict[int, int] = {}  # kept index -> when it was kept (best first)

    def _keys(self, items: frozenset[str]) -> list[tuple[int, bytes]]:
        signature = self.hasher.signature(items)
        return [(band, signature[band * self.rows : (band + 1) * self.rows].tobytes()) for band in range(self.bands)]

    def candidates(self, items: frozenset[str]) -> list[int]:
        found = {k for key in self._keys(items) for k in self.buckets.get(key, [])}
        return sorted(found, key=self.order.__getitem__)

    def add(self, index: int, items: frozenset[str]) -> None:
        self.order[index] = len(self.order)
        for key in self._keys(items):
            self.buckets[key].append(index)
