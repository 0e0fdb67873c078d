"""Prepared artefacts (ONNX files, engines) cached on disk, keyed by everything they depend on.

An entry is trusted only when its recorded checksum matches; a corrupt entry is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def model_fingerprint(model: Any, example_inputs: Iterable[Any]) -> str:
    """Hash of the module's structure and weights and of the inputs' shapes and dtypes."""
    import torch

    h = hashlib.sha256()
    h.update(type(model).__qualname__.encode())
    h.update(repr(model).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        t = tensor.detach().cpu().contiguous()
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    for x in example_inputs:
        h.update(str((tuple(getattr(x, "shape", ())), str(getattr(x, "dtype", type(x))))).encode())
    return h.hexdigest()[:24]


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ArtifactCache:
    """A folder of cached artefacts; each entry is a file plus a ``.json`` manifest."""

    def __init__(self, root: Path | None) -> None:
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="pytest-hwopt-"))
        self.root.mkdir(parents=True, exist_ok=True)

    def key(self, *parts: Any) -> str:
        return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:32]

    def get_or_build(self, key: str, suffix: str, build: Callable[[Path], dict[str, Any]]
                     ) -> tuple[Path, dict[str, Any], bool]:
        """Path of the entry, its manifest, and whether it came from the cache.

        ``build(path)`` writes the artefact at ``path`` and returns facts to keep.
        """
        path = self.root / f"{key}{suffix}"
        manifest_path = self.root / f"{key}.json"
        manifest = self._valid(path, manifest_path)
        if manifest is not None:
            return path, manifest, True
        for stale in (path, manifest_path):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
        tmp_dir = Path(tempfile.mkdtemp(prefix=".build-", dir=self.root))
        try:
            tmp = tmp_dir / path.name
            facts = build(tmp)
            # external data files (large ONNX models) stay beside the main file
            for extra in tmp_dir.iterdir():
                if extra != tmp:
                    os.replace(extra, self.root / extra.name)
            os.replace(tmp, path)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        manifest = {"facts": facts, "sha256": file_digest(path)}
        fd, tmp_manifest = tempfile.mkstemp(dir=self.root, suffix=".json.tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(manifest, fh)
        os.replace(tmp_manifest, manifest_path)
        return path, manifest, False

    @staticmethod
    def _valid(path: Path, manifest_path: Path) -> dict[str, Any] | None:
        try:
            manifest = json.loads(manifest_path.read_text())
            if isinstance(manifest, dict) and manifest.get("sha256") == file_digest(path):
                return manifest
        except (OSError, ValueError, AttributeError):
            pass
        return None
