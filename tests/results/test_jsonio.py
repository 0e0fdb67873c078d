"""Unit tests for pytest_hwopt.results.jsonio: JSON layout, fallback encoder, atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pytest_hwopt.results.jsonio import dumps, jsonable, write_json_atomic, write_text_atomic


def test_jsonable_rules():
    assert jsonable({3}) == [3]
    assert jsonable((1, 2)) == [1, 2]
    assert jsonable(Path("/x")) == "/x"
    assert jsonable(object).startswith("<class")


def test_dumps_layout():
    assert dumps({"a": [1, (2, 3)], "p": Path("/x")}) == (
        '{\n "a": [\n  1,\n  [\n   2,\n   3\n  ]\n ],\n "p": "/x"\n}\n')


def test_write_text_atomic(tmp_path):
    target = write_text_atomic(tmp_path / "a" / "b.html", "<p>é</p>")
    assert target == tmp_path / "a" / "b.html"
    assert target.read_text(encoding="utf-8") == "<p>é</p>"
    assert os.listdir(tmp_path / "a") == ["b.html"]


def test_write_text_atomic_failure_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "r.txt"
    target.write_text("old")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["r.txt"]


def test_write_json_atomic_writes_valid_json(tmp_path):
    data = {"a": [1, 2.5, None], "b": {"c": "d"}, "t": (1, 2), "s": {3}, "p": Path("/x")}
    target = write_json_atomic(tmp_path / "out" / "report.json", data)
    assert target == tmp_path / "out" / "report.json"
    text = target.read_text()
    assert text.endswith("\n")
    assert json.loads(text) == {"a": [1, 2.5, None], "b": {"c": "d"}, "t": [1, 2], "s": [3],
                                "p": "/x"}
    assert os.listdir(tmp_path / "out") == ["report.json"]


def test_write_json_atomic_falls_back_to_repr(tmp_path):
    class Odd:
        def __repr__(self):
            return "<odd>"

    target = write_json_atomic(tmp_path / "r.json", {"odd": Odd()})
    assert json.loads(target.read_text()) == {"odd": "<odd>"}


def test_write_json_atomic_replaces_existing(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old contents, not JSON")
    write_json_atomic(target, {"new": True})
    assert json.loads(target.read_text()) == {"new": True}
    assert os.listdir(tmp_path) == ["r.json"]


def test_write_json_atomic_failure_keeps_old_file_and_no_temp(tmp_path):
    target = tmp_path / "r.json"
    target.write_text('{"old": 1}')
    with pytest.raises(TypeError):
        write_json_atomic(target, {("tuple", "key"): 1})  # JSON keys must be strings
    assert json.loads(target.read_text()) == {"old": 1}
    assert os.listdir(tmp_path) == ["r.json"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_write_json_atomic_respects_umask(tmp_path):
    old = os.umask(0o022)
    try:
        target = write_json_atomic(tmp_path / "r.json", {})
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o644
