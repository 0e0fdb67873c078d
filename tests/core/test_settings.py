"""Unit tests for pytest_hwopt.core.settings: raw option values -> validated Settings."""

from __future__ import annotations

import pytest

from pytest_hwopt.core import settings as options
from pytest_hwopt.core.settings import OPTIONS, OptionError, Settings, parse_settings


def test_defaults():
    settings = parse_settings({})
    assert settings == Settings(threads=options.default_threads())
    assert settings.device == "auto"
    assert settings.backends == ()
    assert settings.json_path is None
    assert settings.report_only is False
    assert (settings.max_time_s, settings.min_rounds) == (5.0, 8)
    assert (settings.warmup_ms, settings.block_ms) == (50.0, 10.0)
    assert (settings.confidence, settings.seed) == (0.95, 0)
    assert settings.threads >= 1


def test_unset_values_are_none_or_empty():
    raw = {opt.name: None for opt in OPTIONS}
    assert parse_settings(raw) == parse_settings({})
    raw = {opt.name: "" for opt in OPTIONS if not opt.flag}
    assert parse_settings(raw) == parse_settings({})


def test_every_option_has_a_cli_flag_from_its_ini_key():
    for opt in OPTIONS:
        assert opt.name.startswith("hwopt_")
        assert opt.cli == "--" + opt.name.replace("_", "-")
    assert {"--hwopt-device", "--hwopt-backends", "--hwopt-json", "--hwopt-report-only",
            "--hwopt-max-time", "--hwopt-min-rounds", "--hwopt-warmup-ms", "--hwopt-block-ms",
            "--hwopt-confidence", "--hwopt-threads", "--hwopt-seed"} <= {o.cli for o in OPTIONS}
    assert [o.name for o in OPTIONS if o.flag] == ["hwopt_report_only", "hwopt_strict",
                                                  "hwopt_disable"]


def test_all_values_parsed():
    settings = parse_settings({
        "hwopt_device": "cuda:1", "hwopt_backends": "onnx,torch", "hwopt_json": "out/r.json",
        "hwopt_report_only": True, "hwopt_max_time": "2.5", "hwopt_min_rounds": "12",
        "hwopt_warmup_ms": "0", "hwopt_block_ms": "0.5", "hwopt_confidence": "0.99",
        "hwopt_threads": "4", "hwopt_seed": "42",
    })
    assert settings == Settings(device="cuda:1", backends=("onnx", "torch"),
                                json_path="out/r.json", report_only=True, max_time_s=2.5,
                                min_rounds=12, warmup_ms=0.0, block_ms=0.5, confidence=0.99,
                                threads=4, seed=42)
    assert type(settings.min_rounds) is int and type(settings.threads) is int
    assert type(settings.seed) is int


@pytest.mark.parametrize("raw,expected", [
    ("auto", "auto"), ("cpu", "cpu"), ("cuda", "cuda"), ("cuda:0", "cuda:0"),
    ("cuda:1", "cuda:1"), ("cuda:12", "cuda:12"), ("CUDA:1", "cuda:1"), ("  cpu ", "cpu"),
])
def test_device_patterns(raw, expected):
    assert parse_settings({"hwopt_device": raw}).device == expected


@pytest.mark.parametrize("raw", ["gpu", "cuda:", "cuda:x", "cuda1", "cpu:0", "mps", "cuda:-1"])
def test_bad_device(raw):
    with pytest.raises(OptionError) as info:
        parse_settings({"hwopt_device": raw})
    assert str(info.value).startswith(f"--hwopt-device={raw}:")
    assert "auto, cpu, cuda or cuda:N" in str(info.value)


@pytest.mark.parametrize("raw,expected", [
    ("onnx", ("onnx",)),
    ("onnx,torch", ("onnx", "torch")),
    (" onnx , torch ,, openvino,", ("onnx", "torch", "openvino")),
    (",", ()),
])
def test_backends_split_on_commas(raw, expected):
    assert parse_settings({"hwopt_backends": raw}).backends == expected


