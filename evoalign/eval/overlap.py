"""The train/test overlap guard: which benchmark prompts also appear in the training data, exactly or nearly.

`training_data` is a build output folder (its `train_*.jsonl` splits) or any JSONL file; a row's prompt is its
`prompt` (a string, or chat messages whose user turns are joined), `instruction` or `messages`. Every benchmark
of the suite is compared with every training prompt: `exact` counts benchmark prompts whose normalised text
(`evoalign.text.normalize`) equals a training prompt's, `near` those that are not exact but reach the
near-duplicate threshold (word 3-gram Jaccard, the one detector in `evoalign/text.py` that evolve's dedup and the
build's splits use). A benchmark with any overlap is not a held-out measure of a model trained on that data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evoalign.benchmarks import BenchmarkData
from evoalign.errors import DataError
from evoalign.io import read_jsonl
from evoalign.text import normalize, shingles, similar_pairs

EXAMPLES = 3


def _prompt_text(row: Mapping[str, Any], where: str) -> str:
    for key in ("prompt", "instruction", "messages"):
        value = row.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            return "\n".join(m.get("content", "") for m in value if isinstance(m, Mapping) and m.get("role") == "user")
    raise DataError(f"{where}: no 'prompt', 'instruction' or 'messages' to compare with the benchmarks")


def training_prompts(paths: Sequence[str | Path]) -> list[str]:
    """The prompts of every training file: a folder contributes its `train_*.jsonl` files."""
    prompts: list[str] = []
    for path in map(Path, paths):
        files = sorted(path.glob("train_*.jsonl")) if path.is_dir() else [path]
        if not files:
            raise DataError(f"{path}: a folder of training data needs train_*.jsonl files (a build output)")
        for file in files:
            for line, row in enumerate(read_jsonl(file), 1):
                prompts.append(_prompt_text(row, f"{file}:{line}"))
    return prompts


def benchmark_overlap(
    train: Sequence[str], suite: Sequence[BenchmarkData], *, threshold: float = 0.5, n: int = 3
) -> dict[str, dict[str, Any]]:
    """Per benchmark: how many of its prompts equal (`exact`) or nearly equal (`near`) a training prompt."""
    exact_keys = {normalize(text) for text in train}
    train_sets = [shingles(text, n) for text in train]
    report = {}
    for bench in suite:
        prompts = [item["prompt"] for item in bench.items]
        exact = [i for i, text in enumerate(prompts) if normalize(text) in exact_keys]
        pairs = similar_pairs([*train_sets, *(shingles(text, n) for text in prompts)], threshold)
        near = sorted({i - len(train) for j, i in pairs if j < len(train) <= i} - set(exact))
        report[bench.name] = {
            "prompts": len(prompts),
            "exact": len(exact),
            "near": len(near),
            "examples": [prompts[i] for i in (exact + near)[:EXAMPLES]],
        }
    return report


def overlap_lines(overlap: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One plain sentence per benchmark that overlaps the training data (none when nothing overlaps)."""
    return [
        f"{name}: {o['exact']} exact and {o['near']} near-duplicate prompts of {o['prompts']} are in the training "
        "data; it is not held out"
        for name, o in overlap.items()
        if o["exact"] or o["near"]
    ]
