from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from comparisons.engine.aggregate import aggregate_summaries, mean_ci, verdict_from_intervals


def test_mean_ci_matches_textbook_t_interval() -> None:
    x = [1.0, 2.0, 4.0, 7.0]
    m, lo, hi = mean_ci(x)
    half = stats.t.ppf(0.975, 3) * np.std(x, ddof=1) / 2.0
    assert m == pytest.approx(3.5) and lo == pytest.approx(3.5 - half) and hi == pytest.approx(3.5 + half)


def test_mean_ci_single_and_nan() -> None:
    assert mean_ci([2.0]) == (2.0, 2.0, 2.0)
    assert mean_ci([2.0, math.nan, 4.0])[0] == pytest.approx(3.0)  # censored (NaN) values are dropped
    assert all(math.isnan(v) for v in mean_ci([math.nan]))


CASES = [
    ({"r2": (0.9, 0.85, 0.95)}, "agree"),
    ({"r2": (0.5, 0.4, 0.6)}, "disagree"),
    ({"r2": (0.8, 0.7, 0.9)}, "inconclusive"),  # the interval straddles the 0.8 threshold
    ({"r2": (math.nan,) * 3}, "inconclusive"),
]


@pytest.mark.parametrize(("intervals", "expected"), CASES)
def test_verdict_thresholds(intervals, expected) -> None:
    assert verdict_from_intervals(intervals, {"r2": (">=", 0.8)}) == expected


def test_one_failing_criterion_is_disagree_even_if_another_straddles() -> None:
    iv = {"a": (1.0, 0.5, 1.5), "b": (0.0, -0.1, 0.1)}
    assert verdict_from_intervals(iv, {"a": (">=", 1.0), "b": (">", 0.5)}) == "disagree"


def test_aggregate_summaries_interval_and_controls() -> None:
    base = {"phenomenon": "emergence", "name": "x", "criteria": {"rmse": ["<=", 0.1]}}
    s = [
        dict(
            base,
            seed=i,
            scores={"rmse": v},
            verdict="agree",
            negative_controls={"swap": {"score": 1.0, "rejected": i != 2}},
        )
        for i, v in enumerate([0.05, 0.06, 0.07])
    ]
    agg = aggregate_summaries(s)
    assert agg["n"] == 3 and agg["seeds"] == [0, 1, 2]
    assert agg["scores"]["rmse"] == pytest.approx(0.06)
    lo, hi = agg["score_intervals"]["rmse"]
    assert lo < 0.06 < hi and agg["verdict"] == "agree"
    assert agg["negative_controls"]["swap"]["rejected"] is False  # rejected in only 2 of 3 seeds
