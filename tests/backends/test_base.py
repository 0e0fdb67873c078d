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


class TorchExportError(RuntimeError):
    """Stands in for torch.onnx's error: boilerplate in colour, the cause chained."""


def export_failure() -> BaseException:
    try:
        try:
            raise RuntimeError("Unsupported: output of type DynamicCache is not a tensor")
        except RuntimeError as cause:
            raise TorchExportError(
                "Failed to export the model with torch.export. \x1b[96mThis is step 1/3\x1b[0m "
                "of exporting the model to ONNX. Next steps:\n- Modify the model code\n"
                "- Create an issue in the PyTorch GitHub repository against the "
                "\x1b[96m*torch.export*\x1b[0m component") from cause
    except TorchExportError as exc:
        return exc


def test_a_failure_keeps_the_cause_without_escape_codes_or_boilerplate() -> None:
    from pytest_hwopt.backends.base import clean_text, failure_text

    exc = export_failure()
    assert failure_text(exc) == ("TorchExportError: RuntimeError: Unsupported: output of type "
                                 "DynamicCache is not a tensor")
    assert clean_text(str(exc)) == ""  # nothing but boilerplate
    assert failure_text(ValueError("\x1b[1mbold\x1b[0m reason")) == "ValueError: bold reason"
    assert first_line(ValueError("\x1b[31mred\x1b[0m")) == "red"


def test_known_causes_get_their_fix() -> None:
    from pytest_hwopt.backends.base import known_fix, with_fix

    assert "use_cache=False" in (known_fix(export_failure()) or "")
    assert known_fix(ValueError("shape mismatch")) is None
    assert with_fix("ONNX export failed", ValueError("x"), "DynamicCache").endswith(
        "so that it returns tensors only")
    assert with_fix("ONNX export failed", ValueError("x")) == "ONNX export failed"
