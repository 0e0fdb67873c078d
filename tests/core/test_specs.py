"""Unit tests for pytest_hwopt.core.specs: marker validation and per-device budgets."""

from __future__ import annotations

import math

import pytest

from pytest_hwopt.core.specs import (
    BUDGET_KINDS,
    Requirement,
    Spec,
    SpecError,
    parse_marker,
    parse_requires,
    resolve_budget,
)

# --- valid markers -------------------------------------------------------------------------


@pytest.mark.parametrize("kind,kwargs,values,vs,of", [
    ("speedup", {"min": 2, "vs": "naive"}, {"min": 2.0}, "naive", None),
    ("speedup", {"min": 1.5, "vs": "naive", "of": "fused"}, {"min": 1.5}, "naive", "fused"),
    ("latency", {"p95_ms": 5}, {"p95_ms": 5.0}, None, None),
    ("latency", {"p50_ms": 1.0, "p99_ms": 9.0, "mean_ms": 2.0, "of": "fast"},
     {"p50_ms": 1.0, "p99_ms": 9.0, "mean_ms": 2.0}, None, "fast"),
    ("throughput", {"min": 1000}, {"min": 1000.0}, None, None),
    ("memory", {"max_mb": 256}, {"max_mb": 256.0}, None, None),
    ("accuracy", {}, {}, None, None),
    ("accuracy", {"atol": 0, "rtol": 1e-3, "vs": "ref"}, {"atol": 0.0, "rtol": 1e-3}, "ref", None),
    ("cold_start", {"max_s": 3}, {"max_s": 3.0}, None, None),
    ("energy", {"max_mj": 0.5, "of": "gpu"}, {"max_mj": 0.5}, None, "gpu"),
    ("roofline", {"min_fraction": 0.6}, {"min_fraction": 0.6}, None, None),
    ("roofline", {"min_fraction": 1}, {"min_fraction": 1.0}, None, None),
    ("ttft", {"p95_ms": 20}, {"p95_ms": 20.0}, None, None),
    ("tpot", {"p50_ms": 2, "of": "cached"}, {"p50_ms": 2.0}, None, "cached"),
    ("failures", {"max": 0, "of": "server"}, {"max": 0.0}, None, "server"),
])
def test_parse_marker_each_kind(kind, kwargs, values, vs, of):
    spec = parse_marker(kind, (), kwargs)
    assert spec == Spec(kind, values, vs, of)
    assert all(type(v) is float for v in spec.values.values())


def test_every_kind_is_covered():
    assert set(BUDGET_KINDS) == {"speedup", "latency", "throughput", "memory", "accuracy",
                                 "cold_start", "energy", "roofline", "ttft", "tpot", "goodput",
                                 "failures"}


def test_speedup_metric_names_a_generation_figure():
    spec = parse_marker("speedup", (), {"min": 2, "vs": "eager", "metric": "ttft"})
    assert spec.options == {"metric": "ttft"}
    assert spec.describe() == "hwopt.speedup(min=2.0, metric='ttft')"
    assert parse_marker("speedup", (), {"min": 2, "vs": "eager"}).options == {}


@pytest.mark.parametrize("metric", ["TTFT", "itl", 3])
def test_speedup_metric_must_be_a_known_figure(metric):
    msg = _error("speedup", (), min=2, vs="eager", metric=metric)
    assert msg == ("hwopt_speedup: 'metric' must be one of 'ttft', 'tpot', 'throughput' "
                   f"(or left out), got {metric!r}")


def test_none_valued_keywords_count_as_not_given():
    """The marker factories always pass of=None; that must not count as an argument."""
    assert parse_marker("latency", (), {"p95_ms": 5.0, "p50_ms": None, "of": None}) == \
        Spec("latency", {"p95_ms": 5.0})


