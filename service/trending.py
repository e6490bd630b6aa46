"""Is a series growing beyond what its own history explains? A shrunk Poisson test.

For one group (a touchpoint, a location, later a topic at a touchpoint), ``history`` holds its negative
counts in the baseline buckets and ``current`` the count in the ``window`` buckets under test (the ones
after the baseline). Its expected count is its own baseline rate shrunk towards ``prior_rate`` (the
typical group's rate), as the posterior mean of a gamma-Poisson model with the prior worth
``prior_strength`` buckets, times the window:

    expected = window * max(own, (sum(history) + prior_strength * prior_rate) / (len(history) + prior_strength))

with ``own = sum(history) / len(history)``: a store with three reviews and no history is expected to look
like the average store, not like zero, while a large series is never pulled below its own rate (which
would make a flat, busy series look as if it grew).
The test is one-sided: p = P(X >= current) for X ~ Poisson(expected). A series is trending when p is below
``alpha`` divided by the number of series tested (Bonferroni), the count reaches ``min_count`` and it grew
by at least ``min_growth`` over the expected count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class TrendTest:
    """The outcome of testing one series' current bucket against its baseline."""

    current: int
    expected: float
    growth: float | None
    p_value: float
    trending: bool


def poisson_upper_tail(observed: int, rate: float) -> float:
    """P(X >= observed) for X ~ Poisson(rate), computed in log space (stable for large counts)."""
    if observed <= 0:
        return 1.0
    if rate <= 0:
        return 0.0
    log_terms = [i * math.log(rate) - rate - math.lgamma(i + 1) for i in range(observed)]
    top = max(log_terms)
    below = math.exp(top) * sum(math.exp(t - top) for t in log_terms)
    return max(0.0, min(1.0, 1.0 - below))


def shrunk_expectation(history: Sequence[int], *, prior_rate: float, prior_strength: float) -> float:
    """The expected count per bucket: the series' own rate, shrunk up towards the typical rate, never down."""
    own = sum(history) / len(history) if history else 0.0
    return max(own, (sum(history) + prior_strength * prior_rate) / (len(history) + prior_strength))


def assess_trend(
    *,
    current: int,
    history: Sequence[int],
    prior_rate: float,
    prior_strength: float = 2.0,
    window: int = 1,
    alpha: float = 0.01,
    comparisons: int = 1,
    min_count: int = 5,
    min_growth: float = 1.5,
) -> TrendTest:
    """Test whether ``current`` exceeds what ``history`` (shrunk towards ``prior_rate``) predicts."""
    expected = window * shrunk_expectation(history, prior_rate=prior_rate, prior_strength=prior_strength)
    p_value = poisson_upper_tail(current, expected)
    growth = current / expected if expected > 0 else None
    trending = (
        p_value < alpha / max(comparisons, 1)
        and current >= min_count
        and (growth is None or growth >= min_growth)
    )
    return TrendTest(current=current, expected=expected, growth=growth, p_value=p_value, trending=trending)


def binomial_upper_tail(successes: int, trials: int, rate: float) -> float:
    """P(X >= successes) for X ~ Binomial(trials, rate), in log space."""
    if successes <= 0:
        return 1.0
    if rate <= 0:
        return 0.0
    if rate >= 1:
        return 1.0
    log_terms = [
        math.lgamma(trials + 1)
        - math.lgamma(k + 1)
        - math.lgamma(trials - k + 1)
        + k * math.log(rate)
        + (trials - k) * math.log1p(-rate)
        for k in range(successes, trials + 1)
    ]
    top = max(log_terms)
    return max(0.0, min(1.0, math.exp(top) * sum(math.exp(t - top) for t in log_terms)))


@dataclass(frozen=True)
class OutlierTest:
    """One group's negative share against the others'."""

    negative: int
    total: int
    share: float
    shrunk_share: float
    others_share: float
    p_value: float
    outlier: bool


def assess_outlier(
    *,
    negative: int,
    total: int,
    others_negative: int,
    others_total: int,
    prior_strength: float = 10.0,
    alpha: float = 0.01,
    comparisons: int = 1,
    min_difference: float = 0.15,
) -> OutlierTest:
    """Is this group's negative share above the other groups'? Shrunk share, one-sided exact binomial test.

    The shrunk share is the beta-binomial posterior mean with the others' share as prior worth
    ``prior_strength`` sentences, so 2 negatives out of 2 is not an outlier.
    """
    others_share = others_negative / others_total if others_total else 0.0
    shrunk = (negative + prior_strength * others_share) / (total + prior_strength)
    p_value = binomial_upper_tail(negative, total, others_share) if total else 1.0
    outlier = p_value < alpha / max(comparisons, 1) and shrunk - others_share >= min_difference
    share = negative / total if total else 0.0
    return OutlierTest(negative, total, share, shrunk, others_share, p_value, outlier)
