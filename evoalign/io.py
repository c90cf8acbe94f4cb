"""Reading and writing the files at stage boundaries.

Writes are atomic (temp file in the same folder, fsync, rename), so a killed run never leaves a partial
file where a complete one is expected. Reads are strict: bad UTF-8, malformed JSON lines and missing
columns raise `DataError` naming the file and line.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from evoalign.errors import DataError


def _temp_prefix(path: Path, pid: int | str) -> str:
    return f".{path.name}.{socket.gethostname()}-{pid}."


def _remove_stale_temps(path: Path) -> None:
    """Delete temp files of `path` left by killed writers on this host (their process no longer exists)."""
    for stale in path.parent.glob(_temp_prefix(path, "*") + "*.tmp"):
        pid = stale.name[len(_temp_prefix(path, "")) - 1 :].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            stale.unlink(missing_ok=True)
        except PermissionError:  # alive, owned by someone else
            pass


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` so that readers see either the old file or the complete new one."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path, os.getpid()), suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are ordinary shareable files
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:  # a full disk or a lost mount: the error names the file being written
        Path(tmp).unlink(missing_ok=True)
        if err.filename is None:
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def read_text_strict(path: str | Path) -> str:
    """Read a UTF-8 file; undecodable bytes raise a `DataError` with the line number."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 (byte {err.start})") from None


def jsonl_lines(text: str) -> list[str]:
    """The lines of a JSONL text: split at newlines only. `str.splitlines` also splits at U+2028, U+2029, U+0085
    and other characters that JSON allows raw inside a string (and that `json.dumps(ensure_ascii=False)` writes)."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL file of objects; blank lines are skipped, anything else malformed is an error."""
    rows = []
    for number, line in enumerate(jsonl_lines(read_text_strict(path)), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{number}: malformed JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def _read_csv(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(read_text_strict(path)))
    try:
        for row in reader:
            yield reader.line_num, row
    except csv.Error as err:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV ({err})") from None


def _read_json(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        data = json.loads(read_text_strict(path))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: malformed JSON ({err.msg})") from None
    if isinstance(data, dict):
        lists = [value for value in data.values() if isinstance(value, list)]
        if len(lists) != 1:
            raise DataError(f"{path}: expected a JSON list of records (or an object holding exactly one list)")
        data = lists[0]
    for index, row in enumerate(data):
        if not isinstance(row, dict):
            raise DataError(f"{path}: record {index} is not an object")
        yield index + 1, row


def iter_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line or record number, row) from a .jsonl, .csv or .json file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        rows = read_jsonl(path)
        # read_jsonl skips blank lines, so recover true line numbers for error messages
        lines = [n for n, line in enumerate(jsonl_lines(read_text_strict(path)), 1) if line.strip()]
        yield from zip(lines, rows)
    elif suffix == ".csv":
        yield from _read_csv(path)
    elif suffix == ".json":
        yield from _read_json(path)
    else:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'}; use .jsonl, .csv or .json")


def load_records(
    path: str | Path,
    fields: Mapping[str, str],
    *,
    required: Iterable[str] = (),
    keep_other: bool = False,
    min_rows: int = 1,
) -> list[dict[str, Any]]:
    """Load rows from a local file and rename columns: `fields` maps our name -> the file's column.

    Every name in `required` must map to a present, non-empty value; errors name the file and line.
    """
    path = Path(path)
    required = list(required)
    records = []
    first = True
    for number, row in iter_records(path):
        if first:
            missing = [fields.get(name, name) for name in required if fields.get(name, name) not in row]
            if missing:
                raise DataError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, row))}")
            first = False
        record = dict(row) if keep_other else {}
        for ours, theirs in fields.items():
            record[ours] = row.get(theirs)
        for name in required:
            value = record.get(name, row.get(name))
            record.setdefault(name, value)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise DataError(f"{path}:{number}: empty '{fields.get(name, name)}'")
        record["_line"] = number
        records.append(record)
    if len(records) < min_rows:
        raise DataError(f"{path}: no records (the file is empty)")
    return records