def test_positional_arguments_follow_the_signature_order():
    assert parse_marker("speedup", (2.0, "naive"), {}) == Spec("speedup", {"min": 2.0}, "naive")
    assert parse_marker("speedup", (2.0, "naive", "fused"), {}) == \
        Spec("speedup", {"min": 2.0}, "naive", "fused")
    assert parse_marker("speedup", (2.0,), {"vs": "naive"}) == \
        Spec("speedup", {"min": 2.0}, "naive")
    assert parse_marker("latency", (1.0, 2.0), {}) == \
        Spec("latency", {"p50_ms": 1.0, "p95_ms": 2.0})
    assert parse_marker("memory", (64,), {"of": "small"}) == \
        Spec("memory", {"max_mb": 64.0}, None, "small")


def test_per_device_budget_dict():
    spec = parse_marker("speedup", (), {"min": {"cpu": 1.5, "cuda": 3, "H100": 4.0}, "vs": "n"})
    assert spec.values == {"min": {"cpu": 1.5, "cuda": 3.0, "H100": 4.0}}
    assert type(spec.values["min"]["cuda"]) is float


def test_describe():
    spec = parse_marker("latency", (), {"p95_ms": 5})
    assert spec.describe() == "hwopt.latency(p95_ms=5.0)"


# --- errors --------------------------------------------------------------------------------


def _error(kind, args=(), **kwargs) -> str:
    with pytest.raises(SpecError) as info:
        parse_marker(kind, args, kwargs)
    return str(info.value)


def test_spec_error_is_a_value_error():
    assert issubclass(SpecError, ValueError)


def test_unknown_marker_kind():
    msg = _error("speed", min=2.0)
    assert "'hwopt_speed'" in msg and "speedup" in msg and "roofline" in msg


def test_unknown_keyword():
    msg = _error("speedup", min=2.0, vs="naive", maximum=3.0)
    assert msg.startswith("hwopt_speedup:")
    assert "'maximum'" in msg
    assert "min, vs, of" in msg


def test_keyword_repeating_a_positional():
    msg = _error("speedup", (2.0,), min=3.0, vs="naive")
    assert msg == "hwopt_speedup: argument 'min' given twice"


def test_too_many_positionals():
    msg = _error("speedup", (2.0, "naive", "fused", "ttft", "extra"))
    assert msg.startswith("hwopt_speedup:")
    assert "at most 4 positional" in msg and "got 5" in msg


@pytest.mark.parametrize("kind,kwargs,missing", [
    ("speedup", {"vs": "naive"}, "min"),
    ("speedup", {"min": 2.0}, "vs"),
    ("speedup", {"min": 2.0, "vs": None}, "vs"),
    ("throughput", {}, "min"),
    ("memory", {"of": "x"}, "max_mb"),
    ("cold_start", {}, "max_s"),
    ("energy", {}, "max_mj"),
    ("roofline", {}, "min_fraction"),
])
def test_missing_required_argument(kind, kwargs, missing):
    assert _error(kind, **kwargs) == f"hwopt_{kind}: missing required argument {missing!r}"


def test_latency_needs_at_least_one_percentile():
    msg = _error("latency", of="fast")
    assert msg == "hwopt_latency: give at least one of p50_ms, p95_ms, p99_ms, mean_ms"


@pytest.mark.parametrize("value", [0, 0.0, -1, -0.5])
def test_non_positive_budget(value):
    msg = _error("speedup", min=value, vs="naive")
    assert msg.startswith("hwopt_speedup: 'min'")
    assert "positive and finite" in msg


@pytest.mark.parametrize("value", ["2.0", "fast", True, False, [2.0], {2.0}])
def test_non_numeric_budget(value):
    msg = _error("memory", max_mb=value)
    assert msg.startswith("hwopt_memory: 'max_mb'")
    assert "must be a number or a per-device dict" in msg
    assert repr(value) in msg


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_budget(value):
    msg = _error("latency", p99_ms=value)
    assert msg.startswith("hwopt_latency: 'p99_ms'")
    assert "finite" in msg


def test_empty_per_device_dict():
    assert _error("speedup", min={}, vs="naive") == "hwopt_speedup: 'min' per device is empty"


