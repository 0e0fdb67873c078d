"""The load run's figures from hand-made records, and the send schedule's statistics."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from pytest_hwopt.core.serving import (
    RequestRecord,
    Slo,
    client_behind,
    first_error,
    mean_scheduled_gap_s,
    output_token_count,
    send_schedule,
    summarize,
)

KEYS = {f"{m}_p{q}_ms" for m in ("ttft", "tpot", "itl", "e2e") for q in (50, 95, 99)} | {
    "request_throughput", "output_throughput", "completed", "failed", "send_lag_p99_ms",
    "duration_s", "client_behind"}


def _rec(index: int, scheduled: float, chunks: tuple[float, ...], end: float, tokens: int, *,
         released: float | None = None, sent: float | None = None,
         error: str | None = None, usage: int | None = None) -> RequestRecord:
    return RequestRecord(index=index, prompt_index=index % 2, scheduled_s=scheduled,
                         sent_s=sent if sent is not None else released, chunk_s=chunks,
                         end_s=end, output_tokens=tokens, error=error, usage_tokens=usage,
                         released_s=released)


# TTFT 100 ms, ITL 20 and 30 ms, e2e 160 ms, TPOT (160 - 100) / 2 = 30 ms, lag 0.2 ms
R0 = _rec(0, 10.0, (10.1, 10.12, 10.15), 10.16, 3, released=10.0002, usage=3)
# one token: TTFT 200 ms, no TPOT, no ITL, e2e 210 ms, lag 1 ms
R1 = _rec(1, 10.05, (10.25,), 10.26, 1, released=10.051)
# failed: out of the latencies, in the send lag (0 ms)
R2 = _rec(2, 10.1, (), 10.3, 0, released=10.1, error="HTTP 500: boom")
# 7 tokens (usage) in 4 chunks: TTFT 300 ms, ITL 50, 150, 100 ms, e2e 700 ms,
# TPOT (700 - 300) / 6 ms, lag 0.4 ms
R3 = _rec(3, 10.2, (10.5, 10.55, 10.7, 10.8), 10.9, 7, released=10.2004, usage=7)
RECORDS = (R0, R1, R2, R3)


def test_per_request_figures() -> None:
    assert R0.ttft_s == pytest.approx(0.1)
    assert R0.itl_s == pytest.approx((0.02, 0.03))
    assert R0.e2e_s == pytest.approx(0.16)
    assert R0.tpot_s == pytest.approx(0.03)
    assert R0.send_lag_s == pytest.approx(0.0002)
    assert R1.tpot_s is None and R1.itl_s == ()
    assert R3.tpot_s == pytest.approx(0.4 / 6)
    assert not R2.ok and R2.ttft_s is None


def test_send_lag_falls_back_to_the_send_time() -> None:
    rec = _rec(0, 1.0, (1.1,), 1.2, 1, sent=1.003)
    assert rec.released_s is None and rec.send_lag_s == pytest.approx(0.003)
    never = RequestRecord(index=0, prompt_index=0, scheduled_s=1.0, sent_s=None, chunk_s=(),
                          end_s=1.5, output_tokens=0, error="connection failed: boom")
    assert never.send_lag_s is None


def test_summary_exact_arithmetic() -> None:
    s = summarize(RECORDS, 10.0, 10.9)
    assert set(s) == KEYS
    assert s["duration_s"] == pytest.approx(0.9)
    assert s["completed"] == 3 and s["failed"] == 1
    assert s["request_throughput"] == pytest.approx(3 / 0.9)
    assert s["output_throughput"] == pytest.approx((3 + 1 + 7) / 0.9)
    # linear percentiles: TTFT [100, 200, 300] ms
    assert s["ttft_p50_ms"] == pytest.approx(200.0)
    assert s["ttft_p95_ms"] == pytest.approx(290.0)
    assert s["ttft_p99_ms"] == pytest.approx(298.0)
    # TPOT [30, 66.67] ms (the single-token request has none)
    assert s["tpot_p50_ms"] == pytest.approx((30.0 + 400.0 / 6) / 2)
    assert s["tpot_p99_ms"] == pytest.approx(30.0 + 0.99 * (400.0 / 6 - 30.0))
    # ITL pooled [20, 30, 50, 100, 150] ms
    assert s["itl_p50_ms"] == pytest.approx(50.0)
    assert s["itl_p95_ms"] == pytest.approx(140.0)
    assert s["itl_p99_ms"] == pytest.approx(148.0)
    # e2e [160, 210, 700] ms
    assert s["e2e_p50_ms"] == pytest.approx(210.0)
    assert s["e2e_p95_ms"] == pytest.approx(651.0)
    assert s["e2e_p99_ms"] == pytest.approx(690.2)
    # send lag over all four requests [0, 0.2, 0.4, 1.0] ms
    assert s["send_lag_p99_ms"] == pytest.approx(0.4 + 0.97 * 0.6)
    # p99 0.98 ms against max(1 ms, 5% of the 66.7 ms mean gap)
    assert s["client_behind"] is False
    assert "goodput" not in s


def test_goodput_counts_requests_meeting_every_slo() -> None:
    assert summarize(RECORDS, 10.0, 10.9, slo=Slo(ttft_ms=250))["goodput"] == \
        pytest.approx(2 / 0.9)
    # the single-token request has TPOT 0 for the SLO, as in vLLM
    assert summarize(RECORDS, 10.0, 10.9, slo=Slo(tpot_ms=50))["goodput"] == \
        pytest.approx(2 / 0.9)
    assert summarize(RECORDS, 10.0, 10.9, slo=Slo(ttft_ms=250, e2e_ms=200))["goodput"] == \
        pytest.approx(1 / 0.9)
    # failed requests never count
    assert summarize(RECORDS, 10.0, 10.9, slo=Slo(e2e_ms=1e6))["goodput"] == \
        pytest.approx(3 / 0.9)


def test_slo_is_inclusive() -> None:
    rec = _rec(0, 0.0, (0.25,), 0.5, 1, released=0.0)
    assert Slo(e2e_ms=500.0, ttft_ms=250.0).met_by(rec)
    assert not Slo(e2e_ms=499.0).met_by(rec)


@pytest.mark.parametrize("kwargs", [{}, {"ttft_ms": 0.0}, {"tpot_ms": -1.0},
                                    {"e2e_ms": math.nan}, {"ttft_ms": math.inf}])
def test_slo_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="SLO"):
        Slo(**kwargs)


def test_all_failed_gives_nan_latencies_and_zero_throughput() -> None:
    s = summarize([R2], 10.1, 10.3)
    assert s["completed"] == 0 and s["failed"] == 1
    assert s["request_throughput"] == 0.0 and s["output_throughput"] == 0.0
    assert all(math.isnan(float(s[k])) for k in KEYS if k.endswith("_ms") and
               not k.startswith("send_lag"))
    assert s["send_lag_p99_ms"] == 0.0


def test_summary_errors() -> None:
    with pytest.raises(ValueError, match="no request"):
        summarize([], 0.0, 1.0)
    with pytest.raises(ValueError, match="end after it starts"):
        summarize(RECORDS, 10.0, 10.0)


def test_client_behind_rule() -> None:
    # the floor: 1 ms, whatever the gaps
    assert not client_behind(0.001, 0.0)
    assert client_behind(0.0011, 0.005)
    # 5% of the mean gap above the floor
    assert not client_behind(0.004, 0.1)
    assert client_behind(0.0051, 0.1)
    assert not client_behind(math.nan, 0.1)
    behind = [_rec(i, i * 0.01, (i * 0.01 + 0.05,), i * 0.01 + 0.06, 1,
                   released=i * 0.01 + 0.002) for i in range(10)]
    assert mean_scheduled_gap_s(behind) == pytest.approx(0.01)
    assert summarize(behind, 0.0, 0.15)["client_behind"] is True


def test_first_error_is_the_lowest_index() -> None:
    late = _rec(7, 9.0, (), 9.5, 0, released=9.0, error="timed out after 1 s")
    assert first_error([R0, R3, late, R2]) == "request 2: HTTP 500: boom"
    assert first_error([R0, R1]) is None


def test_output_token_count() -> None:
    assert output_token_count(12, 5) == 12
    assert output_token_count(None, 5) == 5


# -- the send schedule ---------------------------------------------------------------------


def _gaps(offsets: list[float]) -> np.ndarray:
    return np.diff(np.asarray(offsets))


def test_schedule_starts_at_zero_and_is_cumulative() -> None:
    s = send_schedule(100, rate=10.0, burstiness=1.0, seed=3)
    assert len(s) == 100 and s[0] == 0.0
    assert all(b >= a for a, b in zip(s, s[1:]))


@pytest.mark.parametrize(("burstiness", "cv"), [(1.0, 1.0), (0.5, math.sqrt(2)), (4.0, 0.5)])
def test_schedule_mean_gap_and_variation(burstiness: float, cv: float) -> None:
    gaps = _gaps(send_schedule(20_001, rate=200.0, burstiness=burstiness, seed=1))
    assert gaps.mean() == pytest.approx(1 / 200.0, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.05)


def test_infinite_rate_sends_all_at_once() -> None:
    assert send_schedule(5, rate=math.inf, burstiness=1.0, seed=0) == [0.0] * 5


def test_schedule_is_reproducible() -> None:
    a = send_schedule(50, 20.0, 0.7, seed=42)
    assert a == send_schedule(50, 20.0, 0.7, seed=42)
    assert a != send_schedule(50, 20.0, 0.7, seed=43)


@pytest.mark.parametrize(("args", "match"), [
    ((0, 1.0, 1.0), "num_requests"),
    ((5, 0.0, 1.0), "rate"),
    ((5, -2.0, 1.0), "rate"),
    ((5, math.nan, 1.0), "rate"),
    ((5, -math.inf, 1.0), "rate"),
    ((5, 1.0, 0.0), "burstiness"),
    ((5, 1.0, math.inf), "burstiness"),
    ((5, 1.0, math.nan), "burstiness"),
])
def test_schedule_errors(args: tuple[int, float, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        send_schedule(*args, seed=0)


def test_the_pure_module_imports_no_http_client() -> None:
    code = ("import sys, pytest_hwopt.core.serving; "
            "print(sorted(m for m in ('aiohttp', 'pytest', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"
