"""Load the build stage's training splits for the recipes.

`dataset_name` may be a `save_to_disk` folder (a `DatasetDict`), the build stage's output folder (its
`dataset/` DatasetDict, else its `<split>.jsonl` files), a folder of `<split>.jsonl` / `<split>.json` files,
a single JSON/JSONL file (used as the training split), or a Hub dataset id. Extra columns (`id`, `kind`,
`source`, `ches`) are carried along and ignored by the trainers.
Rows must be conversational (lists of `{role, content}` messages): the model's chat template is then
applied by TRL at training exactly as the evaluation stage applies it, never a hand-written format.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from evoalign.errors import DataError

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

SFT_COLUMNS = ("prompt", "completion")
DPO_COLUMNS = ("prompt", "chosen", "rejected")
_JSON_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
ROLES = ("system", "user", "assistant")
BUILD_DATASET_DIR = "dataset"  # where the build stage saves its DatasetDict inside its output folder


def _split_files(folder: Path, splits: list[str]) -> dict[str, str]:
    files = {}
    for split in splits:
        found = [folder / f"{split}{suffix}" for suffix in _JSON_SUFFIXES if (folder / f"{split}{suffix}").is_file()]
        if found and found[0].stat().st_size == 0:
            raise DataError(f"{found[0]}: the file is empty (split '{split}' has no rows)")
        if found:
            files[split] = str(found[0])
    if not files:
        names = ", ".join(f"{split}.jsonl" for split in splits)
        raise DataError(f"{folder}: no dataset_dict.json (save_to_disk) and none of {names}")
    return files


def _check_saved_splits(folder: Path, splits: list[str]) -> None:
    """A saved split with no data files (an empty split) makes `load_from_disk` fail with an IndexError; name the
    first such split that training needs."""
    for state in [folder / split / "state.json" for split in splits if (folder / split / "state.json").is_file()]:
        try:
            data_files = json.loads(state.read_text(encoding="utf-8")).get("_data_files")
        except (OSError, ValueError) as err:
            raise DataError(f"{state}: unreadable saved split ({err})") from None
        if not data_files:
            raise DataError(
                f"{state.parent}: split '{state.parent.name}' is empty (no data files); "
                "rebuild with more rows or train from a folder whose splits all have rows"
            )


def _load_all(name: str, config: str | None, splits: list[str], streaming: bool) -> DatasetDict:
    from datasets import DatasetDict, load_dataset, load_from_disk

    path = Path(name).expanduser()
    for folder in (path, path / BUILD_DATASET_DIR):
        if (folder / "dataset_dict.json").is_file():
            _check_saved_splits(folder, splits)
            # split by split: one empty split that training does not use must not stop it
            return DatasetDict({s: load_from_disk(str(folder / s)) for s in splits if (folder / s).is_dir()})
    if (path / "state.json").is_file():
        raise DataError(f"{path}: holds a single Dataset; save a DatasetDict with splits {', '.join(splits)}")
    try:
        if path.is_dir():
            return load_dataset("json", data_files=_split_files(path, splits))
        if path.is_file():
            return DatasetDict({splits[0]: load_dataset("json", data_files=str(path), split="train")})
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - datasets raises many kinds for an unreadable or empty file
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"{path}: cannot be read as a JSON/JSONL dataset ({first})") from None
    if name.startswith((".", "/", "~")) or path.suffix in (".jsonl", ".json"):
        raise DataError(f"{name}: dataset not found")
    try:
        return load_dataset(name, name=config, streaming=streaming)
    except (FileNotFoundError, ConnectionError, ValueError) as err:
        raise DataError(f"{name}: not a local dataset and not loadable from the Hub ({err})") from None


def _conversational(messages: object) -> bool:
    return (
        isinstance(messages, list)
        and bool(messages)
        and all(isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str) for m in messages)
    )


def _check_split(dataset: Dataset, where: str, columns: tuple[str, ...]) -> None:
    """Every row (the first only, for a streamed split) holds conversational messages in `columns`."""
    missing = [column for column in columns if column not in (dataset.column_names or [])]
    if missing:
        found = ", ".join(dataset.column_names or []) or "none"
        raise DataError(f"{where}: missing column(s) {', '.join(missing)}; found {found}")
    rows = dataset if hasattr(dataset, "__len__") else [next(iter(dataset), None)]
    if not len(rows) or rows[0] is None:
        raise DataError(f"{where}: the split is empty")
    for index, row in enumerate(rows):
        for column in columns:
            if not _conversational(row[column]):
                raise DataError(
                    f"{where}: row {index}: column '{column}' must be conversational (a non-empty list of {{role, "
                    f"content}} messages with text content), got {type(row[column]).__name__} {str(row[column])[:60]!r}; "
                    "plain strings would bypass the model's chat template"
                )


def load_splits(
    name: str, splits: list[str], columns: tuple[str, ...], *, config: str | None = None, streaming: bool = False
) -> dict[str, Dataset]:
    """Load `splits` of dataset `name`, checking that each exists and has the conversational `columns`."""
    dataset = _load_all(name, config, splits, streaming)
    if not hasattr(dataset, "keys"):
        raise DataError(f"{name}: expected a dataset with splits {', '.join(splits)}, got a single split")
    loaded = {}
    for split in splits:
        if split not in dataset:
            raise DataError(f"{name}: no split '{split}'; found {', '.join(dataset.keys()) or 'none'}")
        _check_split(dataset[split], f"{name} [{split}]", columns)
        loaded[split] = dataset[split]
    return loaded