def test_per_device_dict_bad_entries():
    msg = _error("speedup", min={"cpu": 1.5, "cuda": 0}, vs="naive")
    assert msg.startswith("hwopt_speedup: 'min'['cuda']")
    assert "positive" in msg
    msg = _error("speedup", min={"cpu": "fast"}, vs="naive")
    assert msg.startswith("hwopt_speedup: 'min'['cpu'] must be a number")
    msg = _error("speedup", min={3: 1.5}, vs="naive")
    assert msg.startswith("hwopt_speedup: 'min' per device needs device names as keys")
    msg = _error("speedup", min={"": 1.5}, vs="naive")
    assert "device names as keys" in msg


def test_tolerances_allow_zero_but_not_negative():
    assert parse_marker("accuracy", (), {"atol": 0, "rtol": 0}).values == {"atol": 0.0,
                                                                          "rtol": 0.0}
    msg = _error("accuracy", atol=-1e-3)
    assert msg.startswith("hwopt_accuracy: 'atol'")
    assert "non-negative and finite" in msg
    msg = _error("accuracy", rtol=math.nan)
    assert msg.startswith("hwopt_accuracy: 'rtol'")


@pytest.mark.parametrize("key,value", [("vs", 3), ("vs", ""), ("vs", ["a"]), ("of", 1.0),
                                       ("of", "")])
def test_bad_variant_name(key, value):
    kwargs = {"min": 2.0, "vs": "naive", key: value}
    msg = _error("speedup", **kwargs)
    assert msg.startswith(f"hwopt_speedup: {key!r} must be a variant name")
    assert repr(value) in msg


def test_roofline_fraction_above_one():
    msg = _error("roofline", min_fraction=1.5)
    assert msg.startswith("hwopt_roofline: 'min_fraction'")
    assert "(0, 1]" in msg and "1.5" in msg
    msg = _error("roofline", min_fraction={"cpu": 0.5, "cuda": 1.2})
    assert msg.startswith("hwopt_roofline: 'min_fraction'") and "1.2" in msg


# --- parse_requires -----------------------------------------------------------------------


def test_parse_requires_defaults_and_values():
    assert parse_requires((), {}) == Requirement()
    assert parse_requires((), {"device": "cuda"}) == Requirement(("cuda",), ())
    assert parse_requires(("cpu", ["onnx", "torch"]), {}) == Requirement(("cpu",),
                                                                        ("onnx", "torch"))
    assert parse_requires((), {"device": ("cpu", "cuda"), "backends": "openvino"}) == \
        Requirement(("cpu", "cuda"), ("openvino",))
    assert parse_requires((None,), {"backends": None}) == Requirement()


def test_parse_requires_errors():
    with pytest.raises(SpecError, match=r"hwopt_requires: unknown argument 'devices'"):
        parse_requires((), {"devices": "cuda"})
    with pytest.raises(SpecError, match=r"hwopt_requires: takes at most 2 positional"):
        parse_requires(("cpu", "onnx", "extra"), {})
    for bad in (3, [], ["cuda", ""], [1], ""):
        with pytest.raises(SpecError, match=r"hwopt_requires: 'device' must be a name"):
            parse_requires((), {"device": bad})
    with pytest.raises(SpecError, match=r"hwopt_requires: 'backends' must be a name"):
        parse_requires((), {"backends": 1.0})


def test_parse_requires_rejects_argument_given_twice():
    with pytest.raises(SpecError, match="given twice"):
        parse_requires(("cpu",), {"device": "cuda"})


# --- resolve_budget -----------------------------------------------------------------------

H100_KEYS = ["NVIDIA H100 80GB HBM3", "cuda:0", "cuda"]


def test_resolve_scalar_budget():
    assert resolve_budget(2, ["cpu"]) == (2.0, "")
    assert resolve_budget(2.5, []) == (2.5, "")


