"""Whether the Hugging Face hub answers, asked once per process with a one-second timeout.

Offline machines otherwise spend minutes in the hub clients' retry loops before failing.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket


@functools.cache
def hub_reachable() -> bool:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    with contextlib.suppress(OSError), socket.create_connection(("huggingface.co", 443), timeout=1):
        return True
    return False
