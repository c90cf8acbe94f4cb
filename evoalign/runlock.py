"""One writer per run folder: a stage holds `<run folder>/.evoalign.lock` while it writes there.

The lock is an advisory `flock` on that file, so it ends with its process (a killed run leaves no stale lock);
the file records the holder's pid, host and command. A second process that finds the folder locked stops with
one line naming the holder, before it writes anything. `check_unlocked` makes that check early (before a
stage's own checks of the folder's content), and `RunLock` takes the lock where the stage creates its folder:

    check_unlocked(run_dir)                      # at start-up: a running holder is named at once
    with RunLock(run_dir, "evolve") as lock:
        ...                                      # models and inputs checked; nothing written yet
        lock.acquire()                           # creates the folder, or fails naming the holder
        ...                                      # the stage writes its files; released at the end
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from evoalign.errors import ConfigError
from evoalign.secrets import scrub_secrets

LOCK_NAME = ".evoalign.lock"


def _holder(handle: Any) -> str:
    handle.seek(0)
    try:
        info = json.loads(handle.read() or "{}")
    except json.JSONDecodeError:
        info = {}
    if not info:
        return "another process"
    return f"pid {info.get('pid')} on {info.get('host')} ({info.get('command')})"


def _locked_error(run_dir: Path, holder: str) -> ConfigError:
    return ConfigError(f"{run_dir} is in use by {holder}; wait for that run to finish, or choose another output_dir")


def check_unlocked(run_dir: str | Path) -> None:
    """ConfigError naming the holder if a live process holds the lock of `run_dir`; nothing is created."""
    path = Path(run_dir) / LOCK_NAME
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - held only for this check
    except OSError:
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _locked_error(Path(run_dir), _holder(handle)) from None
        fcntl.flock(handle, fcntl.LOCK_UN)


class RunLock:
    """The exclusive lock of a run folder (see the module docstring); creates the folder if needed."""

    def __init__(self, run_dir: str | Path, command: str) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.command = command
        self.created = False  # whether acquiring created the run folder
        self._handle: Any = None

    def acquire(self) -> RunLock:
        self.created = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        while True:
            handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(handle)
                handle.close()
                raise _locked_error(self.run_dir, holder) from None
            try:
                same = os.fstat(handle.fileno()).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:  # the previous holder removed the file as we opened it
                same = False
            if same:
                break
            handle.close()
        handle.seek(0)
        handle.truncate()
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else self.command
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": f"evoalign {self.command}: {command}"}
        handle.write(json.dumps(scrub_secrets(info)))
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        """Unlock and remove the lock file; the folder goes too if acquiring created it and nothing else is there."""
        if self._handle is None:
            return
        self.path.unlink(missing_ok=True)
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None
        if self.created and not any(self.run_dir.iterdir()):
            self.run_dir.rmdir()

    def __enter__(self) -> RunLock:
        """The lock, not yet acquired: `acquire()` where the stage creates its folder; released on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