@pytest.mark.parametrize("raw,expected", [
    (True, True), (False, False), (None, False),
    ("1", True), ("true", True), ("True", True), ("YES", True), (" on ", True),
    ("0", False), ("false", False), ("no", False), ("off", False), ("", False),
])
def test_report_only_flag(raw, expected):
    assert parse_settings({"hwopt_report_only": raw}).report_only is expected


def test_bad_report_only():
    with pytest.raises(OptionError, match="hwopt_report_only = maybe: expected true or false"):
        parse_settings({"hwopt_report_only": "maybe"})


def test_disable_flag():
    assert parse_settings({}).disable is False
    assert parse_settings({"hwopt_disable": True}).disable is True
    assert parse_settings({"hwopt_disable": "yes"}).disable is True
    with pytest.raises(OptionError, match="hwopt_disable = maybe: expected true or false"):
        parse_settings({"hwopt_disable": "maybe"})
    disable = next(o for o in OPTIONS if o.name == "hwopt_disable")
    assert disable.flag and disable.cli == "--hwopt-disable" and disable.ini_help is None


@pytest.mark.parametrize("name,value", [
    ("hwopt_max_time", "abc"), ("hwopt_max_time", "0"), ("hwopt_max_time", "-1"),
    ("hwopt_max_time", "inf"), ("hwopt_max_time", "nan"),
    ("hwopt_min_rounds", "2"), ("hwopt_min_rounds", "3.5"), ("hwopt_min_rounds", "many"),
    ("hwopt_warmup_ms", "-0.1"), ("hwopt_warmup_ms", "x"),
    ("hwopt_block_ms", "0"), ("hwopt_block_ms", "-5"),
    ("hwopt_confidence", "1"), ("hwopt_confidence", "0.4"), ("hwopt_confidence", "95"),
    ("hwopt_confidence", "95%"),
    ("hwopt_threads", "0"), ("hwopt_threads", "two"), ("hwopt_threads", "1.5"),
    ("hwopt_seed", "-1"), ("hwopt_seed", "0x10"),
])
def test_bad_number_names_the_flag(name, value):
    flag = "--" + name.replace("_", "-")
    with pytest.raises(OptionError) as info:
        parse_settings({name: value})
    assert str(info.value).startswith(f"{flag}={value}: expected ")


def test_bad_number_message_says_what_is_accepted():
    with pytest.raises(OptionError, match=r"^--hwopt-min-rounds=2: expected a whole number of "
                                          r"rounds >= 3$"):
        parse_settings({"hwopt_min_rounds": "2"})
    with pytest.raises(OptionError, match=r"^--hwopt-confidence=1: expected a level in "
                                          r"\[0.5, 1\), e.g. 0.95$"):
        parse_settings({"hwopt_confidence": "1"})


@pytest.mark.parametrize("name,value,attr,expected", [
    ("hwopt_min_rounds", "3", "min_rounds", 3),
    ("hwopt_warmup_ms", "0", "warmup_ms", 0.0),
    ("hwopt_confidence", "0.5", "confidence", 0.5),
    ("hwopt_threads", "1", "threads", 1),
    ("hwopt_seed", "0", "seed", 0),
    ("hwopt_max_time", "1e-3", "max_time_s", 0.001),
    ("hwopt_max_time", " 7 ", "max_time_s", 7.0),
])
def test_boundary_values_accepted(name, value, attr, expected):
    assert getattr(parse_settings({name: value}), attr) == expected


def test_option_error_is_a_value_error():
    assert issubclass(OptionError, ValueError)


def test_choice_options():
    settings = parse_settings({"hwopt_ort_opt_level": "basic",
                               "hwopt_compile_mode": "max-autotune"})
    assert (settings.ort_opt_level, settings.compile_mode) == ("basic", "max-autotune")
    assert (parse_settings({}).ort_opt_level, parse_settings({}).compile_mode) == ("all", None)
    with pytest.raises(OptionError, match=r"^--hwopt-ort-opt-level=fast: expected one of "
                                          r"disable, basic, extended, all$"):
        parse_settings({"hwopt_ort_opt_level": "fast"})
    with pytest.raises(OptionError, match=r"^--hwopt-compile-mode=turbo: expected one of "):
        parse_settings({"hwopt_compile_mode": "turbo"})
