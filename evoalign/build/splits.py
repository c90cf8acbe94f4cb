"""Leak-free train/test splits: near-duplicate instructions are grouped and a group lands in one split.

Near-duplicates are found exactly, not approximately: two instructions are near-duplicates when the Jaccard
similarity of their word-shingle sets (the evolve stage's `evoalign.evolve.dedup.shingles`, which removes
near-duplicates within an evolved set) reaches a threshold, and all such pairs are found with prefix filtering
(the AllPairs set-similarity join), so no pair above the threshold is missed and only candidate pairs that
share a rare shingle are compared. Groups are the connected components (union-find), optionally also joining
rows evolved from the same seed. Groups are shuffled with a seed and assigned whole to the test split until it
holds `test_size` of the benign rows and enough safety rows for the mix; everything else is train.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

from evoalign.evolve.dedup import jaccard, shingles

_WORD = re.compile(r"\w+")


def normalize(text: str) -> str:
    """Lower-cased words joined by single spaces: the key for exact duplicates."""
    return " ".join(_WORD.findall(text.lower()))


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
    if not 0 < threshold <= 1:
        raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
    sets = [shingles(text, shingle_size) for text in texts]
    frequency = Counter(shingle for shingle_set in sets for shingle in shingle_set)
    index: dict[str, list[int]] = defaultdict(list)
    groups = _UnionFind(len(texts))
    for i, shingle_set in enumerate(sets):
        ordered = sorted(shingle_set, key=lambda s: (frequency[s], s))
        # A set with Jaccard >= t to this one must share a shingle within this prefix (and its own).
        prefix = ordered[: len(ordered) - math.ceil(threshold * len(ordered) - 1e-9) + 1]
        candidates = {j for shingle in prefix for j in index[shingle]}
        for j in candidates:
            if jaccard(shingle_set, sets[j]) >= threshold:
                groups.union(i, j)
        for shingle in prefix:
            index[shingle].append(i)
    first_with_key: dict[str, int] = {}
    for i, key in enumerate(keys or ()):
        if key is not None:
            groups.union(i, first_with_key.setdefault(key, i))
    return [groups.find(i) for i in range(len(texts))]


def assign_test(
    groups: Sequence[int],
    benign: Sequence[bool],
    *,
    test_size: float,
    safety_needed: Callable[[int], int],
    seed: int,
) -> list[bool]:
    """Whether each row is in the test split; groups move whole.

    Groups holding a benign row are taken in a seeded random order until the test split holds
    `test_size` of the benign rows (at least one); then safety-only groups until it holds
    `safety_needed(benign rows in test)` safety rows. A group that would overshoot is skipped while smaller
    ones can still fill the need, so the counts are met exactly whenever the group sizes allow.
    """
    members: dict[int, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        members[group].append(index)
    rng = random.Random(seed)
    with_benign = [g for g in sorted(members) if any(benign[i] for i in members[g])]
    safety_only = [g for g in sorted(members) if not any(benign[i] for i in members[g])]
    rng.shuffle(with_benign)
    rng.shuffle(safety_only)
    in_test = [False] * len(groups)
    benign_in_test = _fill(with_benign, members, in_test, benign, max(1, round(test_size * sum(benign))))
    safety = [not b for b in benign]
    _fill(safety_only, members, in_test, safety, safety_needed(benign_in_test) - _count(in_test, safety))
    return in_test


def _count(in_test: list[bool], flags: Sequence[bool]) -> int:
    return sum(t and f for t, f in zip(in_test, flags))


def _fill(
    order: list[int], members: dict[int, list[int]], in_test: list[bool], counted: Sequence[bool], target: int
) -> int:
    """Move groups to test until `target` counted rows are there; returns how many are.

    Groups are taken in `order` when they fit in what is still wanted, so one large group does not overshoot;
    if that falls short, the smallest remaining groups top it up.
    """
    sizes = {group: sum(counted[i] for i in members[group]) for group in order}
    taken: list[int] = []
    total = 0
    for group in order:
        if total + sizes[group] <= target:
            taken.append(group)
            total += sizes[group]
    chosen = set(taken)
    rest = sorted((group for group in order if group not in chosen), key=sizes.__getitem__)
    for group in rest:
        if total >= target:
            break
        taken.append(group)
        total += sizes[group]
    for group in taken:
        for index in members[group]:
            in_test[index] = True
    return total
