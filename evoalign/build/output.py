"""Writing the build's files: JSONL splits, the `save_to_disk` DatasetDict, and the optional hub push.

Every file is written atomically; the DatasetDict is saved into a temporary folder next to its final place and
renamed into it, so a killed run never leaves a half-written dataset where a reader expects a complete one.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evoalign.errors import ConfigError
from evoalign.io import atomic_write_jsonl
from evoalign.runlock import LOCK_NAME, RunLock, check_unlocked

SFT_SPLITS = ("train_sft", "test_sft")
PREF_SPLITS = ("train_prefs", "test_prefs")
SPLITS = (*SFT_SPLITS, *PREF_SPLITS)
DATASET_DIR = "dataset"
CACHE_FILE = "cache.sqlite"


def split_features(split: str) -> Any:
    """The column types of a split: conversational message lists plus our metadata columns."""
    from datasets import Features, List, Value

    messages = List({"role": Value("string"), "content": Value("string")})
    columns = {"id": Value("string"), "kind": Value("string"), "source": Value("string"), "prompt": messages}
    if split in SFT_SPLITS:
        return Features({**columns, "category": Value("string"), "completion": messages})
    return Features({**columns, "chosen": messages, "rejected": messages, "ches": Value("float64")})


def prepare_output_dir(lock: RunLock, resume: bool) -> Path:
    """Create and lock the output folder; a non-empty one is an error unless resuming."""
    out = lock.run_dir
    check_unlocked(out)
    if out.exists() and any(p.name != LOCK_NAME for p in out.iterdir()) and not resume:
        raise ConfigError(
            f"output_dir {out} is not empty; pass --resume to continue there (cached model calls are reused) "
            "or choose another output_dir"
        )
    lock.acquire()
    return out


def write_splits(out: Path, splits: Mapping[str, list[dict[str, Any]]]) -> Any:
    """Write `<split>.jsonl` files and the `dataset/` DatasetDict; returns the DatasetDict."""
    from datasets import Dataset, DatasetDict

    for name in SPLITS:
        atomic_write_jsonl(out / f"{name}.jsonl", splits[name])
    features = {name: split_features(name) for name in SPLITS}
    dataset = DatasetDict(
        {
            name: Dataset.from_dict(
                {column: [row[column] for row in splits[name]] for column in features[name]}, features=features[name]
            )
            for name in SPLITS
        }
    )
    final = out / DATASET_DIR
    staging = Path(tempfile.mkdtemp(dir=out, prefix=f".{DATASET_DIR}."))
    try:
        dataset.save_to_disk(str(staging / DATASET_DIR))
        if final.exists():
            final.rename(staging / "previous")
        (staging / DATASET_DIR).rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dataset


def push_to_hub(dataset: Any, card: Path, repo_id: str, private: bool) -> None:
    """Upload the card, then the splits as configs `sft` and `prefs` (their columns differ).

    The card goes first: each push keeps the card's text and rewrites only its own config's metadata.
    """
    from datasets import DatasetDict
    from huggingface_hub import DatasetCard, HfApi

    HfApi().create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    DatasetCard.load(card, repo_type="dataset").push_to_hub(repo_id, repo_type="dataset")
    for config_name, names in (("sft", SFT_SPLITS), ("prefs", PREF_SPLITS)):
        DatasetDict({name: dataset[name] for name in names}).push_to_hub(
            repo_id, config_name=config_name, private=private
        )
