"""Serve and LoadGen variants as measurements and checks: exact arithmetic on hand-made
load runs (:mod:`pytest_hwopt.core.served`), and how the budget kinds judge them."""

from __future__ import annotations

import math

import pytest

from pytest_hwopt.core.checks import FAILED, INCONCLUSIVE, PASSED, SKIPPED
from pytest_hwopt.core.measurement import Measurement
from pytest_hwopt.core.served import (
    LoadGenLoad,
    LoadGenMeasurement,
    RoundFigures,
    ServeLoad,
    ServeMeasurement,
)
from pytest_hwopt.core.serving import Slo
from pytest_hwopt.core.specs import parse_marker
from pytest_hwopt.core.verdicts import RoleError, evaluate_all


def a_round(ttft=(10.0, 20.0, 30.0), tokens=(5, 5, 5), e2e=(50.0, 60.0, 70.0),
            duration_s=1.0, failed=0, first_error=None) -> RoundFigures:
    tpot = tuple((e - t) / (n - 1) for t, e, n in zip(ttft, e2e, tokens))
    return RoundFigures(ttft_ms=tuple(ttft), tpot_ms=tpot,
                        itl_ms=tuple((x,) * (n - 1) for x, n in zip(tpot, tokens)),
                        e2e_ms=tuple(e2e), tokens=tuple(tokens),
                        send_lag_ms=(0.1,) * (len(e2e) + failed), failed=failed,
                        first_error=first_error, duration_s=duration_s)


def serve(name: str, *rounds: RoundFigures) -> ServeMeasurement:
    return ServeMeasurement.from_rounds(name, rounds or (a_round(),), {"url": "http://x"})


def checks_of(markers, measurements):
    specs = [parse_marker(kind, (), kwargs) for kind, kwargs in markers]
    return evaluate_all(specs, measurements, ["cpu"])


class TestServeMeasurement:
    def test_figures_pool_requests_over_rounds(self):
        m = serve("s", a_round(duration_s=1.0), a_round(ttft=(40.0, 50.0, 60.0),
                                                         e2e=(80.0, 90.0, 100.0),
                                                         duration_s=2.0))
        assert m.ttft_samples_ms == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
        assert m.samples_ms == [50.0, 60.0, 70.0, 80.0, 90.0, 100.0]
        assert m.rounds_ms == [60.0, 90.0]  # each round's median end-to-end time
        assert m.completed == 6 and m.failed == 0
        assert m.request_throughput == pytest.approx(6 / 3.0)
        assert m.output_throughput == pytest.approx(30 / 3.0)
        # per round: milliseconds per output token, the inverse of its throughput
        assert m.throughput_rounds_ms == pytest.approx([1000.0 / 15, 2000.0 / 15])
        assert m.tpot_samples_ms[0] == pytest.approx((50.0 - 10.0) / 4)

    def test_a_request_without_content_has_no_ttft(self):
        r = a_round()
        m = serve("s", RoundFigures(ttft_ms=(None, 20.0, 30.0), tpot_ms=r.tpot_ms,
                                    itl_ms=r.itl_ms, e2e_ms=r.e2e_ms, tokens=r.tokens,
                                    send_lag_ms=r.send_lag_ms, failed=0, first_error=None,
                                    duration_s=1.0))
        assert m.ttft_samples_ms == [20.0, 30.0] and m.ttft_rounds_ms == [25.0]
        assert m.completed == 3

    def test_results_carry_the_contract_keys(self):
        d = serve("s").to_dict()
        for key in ("ttft_p50_ms", "ttft_p95_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p95_ms",
                    "tpot_p99_ms", "itl_p50_ms", "itl_p95_ms", "itl_p99_ms", "e2e_p50_ms",
                    "e2e_p95_ms", "e2e_p99_ms", "request_throughput", "output_throughput",
                    "completed", "failed", "send_lag_p99_ms"):
            assert key in d, key
        assert d["e2e_p50_ms"] == 60.0
        assert "goodput" not in d  # only where a goodput budget gives objectives

    def test_goodput_counts_requests_meeting_every_objective(self):
        m = serve("s")
        assert m.goodput(Slo(ttft_ms=20.0)) == pytest.approx(2.0)
        assert m.goodput(Slo(ttft_ms=20.0, e2e_ms=55.0)) == pytest.approx(1.0)
        m.slo = Slo(ttft_ms=25.0)
        assert m.to_dict()["goodput"] == pytest.approx(2.0)

    def test_all_requests_failed_still_writes_results(self):
        m = serve("s", a_round(ttft=(), tokens=(), e2e=(), failed=3, first_error="HTTP 500"))
        d = m.to_dict()
        assert d["completed"] == 0 and d["failed"] == 3 and d["ttft_p95_ms"] is None


