"""Shared pieces of the backends: messages, exporters, missing modules."""

from __future__ import annotations

from pytest_hwopt.backends import onnx_export, tensorrt
from pytest_hwopt.backends.base import first_line, missing_modules


def test_first_line() -> None:
    assert first_line(RuntimeError("  top\nmore  ")) == "top"
    assert first_line(RuntimeError("x" * 400), 300) == "x" * 300
    assert first_line(KeyError()) == "KeyError"
    assert first_line(KeyError(), empty="") == ""


def test_one_list_of_exporters() -> None:
    assert tensorrt.EXPORTERS is onnx_export.EXPORTERS == ("dynamo", "torchscript")


def test_missing_modules_are_named() -> None:
    assert missing_modules(["json"]) is None
    assert missing_modules(["json", "no_such_module_here", "nor.this"]) == (
        "no_such_module_here, nor.this not installed")


def test_an_exception_with_an_empty_or_blank_message_has_an_empty_first_line():
    """A backend's error text never fails on a message that is empty or only a newline."""
    from pytest_hwopt.backends.base import first_line

    assert first_line(RuntimeError(""), empty="") == ""
    assert first_line(RuntimeError("\n"), empty="") == ""
    assert first_line(RuntimeError("\nsecond"), empty="") == "second"
