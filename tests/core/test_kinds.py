"""Unit tests for pytest_hwopt.core.kinds: the registry and everything derived from it."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from pytest_hwopt.core import kinds
from pytest_hwopt.core.checks import Check, Status
from pytest_hwopt.core.measurement import Measurement
from pytest_hwopt.core.specs import BUDGET_KINDS, SIGNATURES, SpecError, parse_marker
from pytest_hwopt.core.verdicts import SAMPLED_KINDS, evaluate
from pytest_hwopt.markers import MARKERS, hwopt
from pytest_hwopt.results.terminal import summary_rows

# the marker lines as they were written by hand before the registry existed
MARKER_TEXTS = {
    "hwopt_speedup": "hwopt_speedup(min, vs, of=None, metric=None): candidate at least `min` "
                     "times faster than variant `vs` (ratio of medians, 95% CI).",
    "hwopt_latency": "hwopt_latency(p50_ms=None, p95_ms=None, p99_ms=None, mean_ms=None, "
                     "of=None): per-call latency budget in ms.",
    "hwopt_throughput": "hwopt_throughput(min, of=None): items per second at least `min` "
                        "(output tokens per second for generation and serve variants, "
                        "queries per second for LoadGen).",
    "hwopt_memory": "hwopt_memory(max_mb, of=None): peak memory added while the candidate "
                    "runs, at most `max_mb`.",
    "hwopt_accuracy": "hwopt_accuracy(atol=None, rtol=None, vs=None, of=None, rel_l2=None): "
                      "candidate outputs match `vs` outputs (element-wise, or relative L2 "
                      "error at most rel_l2).",
    "hwopt_requires": "hwopt_requires(device=None, backends=None): skip unless the device "
                      "and backends are available.",
    "hwopt_cold_start": "hwopt_cold_start(max_s, of=None): preparation plus first call at "
                        "most `max_s` seconds.",
    "hwopt_energy": "hwopt_energy(max_mj, of=None): energy per call at most `max_mj` (NVML).",
    "hwopt_roofline": "hwopt_roofline(min_fraction, of=None): achieved fraction of the "
                      "device's roofline.",
    "hwopt_ttft": "hwopt_ttft(p50_ms=None, p95_ms=None, p99_ms=None, of=None): time to first "
                  "token (the prefill) of a generation variant (hwopt_bench.generate), budget "
                  "in ms.",
    "hwopt_tpot": "hwopt_tpot(p50_ms=None, p95_ms=None, p99_ms=None, of=None): time per "
                  "output token after the first (the decode): (end-to-end - TTFT) / (tokens "
                  "- 1) of a generation variant (hwopt_bench.generate), budget in ms.",
    "hwopt_goodput": "hwopt_goodput(min, ttft_ms=None, tpot_ms=None, e2e_ms=None, of=None): "
                     "completed requests per second that met every SLO given (ttft_ms, "
                     "tpot_ms, e2e_ms) at least `min`, for serve variants.",
    "hwopt_failures": "hwopt_failures(max, of=None): at most `max` failed requests of a "
                      "serve variant (below 1: a fraction of those sent); without it any "
                      "failure fails, as does an INVALID LoadGen run.",
}

# the factories' signatures as they were written by hand
FACTORY_SIGNATURES = {
    "speedup": "(min: 'Budget | None' = None, vs: 'str | None' = None, of: 'str | None' = None, "
               "metric: 'str | None' = None, **unknown: 'Any') -> 'pytest.MarkDecorator'",
    "ttft": "(p50_ms: 'Budget | None' = None, p95_ms: 'Budget | None' = None, "
            "p99_ms: 'Budget | None' = None, of: 'str | None' = None, "
            "**unknown: 'Any') -> 'pytest.MarkDecorator'",
    "latency": "(p50_ms: 'Budget | None' = None, p95_ms: 'Budget | None' = None, "
               "p99_ms: 'Budget | None' = None, mean_ms: 'Budget | None' = None, "
               "of: 'str | None' = None, **unknown: 'Any') -> 'pytest.MarkDecorator'",
    "accuracy": "(atol: 'Budget | None' = None, rtol: 'Budget | None' = None, "
                "vs: 'str | None' = None, of: 'str | None' = None, "
                "rel_l2: 'Budget | None' = None, **unknown: 'Any') -> 'pytest.MarkDecorator'",
    "roofline": "(min_fraction: 'Budget | None' = None, of: 'str | None' = None, "
                "**unknown: 'Any') -> 'pytest.MarkDecorator'",
    "goodput": "(min: 'Budget | None' = None, ttft_ms: 'Budget | None' = None, "
               "tpot_ms: 'Budget | None' = None, e2e_ms: 'Budget | None' = None, "
               "of: 'str | None' = None, **unknown: 'Any') -> 'pytest.MarkDecorator'",
    "failures": "(max: 'Budget | None' = None, of: 'str | None' = None, "
                "**unknown: 'Any') -> 'pytest.MarkDecorator'",
}


def test_marker_texts_are_unchanged():
    assert dict(MARKERS) == MARKER_TEXTS


@pytest.mark.parametrize("name", sorted(FACTORY_SIGNATURES))
def test_factory_signatures_are_unchanged(name):
    assert str(inspect.signature(getattr(hwopt, name))) == FACTORY_SIGNATURES[name]


def test_factories_pass_every_parameter_by_keyword():
    mark = hwopt.speedup(2.0, "naive").mark
    assert (mark.name, mark.args, mark.kwargs) == \
        ("hwopt_speedup", (), {"min": 2.0, "vs": "naive", "of": None, "metric": None})
    mark = hwopt.latency(p95_ms=5, bogus=1).mark
    assert mark.kwargs == {"p50_ms": None, "p95_ms": 5, "p99_ms": None, "mean_ms": None,
                           "of": None, "bogus": 1}
    with pytest.raises(TypeError):
        hwopt.memory(1, "a", "b")
    with pytest.raises(AttributeError, match="no marker 'nope'"):
        hwopt.nope  # noqa: B018


def test_registry_is_consistent():
    names = [k.name for k in kinds.all_kinds()]
    assert names == list(BUDGET_KINDS) == list(SIGNATURES)
    assert names == ["speedup", "latency", "throughput", "memory", "accuracy", "cold_start",
                     "energy", "roofline", "ttft", "tpot", "goodput", "failures"]
    assert tuple(SAMPLED_KINDS) == ("speedup", "latency", "throughput", "ttft", "tpot")
    for kind in kinds.all_kinds():
        sig = kind.signature
        assert SIGNATURES[kind.name] is sig
        assert set(sig.required + sig.one_of + sig.numbers + sig.non_negative) <= set(sig.params)
        assert set(sig.params) <= set(sig.numbers + sig.non_negative + sig.names
                                      + tuple(key for key, _ in sig.choices) + sig.settings)
        assert MARKERS[kind.marker] == kind.marker_text
        assert kind.comparison in (">=", "<=")
        assert kind.sampled == kind.gated_by_accuracy  # speed figures, today
        assert callable(kind.evaluate) and callable(getattr(hwopt, kind.name))
        assert kind.value_format and kind.missing


def test_register_rejects_bad_entries():
    sig = kinds.Signature(("max_x", "of"), required=("max_y",))
    entry = kinds.BudgetKind(name="broken", signature=sig, description="d",
                             evaluate=lambda ev: [])
    with pytest.raises(kinds.KindError, match="max_y"):
        kinds.register(entry)
    with pytest.raises(kinds.KindError, match="already registered"):
        kinds.register(kinds.get("speedup"))
    with pytest.raises(kinds.KindError, match="not 'requires'"):
        kinds.register(kinds.BudgetKind(name="requires", signature=kinds.Signature(("of",)),
                                        description="d", evaluate=lambda ev: []))
    assert kinds.find("broken") is None


@pytest.fixture
def tokens_kind():
    """A throwaway kind: tokens per second of a candidate, higher is better."""
    entry = kinds.register(kinds.BudgetKind(
        name="tokens",
        signature=kinds.Signature(("min_per_s", "of"), required=("min_per_s",),
                                  numbers=("min_per_s",)),
        description="tokens per second at least `min_per_s`.",
        evaluate=kinds.per_value(lambda ev, param: kinds.Figure(value=ev.candidate.items * 10.0)),
        unit="tok/s", higher_is_better=True, subject="tokens of {name}"))
    yield entry
    kinds.unregister("tokens")


def test_a_new_kind_is_one_registry_entry(tokens_kind, pytestconfig):
    # the marker factory and its ini line (the plugin registers MARKERS at configure time,
    # before this kind existed: register its line here as the plugin would)
    pytestconfig.addinivalue_line("markers", MARKERS["hwopt_tokens"])
    assert str(inspect.signature(hwopt.tokens)) == (
        "(min_per_s: 'Budget | None' = None, of: 'str | None' = None, **unknown: 'Any') "
        "-> 'pytest.MarkDecorator'")
    assert hwopt.tokens(50).mark.kwargs == {"min_per_s": 50, "of": None}
    assert MARKERS["hwopt_tokens"] == ("hwopt_tokens(min_per_s, of=None): tokens per second "
                                       "at least `min_per_s`.")
    # the signature, validation included
    assert "tokens" in BUDGET_KINDS and "tokens" not in SAMPLED_KINDS
    assert SIGNATURES["tokens"] is tokens_kind.signature
    with pytest.raises(SpecError, match="hwopt_tokens: missing required argument 'min_per_s'"):
        parse_marker("tokens", (), {})
    # the verdict and its message
    spec = parse_marker("tokens", (), {"min_per_s": {"cpu": 40, "cuda": 400}})
    cand = Measurement("gen", [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], items=5)
    (check,) = evaluate(spec, cand, None, ["cpu"])
    assert (check.status, check.measured, check.unit, check.budget_key) == \
        (Status.PASSED, 50.0, "tok/s", "cpu")
    assert check.message == "tokens of gen: 50 tok/s >= 40.0 tok/s"
    # the report's wording
    assert summary_rows([{"test": "t", "checks": [check.to_dict()]}]) == [
        ["t", "tokens", "gen", "50 tok/s", "", ">= 40 tok/s", "passed", ""]]
    kinds.unregister("tokens")
    assert "tokens" not in BUDGET_KINDS and "hwopt_tokens" not in MARKERS
    kinds.register(tokens_kind)


def test_check_is_keyword_only_and_to_dict_keeps_its_shape():
    with pytest.raises(TypeError):
        Check("speedup", "fused", "passed", "m")  # type: ignore[misc]
    check = Check(kind="regression", variant="v", status="failed", message="m", budget=1.1,
                  measured=1.3, unit="x", metric="median_ratio", point_passed=False,
                  detail={"baseline": "b.json", "p": 0.001})
    assert check.status is Status.FAILED
    d = check.to_dict()
    assert list(d) == ["kind", "variant", "vs", "budget", "measured", "low", "high", "unit",
                       "status", "message", "reason", "metric", "test", "budget_key", "detail",
                       "passed"]
    assert type(d["status"]) is str and d["status"] == "failed"
    assert list(d["detail"].items()) == [("baseline", "b.json"), ("p", 0.001),
                                         ("point_passed", False)]
    assert check.detail == {"baseline": "b.json", "p": 0.001}  # to_dict copies
    assert [s.value for s in Status] == ["passed", "failed", "inconclusive", "skipped",
                                         "reported"]
    assert f"{Status.INCONCLUSIVE}" == str(Status.INCONCLUSIVE) == "inconclusive"


def test_core_imports_neither_pytest_nor_torch():
    code = ("import sys, pkgutil, importlib, pytest_hwopt.core as core\n"
            "for m in pkgutil.iter_modules(core.__path__):\n"
            "    importlib.import_module('pytest_hwopt.core.' + m.name)\n"
            "print(sorted(n for n in ('pytest', '_pytest', 'torch') if n in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_type_checkers_see_each_built_in_factory_as_the_registry_makes_it():
    """markers.py declares the built-in factories for type checkers (under TYPE_CHECKING);
    each declaration has the registry's parameters, in its order, with the same annotations."""
    import ast
    import inspect
    from pathlib import Path

    from pytest_hwopt import markers
    from pytest_hwopt.core import kinds as registry

    tree = ast.parse(Path(markers.__file__).read_text())
    hwopt_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "_Hwopt")
    guarded = next(n for n in hwopt_class.body if isinstance(n, ast.If))
    declared = {f.name: f for f in guarded.body if isinstance(f, ast.FunctionDef)}
    built_in = registry.BUILTIN + registry.GENERATION + registry.SERVING
    assert set(declared) == {k.name for k in built_in}
    for kind in built_in:
        fn = declared[kind.name]
        names = [a.arg for a in fn.args.args[1:]]
        runtime = inspect.signature(getattr(markers.hwopt, kind.name))
        assert names == [p for p in runtime.parameters if p != "unknown"], kind.name
        for arg in fn.args.args[1:]:
            assert ast.unparse(arg.annotation) == runtime.parameters[arg.arg].annotation
        assert fn.args.kwarg is None  # a misspelt keyword is a type error for checkers
