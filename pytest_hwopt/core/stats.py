"""Pure statistics for timing samples: percentiles, intervals, ratios.

Standard library only, so it is cheap to import and exact to test.
Percentiles use linear interpolation between order statistics (Hyndman and Fan
type 7, the default of NumPy and R); their bounds are distribution free (order
statistics with exact binomial tails).
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


def percentile_bounds(
    samples: Sequence[float], q: float, confidence: float = 0.95
) -> tuple[float | None, float | None]:
    """One-sided confidence bounds on the ``q``-th percentile (0 < q < 100) from order
    statistics, distribution free: ``(low, high)``, each a bound at ``confidence`` on its own
    side (together an interval of confidence ``2 * confidence - 1``), or None where ``n``
    samples cannot give that bound (:func:`samples_for_bound`).

    Of n independent samples, the number K below the true percentile is Binomial(n, p),
    p = q / 100, and the r-th smallest sample X(r) is at or above it exactly when K < r.
    So ``high`` is X(u) for the smallest u with P(K >= u) <= 1 - confidence, and ``low`` is
    X(l) for the largest l with P(K <= l - 1) <= 1 - confidence (Conover, *Practical
    Nonparametric Statistics*, 3rd ed., 1999, section 3.2; David and Nagaraja, *Order
    Statistics*, 3rd ed., 2003, section 7.1). Ties (a coarse timer) only make the bounds
    more conservative. Exact binomial tails, summed over the 12 standard deviations
    around the mean that hold all but a negligible share of the mass.
    """
    ordered = sorted(samples)
    n = len(ordered)
    if n == 0:
        raise ValueError("bounds of no samples")
    p = _fraction(q)
    alpha = 1.0 - _level(confidence)
    upper = _upper_rank(n, p, alpha)
    m = _upper_rank(n, 1.0 - p, alpha)  # the same tail of n - K ~ Binomial(n, 1 - p)
    lower = None if m is None else n - m + 1
    return (None if lower is None else ordered[lower - 1],
            None if upper is None else ordered[upper - 1])


def samples_for_bound(q: float, confidence: float = 0.95, upper: bool = True) -> int:
    """The fewest samples whose order statistics give a one-sided bound on the ``q``-th
    percentile at ``confidence`` (:func:`percentile_bounds`).

    The highest upper bound there is, the largest sample, holds with probability
    1 - p**n (p = q / 100), so an upper bound needs p**n <= 1 - confidence, i.e.
    n >= ln(1 - confidence) / ln(p); a lower bound, from the smallest sample, needs
    n >= ln(1 - confidence) / ln(1 - p). At 95%: p50 needs 5 samples either way, p90 29,
    p95 59 and p99 299 for an upper bound.
    """
    p = _fraction(q)
    alpha = 1.0 - _level(confidence)
    keep = p if upper else 1.0 - p  # the probability that one sample stays below the bound
    n = max(1, math.ceil(math.log(alpha) / math.log(keep)))
    while keep**n > alpha:  # float rounding either way
        n += 1
    while n > 1 and keep ** (n - 1) <= alpha:
        n -= 1
    return n


def _fraction(q: float) -> float:
    if not 0.0 < q < 100.0:
        raise ValueError(f"a percentile's bounds need q in (0, 100), got {q}")
    return q / 100.0


def _level(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return confidence


def _upper_rank(n: int, p: float, alpha: float) -> int | None:
    """The smallest u in 1..n with P(K >= u) <= alpha for K ~ Binomial(n, p), or None when
    even P(K >= n) = p**n exceeds ``alpha``."""
    if n * math.log(p) > math.log(alpha):
        return None
    sd = math.sqrt(n * p * (1.0 - p))
    k = min(n, math.ceil(n * p + 12.0 * sd + 12.0))  # above it the tail is negligible
    pmf = math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                   + k * math.log(p) + (n - k) * math.log1p(-p))
    odds = (1.0 - p) / p
    tail = 0.0  # P(K >= k + 1)
    while k >= 0:
        if tail + pmf > alpha:
            return k + 1 if k + 1 <= n else None
        tail += pmf
        pmf *= k / (n - k + 1) * odds  # P(K = k - 1) from P(K = k)
        k -= 1
    return 1


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