class TestServeChecks:
    def test_a_failed_request_fails_the_variant_with_its_error(self):
        m = serve("s", a_round(failed=1, first_error="HTTP 500: model not found"))
        (check,) = checks_of([], {"s": m})
        assert check.kind == "failures" and check.status is FAILED
        assert "1 of 4 requests failed" in check.message
        assert "HTTP 500: model not found" in check.message

    def test_failures_marker_allows_some(self):
        m = serve("s", a_round(failed=1, first_error="timeout"))
        (check,) = checks_of([("failures", {"max": 1})], {"s": m})
        assert check.status is PASSED
        (check,) = checks_of([("failures", {"max": 0.1})], {"s": m})  # a fraction: 10%
        assert check.status is FAILED

    def test_throughput_is_output_tokens_per_second(self):
        checks = checks_of([("throughput", {"min": 10})], {"s": serve("s")})
        got = [c for c in checks if c.kind == "throughput"][0]
        assert got.status is PASSED and got.measured == pytest.approx(15.0)

    def test_goodput_budget(self):
        checks = checks_of([("goodput", {"min": 2.5, "ttft_ms": 20})], {"s": serve("s")})
        got = [c for c in checks if c.kind == "goodput"][0]
        assert got.status is FAILED and got.measured == pytest.approx(2.0)

    def test_goodput_of_a_plain_variant_is_not_measured(self):
        plain = Measurement("p", [1.0] * 5, [1.0] * 5)
        checks = checks_of([("goodput", {"min": 1, "ttft_ms": 20})], {"p": plain})
        assert checks[0].status is SKIPPED and "serve variants" in checks[0].message

    def test_ttft_percentile_needs_enough_requests(self):
        checks = checks_of([("ttft", {"p95_ms": 100})], {"s": serve("s")})
        got = [c for c in checks if c.kind == "ttft"][0]
        # 3 requests give no upper bound on p95: more load runs, then inconclusive
        assert got.status is INCONCLUSIVE and "samples" in got.reason

    def test_throughput_speedup_needs_three_rounds_of_each(self):
        fast = [a_round(duration_s=0.5)] * 3
        slow = [a_round(duration_s=1.0)] * 3
        ms = {"batched": serve("batched", *fast), "single": serve("single", *slow)}
        spec = [("speedup", {"min": 1.5, "vs": "single", "metric": "throughput"})]
        got = [c for c in checks_of(spec, ms) if c.kind == "speedup"][0]
        assert got.status is PASSED and got.measured == pytest.approx(2.0)
        assert got.metric == "throughput"
        one = {"batched": serve("batched", fast[0]), "single": serve("single", slow[0])}
        got = [c for c in checks_of(spec, one) if c.kind == "speedup"][0]
        assert got.status is INCONCLUSIVE and "3 load runs" in got.message

    def test_throughput_speedup_of_plain_variants_is_an_error(self):
        ms = {"a": Measurement("a", [1.0] * 5, [1.0] * 5),
              "b": Measurement("b", [2.0] * 5, [2.0] * 5)}
        spec = [("speedup", {"min": 1.5, "vs": "b", "metric": "throughput"})]
        with pytest.raises(RoleError, match="not a serve variant"):
            checks_of(spec, ms)


def loadgen(result="VALID", reason="", error="") -> LoadGenMeasurement:
    return LoadGenMeasurement(name="lg", samples_ms=[1.0, 2.0, 3.0], rounds_ms=[2.0],
                              loadgen_result=result, invalid_reason=reason, error=error,
                              scenario="Server", qps=95.0,
                              percentiles_ms={"median_ms": 2.0, "p95_ms": 4.0, "p99_ms": 6.0},
                              loadgen={"queries": 1200, "min_queries_for": {"p99": 662}})


class TestLoadGenChecks:
    def test_latency_reads_loadgens_percentile(self):
        checks = checks_of([("latency", {"p99_ms": 5})], {"lg": loadgen()})
        got = {c.kind: c for c in checks}
        assert got["latency"].status is FAILED and got["latency"].measured == 6.0
        assert got["failures"].status is PASSED
        assert "early stopping needs 662 for p99" in got["failures"].message

    def test_throughput_is_qps(self):
        checks = checks_of([("throughput", {"min": 90})], {"lg": loadgen()})
        assert {c.kind: c for c in checks}["throughput"].status is PASSED

    def test_an_invalid_run_fails_every_check_with_loadgens_reason(self):
        m = loadgen("INVALID", "Min duration satisfied : NO")
        checks = checks_of([("latency", {"p99_ms": 50})], {"lg": m})
        assert all(c.status is FAILED for c in checks)
        assert all("Min duration satisfied : NO" in c.message for c in checks)

    def test_ttft_of_a_loadgen_variant_is_an_error(self):
        with pytest.raises(RoleError):
            checks_of([("ttft", {"p95_ms": 5})], {"lg": loadgen()})


class TestLoads:
    def test_serve_arguments_are_validated(self):
        ok = ServeLoad.make("s", "http://127.0.0.1:1", ["hi"], 4)
        assert ok.url == "http://127.0.0.1:1/v1/completions" and math.isinf(ok.rate)
        for kwargs, match in (({"rate": 0}, "rate"), ({"burstiness": -1}, "burstiness"),
                              ({"endpoint": "embeddings"}, "endpoint"),
                              ({"max_concurrency": 0}, "max_concurrency"),
                              ({"timeout_s": math.inf}, "timeout_s")):
            with pytest.raises(ValueError, match=match):
                ServeLoad.make("s", "http://127.0.0.1:1", ["hi"], 4, **kwargs)
        with pytest.raises(ValueError, match="base_url"):
            ServeLoad.make("s", "127.0.0.1:8000", ["hi"], 4)
        with pytest.raises(TypeError, match="prompts"):
            ServeLoad.make("s", "http://x", "hi", 4)
        with pytest.raises(ValueError, match="num_requests"):
            ServeLoad.make("s", "http://x", ["hi"], 0)

    def test_loadgen_arguments_are_validated(self):
        with pytest.raises(ValueError, match="SingleStream, Server, Offline"):
            LoadGenLoad.make("l", print, scenario="Stream", samples=[1])
        with pytest.raises(ValueError, match="target_qps"):
            LoadGenLoad.make("l", print, scenario="Server", samples=[1])
        with pytest.raises(TypeError, match="callable"):
            LoadGenLoad.make("l", 3, scenario="Offline", samples=[1])
        with pytest.raises(TypeError, match="samples"):
            LoadGenLoad.make("l", print, scenario="Offline", samples=[])
