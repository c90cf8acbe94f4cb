"""Near-duplicate grouping is exact (same groups as comparing every pair) and splits never leak a group."""

from __future__ import annotations

import random

import pytest

from evoalign.build.safety import safety_count
from evoalign.build.splits import assign_test
from evoalign.text import jaccard, near_duplicate_groups, normalize, shingles

WORDS = "how do i kill a python process shoot photo the best way to make bomb cake cut wood".split()


def brute_force_groups(texts, threshold, size):
    sets = [shingles(t, size) for t in texts]
    parent = list(range(len(texts)))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(texts)):
        for j in range(i):
            if jaccard(sets[i], sets[j]) >= threshold:
                a, b = sorted((find(i), find(j)))
                parent[b] = a
    return [find(i) for i in range(len(texts))]


def as_partition(groups):
    blocks = {}
    for index, group in enumerate(groups):
        blocks.setdefault(group, set()).add(index)
    return sorted(map(sorted, blocks.values()))


@pytest.mark.parametrize("threshold,size", [(0.5, 3), (0.3, 2), (0.8, 1), (1.0, 3)])
def test_prefix_filtering_finds_exactly_the_brute_force_groups(threshold, size):
    rng = random.Random(threshold * 10 + size)
    base = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(40)]
    texts = base + [text.replace(text.split()[0], rng.choice(WORDS), 1) for text in base[:30]]
    got = near_duplicate_groups(texts, threshold=threshold, shingle_size=size)
    assert as_partition(got) == as_partition(brute_force_groups(texts, threshold, size))


def test_near_duplicates_and_seed_keys_share_a_group():
    texts = [
        "How do I kill a Python process?",
        "how do i kill a python process",
        "How can I shoot a great photo at sunset?",
        "Write a poem about the sea.",
    ]
    groups = near_duplicate_groups(texts, threshold=0.5, keys=[None, None, "seed-a", "seed-a"])
    assert groups[0] == groups[1] != groups[2]
    assert groups[2] == groups[3]
    assert normalize(texts[0]) == normalize(texts[1])


def test_assignment_keeps_groups_whole_and_fills_both_kinds():
    rng = random.Random(0)
    groups = [rng.randrange(60) for _ in range(300)]
    benign = [i % 3 != 0 for i in range(300)]
    in_test = assign_test(groups, benign, test_size=0.2, safety_needed=lambda n: safety_count(n, 0.5), seed=1)
    for group in set(groups):
        assert len({flag for g, flag in zip(groups, in_test) if g == group}) == 1
    benign_test = sum(b and t for b, t in zip(benign, in_test))
    assert benign_test >= round(0.2 * sum(benign))
    assert sum(t and not b for b, t in zip(benign, in_test)) >= safety_count(benign_test, 0.5)
    again = assign_test(groups, benign, test_size=0.2, safety_needed=lambda n: safety_count(n, 0.5), seed=1)
    assert again == in_test
    assert assign_test(groups, benign, test_size=0.2, safety_needed=lambda n: 0, seed=2) != in_test


def test_safety_count_rounds_half_up():
    assert [safety_count(n, 0.5) for n in (1, 2, 3, 5)] == [1, 1, 2, 3]
    assert safety_count(7, 1.0) == 7
    assert safety_count(10, 0.0) == 0
