"""A content-addressed SQLite cache of model responses.

Each sample is stored under sha256(model identity, conversation, sampling params without n, sample index),
so a rerun of the same calls makes no model calls, asking for more samples reuses the ones already drawn,
and an interrupted run resumes where it stopped. Work is committed in chunks, and the database runs in WAL
mode so concurrent readers (and several processes of a sharded run) are safe. The file (and its folder) is
created on first use, so a stage can load its models before it creates its run folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from evoalign.errors import DataError
from evoalign.models.base import ChatModel, Sample, SamplingParams, Score, WrappedChatModel
from evoalign.prompts import Conversation


def weights_fingerprint(path: str | Path) -> str | None:
    """A cheap content fingerprint of a local model or adapter (a folder's top-level files, or one file such as a
    GGUF): a hash of every file's name, size and modification time, so retraining into the same folder or
    overwriting a model changes it. None for a path that does not exist (a hub id)."""
    path = Path(path).expanduser()
    if not path.exists():
        return None
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]


def sample_key(identity: str, conversation: Conversation, params: SamplingParams, index: int) -> str:
    settings = params.to_dict()
    settings.pop("n")
    payload = json.dumps([identity, conversation, settings, index], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


class ResponseCache:
    """key -> JSON value store in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()

    def _connect(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._errors():
                connection = sqlite3.connect(self.path, timeout=60)
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
                with connection:
                    connection.execute(
                        "CREATE TABLE IF NOT EXISTS samples (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
                    )
            self._local.connection = connection
        return connection

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """A corrupt, truncated or unwritable cache file is a one-line error naming it."""
        try:
            yield
        except sqlite3.DatabaseError as err:
            if isinstance(err, sqlite3.OperationalError) and "locked" in str(err):
                raise
            raise DataError(
                f"{self.path}: the response cache cannot be used ({err}); delete it (its answers are then "
                "recomputed) or choose another output_dir"
            ) from None
        except (json.JSONDecodeError, TypeError) as err:
            raise DataError(
                f"{self.path}: the response cache holds a corrupt entry ({err}); delete it (its answers are then "
                "recomputed) or choose another output_dir"
            ) from None

    def get_many(self, keys: list[str]) -> dict[str, dict]:
        found: dict[str, dict] = {}
        db = self._connect()
        with self._errors():
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for key, value in db.execute(f"SELECT key, value FROM samples WHERE key IN ({marks})", chunk):
                    found[key] = json.loads(value)
        return found

    def put_many(self, items: dict[str, dict]) -> None:
        db = self._connect()
        with self._errors(), db:
            db.executemany(
                "INSERT OR REPLACE INTO samples (key, value) VALUES (?, ?)",
                [(key, json.dumps(value, ensure_ascii=False)) for key, value in items.items()],
            )

    def __len__(self) -> int:
        return self._connect().execute("SELECT COUNT(*) FROM samples").fetchone()[0]


class CachedChatModel(WrappedChatModel):
    """Wraps any ChatModel; only conversations missing some sample reach the wrapped model."""

    def __init__(self, inner: ChatModel, path: str | Path, chunk_size: int = 64) -> None:
        super().__init__(inner)
        self.cache = ResponseCache(path)
        self.chunk_size = chunk_size
        self.calls = 0  # conversations sent to the wrapped model, for summaries and tests

    def generate(
        self, conversations: list[Conversation], params: SamplingParams | None = None, *, desc: str | None = None
    ) -> list[list[Sample]]:
        params = params or SamplingParams()
        keys = [[sample_key(self.identity, c, params, k) for k in range(params.n)] for c in conversations]
        found = self.cache.get_many([key for row in keys for key in row])
        missing = [i for i, row in enumerate(keys) if any(key not in found for key in row)]
        for start in range(0, len(missing), self.chunk_size):
            chunk = missing[start : start + self.chunk_size]
            label = f"{desc} ({start + len(chunk)}/{len(missing)} uncached)" if desc else None
            produced = self.inner.generate([conversations[i] for i in chunk], params, desc=label)
            self.calls += len(chunk)
            new = {
                keys[i][k]: sample.to_dict() for i, samples in zip(chunk, produced) for k, sample in enumerate(samples)
            }
            self.cache.put_many(new)
            found.update(new)
        try:
            return [[Sample.from_dict(found[key]) for key in row] for row in keys]
        except (KeyError, TypeError, AttributeError) as err:
            raise DataError(
                f"{self.cache.path}: the response cache holds a corrupt entry ({err}); delete it (its answers are "
                "then recomputed) or choose another output_dir"
            ) from None

    def score(self, conversations: list[Conversation], responses: list[str]) -> list[Score]:
        return self.inner.score(conversations, responses)

    def check(self) -> None:
        self.inner.check()

    def close(self) -> None:
        self.inner.close()
