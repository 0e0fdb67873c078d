"""Pure statistics for timing samples: percentiles, intervals, ratios.

Standard library only, so it is cheap to import and exact to test.
Percentiles use linear interpolation between order statistics (Hyndman and Fan
type 7, the default of NumPy and R); intervals are distribution free.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Final

PERCENTILE_METHOD: Final = "linear (Hyndman-Fan type 7)"
BOOTSTRAP_RESAMPLES: Final = 2000


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``samples`` by linear interpolation."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    ordered = sorted(samples)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median(samples: Sequence[float]) -> float:
    """The median (50th percentile)."""
    return percentile(samples, 50.0)


def mean(samples: Sequence[float]) -> float:
    """The arithmetic mean."""
    if not samples:
        raise ValueError("mean of no samples")
    return math.fsum(samples) / len(samples)


def iqr(samples: Sequence[float]) -> float:
    """Interquartile range: p75 - p25."""
    return percentile(samples, 75.0) - percentile(samples, 25.0)


def z_value(confidence: float) -> float:
    """Two-sided standard normal quantile for ``confidence`` (0.95 -> 1.96)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def percentile_interval(
    samples: Sequence[float], q: float, confidence: float = 0.95
) -> tuple[float, float]:
    """Distribution-free interval for the ``q``-th percentile from order statistics.

    The rank of the true percentile among n samples is Binomial(n, q/100); the
    interval takes the order statistics at its normal-approximation bounds.
    """
    ordered = sorted(samples)
    n = len(ordered)
    if n == 0:
        raise ValueError("interval of no samples")
    p = q / 100.0
    half = z_value(confidence) * math.sqrt(n * p * (1.0 - p))
    lo = max(0, math.floor(n * p - half) - 1)
    hi = min(n - 1, math.ceil(n * p + half))
    return ordered[lo], ordered[hi]


def ratio_of_medians(
    numerator_rounds: Sequence[float],
    denominator_rounds: Sequence[float],
    confidence: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Point estimate and paired-bootstrap interval of median(num) / median(den).

    The inputs are one value per round, measured side by side, so rounds are
    resampled as pairs: drift that slows both variants in a round cancels out.
    Returns ``(ratio, low, high)``.
    """
    n = len(numerator_rounds)
    if n == 0 or n != len(denominator_rounds):
        raise ValueError("ratio needs the same, non-zero number of rounds on both sides")
    # the stop rule and the final verdict ask about the same rounds: resample them once
    return _paired_bootstrap(tuple(numerator_rounds), tuple(denominator_rounds),
                             confidence, resamples, seed)


@functools.lru_cache(maxsize=64)
def _paired_bootstrap(
    numerator_rounds: tuple[float, ...],
    denominator_rounds: tuple[float, ...],
    confidence: float,
    resamples: int,
    seed: int,
) -> tuple[float, float, float]:
    n = len(numerator_rounds)
    point = median(numerator_rounds) / median(denominator_rounds)
    if n < 3:
        return point, 0.0, math.inf
    import random  # only for the bootstrap: keeps it off the plugin's start-up (about 5 ms)

    rng = random.Random(seed)
    ratios = []
    indices = range(n)
    for _ in range(resamples):
        picks = rng.choices(indices, k=n)
        num = _median_of(numerator_rounds, picks)
        den = _median_of(denominator_rounds, picks)
        ratios.append(num / den if den > 0 else math.inf)
    alpha = (1.0 - confidence) / 2.0
    return point, percentile(ratios, 100 * alpha), percentile(ratios, 100 * (1 - alpha))


def _median_of(values: Sequence[float], picks: list[int]) -> float:
    chosen = sorted(values[i] for i in picks)
    mid = len(chosen) // 2
    return chosen[mid] if len(chosen) % 2 else (chosen[mid - 1] + chosen[mid]) / 2.0


def mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Mann-Whitney U p-value (normal approximation, tie corrected)."""
    na, nb = len(a), len(b)
    if na == 0 or nb == 0:
        raise ValueError("Mann-Whitney needs samples on both sides")
    pooled = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks = [0.0] * len(pooled)
    ties = 0.0
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        avg = (i + j) / 2.0 + 1.0
        for k in range(i, j + 1):
            ranks[k] = avg
        t = j - i + 1
        ties += t**3 - t
        i = j + 1
    rank_a = sum(r for r, (_, side) in zip(ranks, pooled) if side == 0)
    u = rank_a - na * (na + 1) / 2.0
    n = na + nb
    var = na * nb / 12.0 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        return 1.0
    z = (u - na * nb / 2.0) / math.sqrt(var)
    return 2.0 * (1.0 - NormalDist().cdf(abs(z)))
