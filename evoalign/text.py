"""Text normalisation and the one near-duplicate detector that every stage uses.

`normalize` is the key for duplicate rows: lower-cased words joined by single spaces, so case, punctuation and
spacing do not make two instructions different (the build's duplicate rows). `same_text_key` is stricter: only
case and spacing are ignored, so a rewrite that changes punctuation ("How?" -> "How.") counts as new (the evolve
stage's unchanged or repeated rewrites, whose search depends on it).

Two texts are near-duplicates when the Jaccard similarity of their word n-gram ("shingle") sets reaches a
threshold. `similar_pairs` finds every such pair exactly, not approximately, with prefix filtering (the AllPairs
set-similarity join): only texts that share a rare shingle are compared, and no pair above the threshold is
missed. On top of it, `deduplicate` keeps the best-scoring member of each group (the evolve output) and
`near_duplicate_groups` gives connected components (the build's leak-free splits).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence

_WORD = re.compile(r"\w+")
_LIST_MARKER = re.compile(r"\s*\d+\.")  # "2." opening a list item is not the end of a sentence
_SENTENCE_END = re.compile(r"[.!?…][\"')\]*]*(?=\s|$)|\n")


def words(text: str) -> list[str]:
    """The lower-cased words of `text`."""
    return _WORD.findall(text.lower())


def normalize(text: str) -> str:
    """Lower-cased words joined by single spaces: the key for duplicate rows."""
    return " ".join(words(text))


def same_text_key(text: str) -> str:
    """Lower-cased text with runs of whitespace made single spaces: equal keys mean the same text."""
    return " ".join(text.lower().split())


def shingles(text: str, n: int = 3) -> frozenset[str]:
    """The set of lower-cased word n-grams (the whole text when it has fewer than n words)."""
    found = words(text)
    if len(found) < n:
        return frozenset([" ".join(found)])
    return frozenset(" ".join(found[i : i + n]) for i in range(len(found) - n + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def similar_pairs(sets: Sequence[frozenset[str]], threshold: float) -> list[tuple[int, int]]:
    """Every pair (j, i), j < i, whose Jaccard similarity is at least `threshold` (exact, prefix-filtered)."""
    if not 0 < threshold <= 1:
        raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
    frequency = Counter(shingle for shingle_set in sets for shingle in shingle_set)
    index: dict[str, list[int]] = defaultdict(list)
    pairs = []
    for i, shingle_set in enumerate(sets):
        ordered = sorted(shingle_set, key=lambda s: (frequency[s], s))
        # A set with Jaccard >= t to this one must share a shingle within this prefix (and its own).
        prefix = ordered[: len(ordered) - math.ceil(threshold * len(ordered) - 1e-9) + 1]
        candidates = sorted({j for shingle in prefix for j in index[shingle]})
        pairs += [(j, i) for j in candidates if jaccard(shingle_set, sets[j]) >= threshold]
        for shingle in prefix:
            index[shingle].append(i)
    return pairs


def deduplicate(
    texts: Sequence[str], scores: Sequence[float | None], *, threshold: float = 0.7, n: int = 3
) -> tuple[list[int], dict[int, int]]:
    """Indices to keep (in input order) and {dropped index: the kept index it duplicates}.

    Items are visited best first (highest score, None last, then input order); an item is dropped when it is a
    near-duplicate of one already kept (the earliest kept, when several are), so each group keeps its best member.
    """
    neighbours: dict[int, set[int]] = defaultdict(set)
    for j, i in similar_pairs([shingles(text, n) for text in texts], threshold):
        neighbours[i].add(j)
        neighbours[j].add(i)
    order = sorted(range(len(texts)), key=lambda i: (-(scores[i] if scores[i] is not None else -math.inf), i))
    kept: list[int] = []
    dropped: dict[int, int] = {}
    for index in order:
        match = next((k for k in kept if k in neighbours[index]), None)
        if match is None:
            kept.append(index)
        else:
            dropped[index] = match
    return sorted(kept), dropped


class _UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, item: int) -> int:
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a: int, b: int) -> None:
        roots = sorted((self.find(a), self.find(b)))
        self.parent[roots[1]] = roots[0]


def near_duplicate_groups(
    texts: Sequence[str], *, threshold: float, shingle_size: int = 3, keys: Sequence[str | None] | None = None
) -> list[int]:
    """A group id per text: texts with shingle Jaccard >= `threshold` (or an equal non-None key) share one.

    The id is the smallest index in the group, so ids do not depend on anything but the input order.
    """
    groups = _UnionFind(len(texts))
    for j, i in similar_pairs([shingles(text, shingle_size) for text in texts], threshold):
        groups.union(i, j)
    first_with_key: dict[str, int] = {}
    for i, key in enumerate(keys or ()):
        if key is not None:
            groups.union(i, first_with_key.setdefault(key, i))
    return [groups.find(i) for i in range(len(texts))]


def trim_to_sentence(text: str) -> str:
    """`text` up to the end of its last complete sentence or line ("" when there is none)."""
    for match in reversed(list(_SENTENCE_END.finditer(text))):
        kept = text[: match.end()].strip()
        if not _LIST_MARKER.fullmatch(kept.rsplit("\n", 1)[-1]):
            return kept
    return ""


def final_text(text: str, finish_reason: str | None, truncated: str) -> str | None:
    """The response text to use: a cut-off response is kept, trimmed to a sentence, or None (dropped)."""
    text = text.strip()
    if finish_reason != "length" or truncated == "keep":
        return text
    return trim_to_sentence(text) if truncated == "trim" else None
