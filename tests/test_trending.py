"""The trending test: Poisson tail, shrinkage of small counts, multiple comparisons."""

from __future__ import annotations

import math

import pytest

from service.trending import assess_trend, poisson_upper_tail, shrunk_expectation


def test_poisson_upper_tail_matches_closed_forms() -> None:
    assert poisson_upper_tail(0, 3.0) == 1.0
    assert poisson_upper_tail(1, 1.0) == pytest.approx(1 - math.exp(-1))
    assert poisson_upper_tail(2, 2.0) == pytest.approx(1 - 3 * math.exp(-2))
    assert poisson_upper_tail(400, 300.0) < 1e-7  # stable for large counts
    assert poisson_upper_tail(3, 0.0) == 0.0


def test_a_spike_over_a_steady_baseline_is_trending() -> None:
    result = assess_trend(current=9, history=[1, 1, 2, 1, 2, 1], prior_rate=1.5)
    assert result.trending and result.growth is not None and result.growth > 5 and result.p_value < 1e-4


def test_steady_series_are_not_trending() -> None:
    assert not assess_trend(current=3, history=[2, 3, 2, 3, 2, 3], prior_rate=1.5).trending
    assert not assess_trend(current=12, history=[10, 12, 11, 9, 13, 10], prior_rate=2.0).trending


def test_a_store_with_three_reviews_is_not_a_crisis() -> None:
    assert shrunk_expectation([], prior_rate=1.0, prior_strength=2.0) == 1.0
    tiny = assess_trend(current=3, history=[0, 0, 0, 0, 0, 0], prior_rate=1.0)
    assert not tiny.trending  # its own history says 0, the shrunk expectation says 0.25 and 3 < min_count
    unshrunk = assess_trend(
        current=3, history=[0, 0, 0, 0, 0, 0], prior_rate=1.0, prior_strength=0.0, min_count=1
    )
    assert unshrunk.p_value == 0.0  # without shrinkage any count over a zero history would look certain


def test_many_comparisons_raise_the_bar() -> None:
    alone = assess_trend(current=7, history=[2, 2, 2, 2, 2, 2], prior_rate=2.0)
    among_many = assess_trend(current=7, history=[2, 2, 2, 2, 2, 2], prior_rate=2.0, comparisons=100)
    assert alone.trending and not among_many.trending


def test_binomial_tail_and_the_outlier_store() -> None:
    from service.trending import assess_outlier, binomial_upper_tail

    assert binomial_upper_tail(2, 3, 0.5) == pytest.approx(0.5)
    assert binomial_upper_tail(1, 1, 0.3) == pytest.approx(0.3)
    outlier = assess_outlier(negative=8, total=10, others_negative=6, others_total=30, comparisons=4)
    assert outlier.outlier and outlier.p_value < 1e-3
    assert not assess_outlier(negative=2, total=2, others_negative=6, others_total=30, comparisons=4).outlier
    assert not assess_outlier(
        negative=3, total=10, others_negative=11, others_total=30, comparisons=4
    ).outlier


def test_a_busy_flat_series_is_not_pulled_below_its_own_rate() -> None:
    """Shrinkage lifts small series towards the typical rate; it never makes a large flat series look grown."""
    flat = assess_trend(current=531, history=[466] * 6, prior_rate=20.0, comparisons=100)
    assert flat.expected == pytest.approx(466.0)
    assert not flat.trending
    quiet = assess_trend(current=3, history=[0] * 6, prior_rate=4.0, comparisons=1)
    assert quiet.expected == pytest.approx(2 * 4.0 / 8)
