"""Unit tests for pytest_hwopt.core.generation: TTFT, TPOT and ITL from clock readings, the
log that aligns calls with timed samples, and the exact comparison of token ids.

Clock readings are exact binary fractions (a fake clock), so every figure is exact.
"""

from __future__ import annotations

import pytest

from pytest_hwopt.core.generation import (
    CallMetrics,
    GenerationLog,
    GenerationMeasurement,
    call_metrics,
    first_difference,
    merge,
    token_check,
)
from pytest_hwopt.core.measurement import Measurement


class FakeClock:
    """Readings advance by the steps given: start, then each token, then the end."""

    def __init__(self, start: float = 10.0) -> None:
        self.now = start

    def after(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def readings(ttft_s: float, gaps_s: list[float], tail_s: float = 0.0
             ) -> tuple[float, list[float], float]:
    clock = FakeClock()
    start = clock.now
    tokens = [clock.after(ttft_s)] + [clock.after(g) for g in gaps_s]
    return start, tokens, clock.after(tail_s)


# --- one call ---------------------------------------------------------------------------


def test_ttft_is_first_token_minus_start():
    start, tokens, end = readings(0.125, [0.03125, 0.03125, 0.03125])
    assert call_metrics(start, tokens, end).ttft_ms == 125.0


def test_itl_are_the_gaps_between_tokens():
    start, tokens, end = readings(0.125, [0.03125, 0.0625, 0.015625])
    assert call_metrics(start, tokens, end).itl_ms == (31.25, 62.5, 15.625)


def test_tpot_is_end_to_end_minus_ttft_over_tokens_after_the_first():
    # 4 tokens: ttft 125 ms, then 3 decode steps; the call returns 0.5 ms after the last
    start, tokens, end = readings(0.125, [0.03125, 0.0625, 0.015625], tail_s=0.0009765625)
    m = call_metrics(start, tokens, end)
    assert m.e2e_ms == 125.0 + 31.25 + 62.5 + 15.625 + 0.9765625
    assert m.tpot_ms == (m.e2e_ms - 125.0) / 3
    assert m.tokens == 4


def test_tpot_of_a_single_token_is_undefined():
    start, tokens, end = readings(0.25, [])
    m = call_metrics(start, tokens, end)
    assert m.tpot_ms is None
    assert m.itl_ms == ()
    assert m.ttft_ms == 250.0


def test_no_token_reading_is_an_error():
    with pytest.raises(ValueError, match="no token reading"):
        call_metrics(1.0, [], 2.0)


def test_readings_out_of_order_are_an_error():
    with pytest.raises(ValueError, match="out of order: reading 2"):
        call_metrics(1.0, [1.5, 1.25], 2.0)
    with pytest.raises(ValueError, match="out of order: reading 1"):
        call_metrics(1.0, [0.5], 2.0)


def test_merge_averages_calls_timed_as_one_sample():
    a = CallMetrics(ttft_ms=10.0, tpot_ms=2.0, itl_ms=(2.0,), e2e_ms=12.0, tokens=2)
    b = CallMetrics(ttft_ms=20.0, tpot_ms=4.0, itl_ms=(4.0,), e2e_ms=24.0, tokens=2)
    merged = merge([a, b])
    assert (merged.ttft_ms, merged.tpot_ms, merged.e2e_ms) == (15.0, 3.0, 18.0)
    assert merged.itl_ms == (2.0, 4.0)


# --- calls aligned with the engine's samples --------------------------------------------


def call(ttft: float, tpot: float, tokens: int = 3) -> CallMetrics:
    return CallMetrics(ttft_ms=ttft, tpot_ms=tpot, itl_ms=(tpot,) * (tokens - 1),
                       e2e_ms=ttft + tpot * (tokens - 1), tokens=tokens)


def timed(samples: list[float], rounds: list[float], disturbed: list[bool] | None = None,
          rounds_disturbed: list[bool] | None = None) -> Measurement:
    return Measurement(name="gen", samples_ms=samples, rounds_ms=rounds,
                       disturbed=disturbed or [], rounds_disturbed=rounds_disturbed or [],
                       items=6)


def test_only_calls_inside_timed_blocks_are_samples():
    log = GenerationLog("gen")
    log.add(call(100.0, 50.0))  # warm-up: not a sample
    log.begin_block()
    log.add(call(10.0, 1.0))
    log.add(call(30.0, 3.0))
    log.end_block([False, True], 1)
    log.add(call(100.0, 50.0))  # an untimed call between blocks
    log.begin_block()
    log.end_block([False], 1)  # another variant's block: nothing of ours
    log.begin_block()
    log.add(call(20.0, 2.0))
    log.end_block([False], 1)
    m = log.measurement(timed([12.0, 36.0, 24.0], [12.0, 24.0], [False, True, False]),
                        batch_size=2)
    assert isinstance(m, GenerationMeasurement)
    assert m.ttft_samples_ms == [10.0, 30.0, 20.0]
    assert m.tpot_samples_ms == [1.0, 3.0, 2.0]
    # a round's value is the median of its undisturbed samples, as for the end-to-end time
    assert m.ttft_rounds_ms == [10.0, 20.0]
    assert m.tpot_rounds_ms == [1.0, 2.0]
    # percentiles of the undisturbed samples
    assert m.ttft_p50_ms == 15.0
    assert m.tpot_p50_ms == 1.5
    assert m.itl_p50_ms == 1.5  # ITLs pooled over the undisturbed calls: 1, 1, 2, 2
    assert m.output_tokens == 3
    assert m.batch_size == 2


def test_a_block_with_the_wrong_number_of_calls_is_an_error():
    log = GenerationLog("gen")
    log.begin_block()
    log.add(call(10.0, 1.0))
    with pytest.raises(ValueError, match="1 generate calls in a block of 2 samples"):
        log.end_block([False, False], 1)


def test_blocks_that_do_not_match_the_engine_rounds_are_an_error():
    log = GenerationLog("gen")
    log.begin_block()
    log.add(call(10.0, 1.0))
    log.end_block([False], 1)
    with pytest.raises(ValueError, match="1 blocks of 1 samples logged, the engine timed 2"):
        log.measurement(timed([11.0, 12.0], [11.0, 12.0]), batch_size=1)


def test_without_timed_blocks_every_call_is_a_sample():
    log = GenerationLog("gen")
    log.add(call(10.0, 1.0))
    m = log.measurement(timed([12.0], [12.0]), batch_size=1)
    assert m.ttft_samples_ms == [10.0]
    assert m.ttft_rounds_ms == [10.0]


def test_view_reads_a_metric_as_per_call_times():
    log = GenerationLog("gen")
    log.begin_block()
    for ttft in (10.0, 12.0, 14.0):
        log.add(call(ttft, 1.0))
    log.end_block([False, False, True], 1)
    m = log.measurement(timed([12.0, 14.0, 16.0], [14.0], [False, False, True]), 1)
    view = m.view("ttft")
    assert view.samples_ms == [10.0, 12.0, 14.0]
    assert view.rounds_ms == [11.0]
    assert view.median_ms == 11.0  # the undisturbed samples only
    with pytest.raises(ValueError, match="unknown generation metric 'itl'"):
        m.view("itl")


def test_single_token_calls_have_no_tpot():
    log = GenerationLog("gen")
    log.begin_block()
    log.add(CallMetrics(ttft_ms=5.0, tpot_ms=None, itl_ms=(), e2e_ms=5.0, tokens=1))
    log.end_block([False], 1)
    m = log.measurement(timed([5.0], [5.0]), 1)
    assert m.tpot_p50_ms is None
    assert m.to_dict()["tpot_p50_ms"] is None
    assert m.to_dict()["itl_p50_ms"] is None
    with pytest.raises(ValueError, match="TPOT needs max_new_tokens >= 2"):
        m.view("tpot")


def test_results_hold_the_generation_keys():
    log = GenerationLog("gen")
    log.begin_block()
    log.add(call(10.0, 2.0, tokens=3))
    log.end_block([False], 1)
    data = log.measurement(timed([14.0], [14.0]), batch_size=2).to_dict()
    for metric in ("ttft", "tpot", "itl"):
        for q in (50, 95, 99):
            assert f"{metric}_p{q}_ms" in data
    assert data["ttft_p50_ms"] == 10.0
    assert data["output_tokens"] == 3
    assert data["tokens_per_s"] == 6 * 1000.0 / 14.0  # items: 2 sequences x 3 new tokens
    assert data["median_ms"] == 14.0


# --- token ids --------------------------------------------------------------------------


def test_equal_token_ids_have_no_difference():
    assert first_difference([[1, 2, 3], [4, 5, 6]], [[1, 2, 3], [4, 5, 6]]) is None


def test_the_first_differing_position_is_named():
    diff = first_difference([[1, 2, 3], [4, 5, 9]], [[1, 2, 3], [4, 5, 6]])
    assert diff is not None
    assert (diff.sequence, diff.position, diff.candidate, diff.reference) == (1, 2, 9, 6)
    assert diff.describe("fast", "slow") == ("token ids of fast differ from slow's at "
                                             "sequence 1, position 2 (9 vs 6)")


def test_a_shorter_sequence_differs_at_its_end():
    diff = first_difference([[1, 2]], [[1, 2, 3]])
    assert diff is not None and (diff.position, diff.candidate, diff.reference) == (2, None, 3)


def test_a_different_batch_differs():
    diff = first_difference([[1]], [[1], [2]])
    assert diff is not None
    assert diff.describe("a", "b") == "a returned 1 sequences, b 2"


def _with_ids(name: str, ids: list[list[int]], after: list[list[int]] | None = None
              ) -> GenerationMeasurement:
    return GenerationMeasurement(name=name, samples_ms=[1.0], rounds_ms=[1.0], token_ids=ids,
                                 token_ids_after=ids if after is None else after)


def test_token_check_compares_exactly_before_and_after_timing():
    ref = _with_ids("eager", [[5, 6, 7]])
    assert token_check(_with_ids("sdpa", [[5, 6, 7]]), ref, "eager").status.value == "passed"
    failed = token_check(_with_ids("sdpa", [[5, 6, 7]], after=[[5, 8, 7]]), ref, "eager")
    assert failed.status.value == "failed"
    assert failed.message == ("accuracy of sdpa: token ids of sdpa differ from eager's at "
                              "sequence 0, position 1 (8 vs 6) after timing")


def test_variants_of_other_prompts_are_not_compared_token_for_token():
    from pytest_hwopt.core.generation import same_prompt

    a = GenerationMeasurement(name="a", samples_ms=[1.0], rounds_ms=[1.0], prompt_digest="p1")
    b = GenerationMeasurement(name="b", samples_ms=[1.0], rounds_ms=[1.0], prompt_digest="p1")
    c = GenerationMeasurement(name="c", samples_ms=[1.0], rounds_ms=[1.0], prompt_digest="p2")
    d = GenerationMeasurement(name="d", samples_ms=[1.0], rounds_ms=[1.0], prompt_digest="p1",
                              batch_size=4)
    assert same_prompt(a, b)
    assert not same_prompt(a, c) and not same_prompt(a, d)


# --- which attention ran ----------------------------------------------------------------


@pytest.mark.parametrize(("names", "backends"), [
    (["aten::scaled_dot_product_attention", "aten::_scaled_dot_product_flash_attention_for_cpu",
      "aten::matmul"], ["flash"]),
    (["aten::scaled_dot_product_attention", "aten::_scaled_dot_product_attention_math",
      "aten::_softmax"], ["math"]),
    (["aten::_scaled_dot_product_efficient_attention",
      "fmha_cutlassF_f16_aligned_64x64_rf_sm80(AttentionKernel<...>::Params)"],
     ["memory-efficient"]),
    (["aten::_scaled_dot_product_flash_attention",
      "void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<...>>(...)",
      "aten::_scaled_dot_product_attention_math"], ["flash", "math"]),
    (["aten::_scaled_dot_product_cudnn_attention"], ["cudnn"]),
    (["aten::matmul", "aten::bmm", "aten::softmax", "aten::_softmax"], ["eager"]),
    (["aten::linear", "aten::addmm"], []),
])
def test_attention_backends_from_profiler_names(names, backends):
    from pytest_hwopt.core.generation import attention_backends

    assert attention_backends(names) == backends


def test_attention_ops_keeps_the_names_that_identify_attention():
    from pytest_hwopt.core.generation import attention_ops

    assert attention_ops(["aten::softmax", "aten::linear", "aten::scaled_dot_product_attention",
                          "aten::softmax"]) == ["aten::scaled_dot_product_attention",
                                                "aten::softmax"]
