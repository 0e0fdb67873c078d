"""A per-device lock across processes, so parallel workers never measure on one device at once."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path


def lock_path(device: str) -> Path:
    """One lock file per device and user, in the system temporary folder."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", device)
    return Path(tempfile.gettempdir()) / f"pytest-hwopt-{os.getuid()}-{safe}.lock"


@contextlib.contextmanager
def device_lock(device: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the device's lock file while measuring."""
    path = lock_path(device)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