def test_resolve_per_device_by_kind():
    budget = {"cpu": 1.5, "cuda": 3.0}
    assert resolve_budget(budget, ["cpu"]) == (1.5, "cpu")
    assert resolve_budget(budget, ["cuda"]) == (3.0, "cuda")
    assert resolve_budget(budget, H100_KEYS) == (3.0, "cuda")


def test_resolve_gpu_name_substring_wins_over_kind():
    assert resolve_budget({"H100": 4.0, "cuda": 3.0}, H100_KEYS) == (4.0, "H100")
    assert resolve_budget({"cuda": 3.0, "h100": 4.0}, H100_KEYS) == (4.0, "h100")
    assert resolve_budget({"A100": 4.0, "cuda": 3.0}, H100_KEYS) == (3.0, "cuda")


def test_resolve_exact_device_index_and_case():
    assert resolve_budget({"cuda:0": 2.0, "cuda": 1.0}, H100_KEYS) == (2.0, "cuda:0")
    assert resolve_budget({"cuda:1": 2.0, "cuda": 1.0}, H100_KEYS) == (1.0, "cuda")
    assert resolve_budget({"CPU": 1.5}, ["cpu"]) == (1.5, "CPU")


def test_resolve_kind_keys_are_not_substrings():
    """'cuda' must not match a GPU name containing it by substring, nor 'cpu' a CPU name."""
    assert resolve_budget({"cuda:1": 2.0}, ["cuda:10", "cuda"]) == (None, "")
    assert resolve_budget({"cpu": 2.0}, ["Intel cpu model", "cuda"]) == (None, "")


def test_resolve_missing_device():
    assert resolve_budget({"cuda": 3.0}, ["cpu"]) == (None, "")
    assert resolve_budget({"H100": 3.0}, ["cpu"]) == (None, "")
    assert resolve_budget({"cuda": 3.0}, []) == (None, "")


# --- CPU feature keys in markers ----------------------------------------------------------

def test_marker_with_feature_keys_parses_and_resolves():
    spec = parse_marker("speedup", (), {"min": {"cpu-avx512_vnni": 1.5, "cpu+avx512_vnni": 3,
                                                "H100": 8}, "vs": "fp32"})
    assert spec.values["min"] == {"cpu-avx512_vnni": 1.5, "cpu+avx512_vnni": 3.0, "H100": 8.0}
    avx2_only = ["AMD EPYC 7R13", "cpu+avx2", "cpu-avx512_vnni", "cpu"]
    assert resolve_budget(spec.values["min"], avx2_only) == (1.5, "cpu-avx512_vnni")


@pytest.mark.parametrize("budget,words", [
    ({"cpu+avx512vnni": 2.0}, ["unknown CPU flag 'avx512vnni'", "recognised flags: avx2"]),
    ({"cpu+": 2.0}, ["'cpu+' is malformed"]),
    ({"avx2": 2.0}, ["is a CPU flag", "'cpu+avx2'"]),
    ({"cpu+avx2": 2.0, "cpu+fma": 3.0}, ["'cpu+avx2' and 'cpu+fma' both match",
                                          "add 'cpu+avx2+fma'"]),
])
def test_bad_feature_key_names_marker_argument_and_key(budget, words):
    with pytest.raises(SpecError) as info:
        parse_marker("latency", (), {"p95_ms": budget})
    message = str(info.value)
    assert message.startswith("hwopt_latency: 'p95_ms' per device: device key")
    for word in words:
        assert word in message


def test_goodput_objectives_are_settings_not_budgets():
    spec = parse_marker("goodput", (), {"min": 2, "ttft_ms": 500, "tpot_ms": 50, "of": "srv"})
    assert spec.values == {"min": 2.0}
    assert spec.options == {"ttft_ms": "500.0", "tpot_ms": "50.0"}
    with pytest.raises(SpecError, match="'ttft_ms' must be positive"):
        parse_marker("goodput", (), {"min": 2, "ttft_ms": 0})
    with pytest.raises(SpecError, match="give at least one of ttft_ms, tpot_ms, e2e_ms"):
        parse_marker("goodput", (), {"min": 2})
