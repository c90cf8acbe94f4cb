"""Leak-free train/test splits: a group of rows (near-duplicates, rows of one seed) lands whole in one split.

The groups come from `evoalign.text.near_duplicate_groups`. They are shuffled with a seed and assigned whole to
the test split until it holds `test_size` of the benign rows and enough safety rows for the mix; everything else
is train.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence


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
