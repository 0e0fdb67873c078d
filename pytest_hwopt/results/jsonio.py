"""The one way results are written: JSON text with a fallback for odd values, atomically.

Pure: no pytest, no torch. Every file pytest-hwopt writes for a reader (``--hwopt-json``,
``--hwopt-save``, ``--hwopt-benchmark-json``, ``--hwopt-html``) goes through here, so they
share one layout (``indent=1``, a final newline) and one rule for values JSON has no type
for (:func:`jsonable`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def jsonable(value: object) -> Any:
    """What ``json.dump`` cannot write itself (its ``default=``): sets and tuples as lists,
    paths as text, anything else as its ``repr``."""
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def dumps(data: Mapping[str, Any]) -> str:
    """``data`` as JSON text, one space per indent level, ending in a newline.

    Raises TypeError for keys JSON cannot have (tuples, objects); values go through
    :func:`jsonable`.
    """
    return json.dumps(data, indent=1, default=jsonable) + "\n"


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to a temporary file beside ``path``, then rename it over ``path``.

    Missing folders are made; the file gets the usual permissions (0666 less the umask); a
    reader sees the old file or the new one, never part of one. On any error the temporary
    file is removed and the old file is left as it was. Returns ``path`` as a :class:`Path`.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; a report is not
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_json_atomic(path: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    """Write :func:`dumps` of ``data`` to ``path`` with :func:`write_text_atomic`.

    A value JSON cannot hold raises before anything is written.
    """
    return write_text_atomic(path, dumps(data))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
