"""Progress bars for long work: tqdm, shown when a description is given, silent otherwise."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def progress_bar(total: int, desc: str | None = None, unit: str = "it") -> Iterator[Any]:
    """A tqdm bar when `desc` is set (and EVOALIGN_NO_PROGRESS is unset), else a no-op bar."""
    from tqdm.auto import tqdm

    disable = desc is None or bool(os.environ.get("EVOALIGN_NO_PROGRESS"))
    with tqdm(total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True, leave=False) as bar:
        yield bar
