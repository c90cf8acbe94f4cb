"""Load rows from a local file or a hub dataset, renaming columns with a field mapping.

A source is a local path (.jsonl/.csv/.json, or a `save_to_disk` directory) or a hub dataset id. Stages use
this one function for seeds, benchmarks and harmful-prompt sets, so every input accepts the same forms and
fails the same way: a one-line `DataError` naming the file and line, or the dataset that could not be reached.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evoalign.errors import ConfigError, DataError
from evoalign.hub import hub_reachable
from evoalign.io import load_records
from evoalign.paths import is_local_path


@dataclass
class Source:
    """Where rows come from and how their columns map to ours (`fields`: our name -> source column)."""

    path: str
    fields: dict[str, str] = field(default_factory=dict)
    split: str = "train"
    subset: str | None = None
    filter: dict[str, Any] = field(default_factory=dict)  # keep rows whose source column equals the value
    limit: int | None = None

    @classmethod
    def from_config(cls, value: str | Mapping[str, Any], where: str = "config") -> Source:
        """The source a config value names (a path or a mapping), checked: types, keys, `limit` >= 1; a
        ConfigError names `where` (e.g. `run.yaml: 'seeds'`)."""
        from evoalign.config import check_fields

        if isinstance(value, str):
            value = {"path": value}
        if not isinstance(value, Mapping) or "path" not in value:
            raise ConfigError(
                f"{where}: a data source is a path or a mapping with 'path' (and optional fields, split, subset, "
                f"filter, limit), got {value!r}"
            )
        return check_fields(cls, dict(value), where)

    def validate(self, where: str) -> None:
        if not self.path.strip():
            raise ConfigError(f"{where}: 'path' is empty")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"{where}: 'limit' must be at least 1 (or unset for every row), got {self.limit}")


def _load_hub(source: Source) -> list[dict[str, Any]]:
    if not hub_reachable():
        raise DataError(
            f"dataset '{source.path}' is not a local file and the hub is unreachable; give a local path instead"
        )
    try:
        from datasets import load_dataset

        dataset = load_dataset(source.path, source.subset, split=source.split)
    except Exception as err:  # noqa: BLE001 - any failure here means "not reachable"; say which dataset
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(
            f"dataset '{source.path}' is neither a local file nor reachable on the hub ({first}); "
            "give a local path instead"
        ) from None
    return [dict(row, _line=index + 1) for index, row in enumerate(dataset)]


def _load_local(source: Source, required: list[str]) -> list[dict[str, Any]]:
    path = Path(source.path).expanduser()
    if path.is_dir():
        from datasets import load_from_disk

        try:
            data = load_from_disk(str(path))
        except Exception as err:  # noqa: BLE001
            raise DataError(f"{path}: not a dataset saved with save_to_disk ({err})") from None
        if hasattr(data, "keys"):
            if source.split not in data:
                raise DataError(f"{path}: no split '{source.split}'; splits: {', '.join(data.keys())}")
            data = data[source.split]
        return [dict(row, _line=index + 1) for index, row in enumerate(data)]
    return load_records(path, {}, keep_other=True, required=[source.fields.get(n, n) for n in required])


def load_source(source: Source | str | Mapping[str, Any], *, required: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Rows of `source` with columns renamed by its field mapping; `required` fields must be non-empty."""
    if not isinstance(source, Source):
        source = Source.from_config(source)
    rows = _load_local(source, list(required)) if is_local_path(source.path) else _load_hub(source)
    origin = source.path
    renamed = []
    for row in rows:
        if any(row.get(column) != value for column, value in source.filter.items()):
            continue
        out = dict(row)
        for ours, theirs in source.fields.items():
            if theirs not in row:
                raise DataError(f"{origin}: missing column '{theirs}' (mapped to '{ours}')")
            out[ours] = row[theirs]
        for name in required:
            value = out.get(name)
            if not isinstance(value, str) or not value.strip():
                raise DataError(
                    f"{origin}:{row.get('_line', '?')}: empty or missing '{source.fields.get(name, name)}'"
                )
            out[name] = value.strip()
        renamed.append(out)
    if source.limit is not None:
        renamed = renamed[: source.limit]
    if not renamed:
        raise DataError(f"{origin}: no rows (empty file, or the filter matched nothing)")
    return renamed
