"""The artefact cache's key: everything an export depends on, the traced code included."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from pytest_hwopt.backends.cache import ArtifactCache, model_fingerprint

torch = pytest.importorskip("torch")

SOURCE = '''
import torch


class Scaled(torch.nn.Module):
    def __init__(self, factor=2.0):
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)
        self.factor = factor

    def forward(self, x):
        h = self.proj(x)
        return BODY
'''


def build(tmp_path: Path, body: str, name: str, **kwargs: object) -> torch.nn.Module:
    """A module defined in its own file, as a test file defines it."""
    path = tmp_path / f"{name}.py"
    path.write_text(SOURCE.replace("BODY", body))
    namespace: dict[str, object] = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    torch.manual_seed(0)
    return namespace["Scaled"](**kwargs)  # type: ignore[operator]


def test_an_edited_forward_is_another_entry(tmp_path):
    x = (torch.randn(2, 4),)
    old = build(tmp_path, "h * 2", "a")
    same = build(tmp_path, "h * 2", "b")
    edited = build(tmp_path, "torch.relu(h) * 2", "c")
    assert model_fingerprint(old, x) == model_fingerprint(same, x)
    assert model_fingerprint(old, x) != model_fingerprint(edited, x)


def test_plain_attributes_and_a_patched_forward_are_part_of_the_key(tmp_path):
    x = (torch.randn(2, 4),)
    two = build(tmp_path, "h * self.factor", "a")
    three = build(tmp_path, "h * self.factor", "a", factor=3.0)
    assert model_fingerprint(two, x) != model_fingerprint(three, x)
    patched = build(tmp_path, "h * self.factor", "a")
    patched.forward = lambda inp: patched.proj(inp)  # type: ignore[method-assign]
    assert model_fingerprint(patched, x) != model_fingerprint(two, x)


def test_a_temporary_cache_folder_goes_with_the_cache():
    cache = ArtifactCache(None)
    root = cache.root
    assert root.is_dir()
    del cache
    gc.collect()
    assert not root.exists()
