"""Prepared artefacts (ONNX files, engines) cached on disk, keyed by everything they depend on.

The key of a model's artefact covers its structure, weights, attributes, the code that is
traced (:func:`code_fingerprint`) and the inputs' shapes. An entry is trusted only when its
recorded checksum matches; a corrupt entry is rebuilt. Whether an entry came from the cache
is reported (``onnx_cached``, ``engine_cached`` in a result, ``from_cache`` over them).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def model_fingerprint(model: Any, example_inputs: Iterable[Any]) -> str:
    """Hash of everything an export of ``model`` on inputs like ``example_inputs`` depends on.

    The module's structure (``repr``), every parameter and buffer (non-persistent ones
    included) by name, shape, dtype and value, each submodule's plain attributes (numbers,
    strings: ``self.scale = 2.0``), the code that runs (:func:`code_fingerprint`), and the
    inputs' shapes and dtypes. A change to any of them is another entry.
    """
    import torch

    h = hashlib.sha256()
    h.update(type(model).__qualname__.encode())
    h.update(repr(model).encode())
    h.update(code_fingerprint(model).encode())
    tensors = [*model.named_parameters(remove_duplicate=False),
               *model.named_buffers(remove_duplicate=False)]
    for name, tensor in sorted(tensors, key=lambda item: item[0]):
        h.update(name.encode())
        t = tensor.detach().cpu().contiguous()
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    for name, sub in model.named_modules(remove_duplicate=False):
        h.update(f"{name}:{sorted(_plain_attributes(sub).items())!r}".encode())
    for x in example_inputs:
        h.update(str((tuple(getattr(x, "shape", ())), str(getattr(x, "dtype", type(x))))).encode())
    return h.hexdigest()[:24]


def code_fingerprint(model: Any) -> str:
    """Hash of the code an export of ``model`` traces.

    For every class among the module and its submodules (and their base classes outside
    torch, whose own code its version in the cache key covers): the whole source file the
    class is defined in, so that an edit of ``forward``, of a method it calls or of a
    helper function beside it is another entry; without a file (code made by ``exec``), the
    byte code of the class's functions. Also an instance's own ``forward`` and its forward
    hooks.
    """
    h = hashlib.sha256()
    files: dict[str, bytes] = {}
    seen: set[type] = set()
    for sub in model.modules():
        own = sub.__dict__.get("forward")  # a forward set on the instance
        if own is not None:
            h.update(_code_digest(own))
        for hooks in ("_forward_hooks", "_forward_pre_hooks"):
            for hook in (getattr(sub, hooks, None) or {}).values():
                h.update(_code_digest(hook))
        for klass in type(sub).__mro__:
            if klass in seen or klass is object or klass.__module__.split(".")[0] == "torch":
                continue
            seen.add(klass)
            h.update(f"{klass.__module__}.{klass.__qualname__}".encode())
            h.update(_class_source(klass, files))
    return h.hexdigest()


def _class_source(klass: type, files: dict[str, bytes]) -> bytes:
    """The bytes of the file ``klass`` is defined in (read once per file), else its code."""
    try:
        path = inspect.getsourcefile(klass)
    except (TypeError, OSError):
        path = None
    if path:
        if path not in files:
            try:
                files[path] = hashlib.sha256(Path(path).read_bytes()).digest()
            except OSError:
                files[path] = b""
        if files[path]:
            return files[path]
    return b"".join(_code_digest(v) for v in vars(klass).values() if callable(v))


def _code_digest(fn: Any) -> bytes:
    """A digest of a function's byte code, constants and names (nested functions included)."""
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    if code is None:
        return repr(type(fn)).encode()
    h = hashlib.sha256()

    def add(c: Any) -> None:
        h.update(c.co_code)
        h.update(repr(c.co_names).encode())
        for const in c.co_consts:
            if hasattr(const, "co_code"):
                add(const)
            else:
                h.update(repr(const).encode())

    add(code)
    return h.digest()


def _plain_attributes(module: Any) -> dict[str, object]:
    """A module's attributes that are plain values (numbers, strings, tuples of them)."""
    def plain(v: object) -> bool:
        if isinstance(v, (tuple, list)):
            return all(plain(x) for x in v)
        return v is None or isinstance(v, (bool, int, float, str))

    return {k: v for k, v in vars(module).items() if plain(v)}


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ArtifactCache:
    """A folder of cached artefacts; each entry is a file plus a ``.json`` manifest."""

    def __init__(self, root: Path | None) -> None:
        """``root`` None (pytest's cache is off): a temporary folder, removed when the cache
        is no longer used or the process ends."""
        if root:
            self.root = Path(root)
            self.root.mkdir(parents=True, exist_ok=True)
        else:
            self.root = Path(tempfile.mkdtemp(prefix="pytest-hwopt-"))
            self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.root), True)

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
