"""Seed aggregation and the one verdict rule, on cases with a known answer (comparisons.engine.stats)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from comparisons.engine import stats as st
from comparisons.engine.aggregate import aggregate_summaries, group_by_config, judgement, mean_ci


def test_mean_ci_matches_textbook_t_interval() -> None:
    x = [1.0, 2.0, 4.0, 7.0]
    m, lo, hi = mean_ci(x)
    half = stats.t.ppf(0.975, 3) * np.std(x, ddof=1) / 2.0
    assert m == pytest.approx(3.5) and lo == pytest.approx(3.5 - half) and hi == pytest.approx(3.5 + half)


def test_mean_ci_single_and_nan() -> None:
    assert mean_ci([2.0]) == (2.0, 2.0, 2.0)
    assert mean_ci([2.0, math.nan, 4.0])[0] == pytest.approx(3.0)  # censored (NaN) values are dropped
    assert all(math.isnan(v) for v in mean_ci([math.nan]))


def test_bounded_scores_get_intervals_inside_their_range() -> None:
    # a fraction: Wilson on the pooled counts (3 seeds x 4 trials, 11 successes), checked against the textbook formula
    p, lo, hi = st.interval([1.0, 1.0, 0.75], "fraction", [4, 4, 4])
    z, n, ph = stats.norm.ppf(0.975), 12, 11 / 12
    centre = (ph + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert p == pytest.approx(ph) and lo == pytest.approx(centre - half) and hi == pytest.approx(min(1, centre + half))
    assert lo >= 0 and hi <= 1
    # a correlation: Fisher z (the plain t interval of [0.99, 0.95, 0.97] would pass 1)
    r, rlo, rhi = st.interval([0.99, 0.95, 0.97], "correlation")
    assert -1 < rlo < r < rhi < 1
    assert st.t_interval([0.99, 0.95, 0.97])[2] > 1.0


def test_p_value_known_answers() -> None:
    null = list(range(199))  # 0..198
    assert st.p_value(1000.0, null, ">=") == pytest.approx(1 / 200)  # beats every draw
    assert st.p_value(-1.0, null, ">=") == pytest.approx(1.0)
    assert st.p_value(-1.0, null, "<=") == pytest.approx(1 / 200)
    assert st.p_value(99.0, null, ">=") == pytest.approx(101 / 200)  # draws 99..198 are at least as good
    assert math.isnan(st.p_value(1.0, [], ">="))


def test_p_values_under_the_null_are_uniform() -> None:
    """Observation and null from one distribution: the p-values are uniform (Kolmogorov-Smirnov, 400 draws)."""
    rng = np.random.default_rng(0)
    ps = [st.p_value(float(rng.normal()), rng.normal(size=199), ">=") for _ in range(400)]
    assert stats.kstest(ps, "uniform").pvalue > 0.01
    # and a shifted observation is not uniform (the check can fail)
    shifted = [st.p_value(float(rng.normal() + 2), rng.normal(size=199), ">=") for _ in range(400)]
    assert stats.kstest(shifted, "uniform").pvalue < 1e-6


def _seed(i: int, value: float, null: list[float], crit=(">=", 0.5), kind="real", trials=None) -> dict:
    s = {
        "phenomenon": "lazy_rich",
        "name": "x",
        "seed": i,
        "criteria": {"rho": list(crit)},
        "scores": {"rho": value},
        "nulls": {"rho": null},
        "kinds": {"rho": kind},
    }
    if trials:
        s["trials"] = {"rho": trials}
    return s


def test_prediction_equal_to_observation_is_agree() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=50)

    def spearman(a, b):
        return stats.spearmanr(a, b)[0]

    seeds = [
        _seed(i, spearman(x, x), st.permutation_null(spearman, x, x, 200, seed=i), kind="correlation") for i in range(3)
    ]
    j = judgement(seeds)
    assert j["verdict"] == "agree", j["verdict_reason"]
    assert j["evidence"]["rho"]["p"] == pytest.approx(1 / 201)


def test_permuted_or_reversed_prediction_is_never_agree() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=50)

    def spearman(a, b):
        return stats.spearmanr(a, b)[0]

    for _ in range(20):
        y = rng.permutation(x)
        seeds = [
            _seed(k, spearman(y, x), st.permutation_null(spearman, y, x, 200, seed=k), kind="correlation")
            for k in range(3)
        ]
        assert judgement(seeds)["verdict"] != "agree"
    reversed_ = [
        _seed(k, spearman(-x, x), st.permutation_null(spearman, -x, x, 200, seed=k), kind="correlation")
        for k in range(3)
    ]
    assert judgement(reversed_)["verdict"] == "disagree"


def test_a_two_point_classification_is_inconclusive() -> None:
    """Perfect accuracy on 2 points: its permutation null has 2 outcomes, so p >= 1/2 whatever the seeds say."""
    rng = np.random.default_rng(3)
    seeds = [
        _seed(i, 1.0, list(rng.integers(0, 2, 400) * 1.0), crit=(">=", 0.75), kind="fraction", trials=2)
        for i in range(3)
    ]
    j = judgement(seeds)
    # 3 seeds of a 2-point classification: a perfect score happens by chance 1 time in 8
    assert j["verdict"] == "inconclusive" and j["evidence"]["rho"]["p"] == pytest.approx(1 / 8, abs=0.04)


def test_one_seed_is_inconclusive_and_a_failing_interval_is_disagree() -> None:
    assert judgement([_seed(0, 0.99, [0.0] * 200)])["verdict"] == "inconclusive"
    j = judgement([_seed(i, v, [0.0] * 200) for i, v in enumerate([0.1, 0.12, 0.11])])
    assert j["verdict"] == "disagree" and "failing side" in j["verdict_reason"]


def test_no_null_is_never_agree() -> None:
    j = judgement([_seed(i, v, []) for i, v in enumerate([0.9, 0.91, 0.92])])
    assert j["verdict"] == "inconclusive" and "no criterion has a null" in j["verdict_reason"]


def test_normalised_agreement_between_null_and_ceiling() -> None:
    seeds = [_seed(i, v, [0.0] * 200, crit=(">=", 0.5, "normalised")) for i, v in enumerate([0.6, 0.65, 0.7])]
    ev = judgement(seeds, ceilings=[{"rho": 0.8}, {"rho": 0.8}])["evidence"]["rho"]
    assert ev["ceiling"] == pytest.approx(0.8) and ev["normalised"] == pytest.approx(0.65 / 0.8)
    assert ev["call"] == "pass"
    # without a ceiling the normalised criterion is undecided
    assert judgement(seeds)["verdict"] == "inconclusive"


def test_aggregate_summaries_interval_and_controls() -> None:
    base = {"phenomenon": "emergence", "name": "x", "criteria": {"rmse": ["<=", 0.1]}}
    s = [
        dict(
            base,
            seed=i,
            scores={"rmse": v},
            nulls={"rmse": [0.5 + 0.001 * j for j in range(200)]},
            negative_controls={"swap": {"score": 1.0, "rejected": i != 2}},
        )
        for i, v in enumerate([0.05, 0.06, 0.07])
    ]
    agg = aggregate_summaries(s)
    assert agg["n"] == 3 and agg["seeds"] == [0, 1, 2]
    assert agg["scores"]["rmse"] == pytest.approx(0.06)
    lo, hi = agg["score_intervals"]["rmse"]
    assert lo < 0.06 < hi and agg["verdict"] == "agree"
    assert agg["evidence"]["rmse"]["p"] == pytest.approx(1 / 201)
    assert agg["negative_controls"]["swap"]["rejected"] is False  # rejected in only 2 of 3 seeds


def test_group_by_config_counts_a_seed_once(tmp_path) -> None:
    from comparisons.engine import rundir

    def make(name: str, seed: int) -> None:
        d = tmp_path / name
        rundir.write_yaml(d / "config.yaml", {"seed": seed, "seeds": None, "lr": 0.1})
        rundir.write_json(d / "summary.json", {"seed": seed})
        rundir.write_text(d / "curves.csv", ",".join(rundir.CURVE_COLUMNS) + "\n")
        rundir.mark_complete(d)

    make("a", 0)
    make("b", 0)
    make("c", 1)
    (groups,) = group_by_config([tmp_path / n for n in "abc"]).values()
    assert sorted(p.name for p in groups) == ["b", "c"]


def test_a_normalised_error_score_takes_its_direction_from_the_ceiling() -> None:
    """An RMSE: null ~1.4, ceiling 0.06; a seed mean of 0.3 is good (p small), normalised ~0.81."""
    rng = np.random.default_rng(4)
    seeds = [
        _seed(i, v, list(1.4 + 0.1 * rng.normal(size=300)), crit=(">=", 0.5, "normalised"))
        for i, v in enumerate([0.28, 0.30, 0.32])
    ]
    ev = judgement(seeds, ceilings=[{"rho": 0.06}] * 2)["evidence"]["rho"]
    assert ev["p"] == pytest.approx(1 / 301) and ev["normalised"] == pytest.approx(
        (0.30 - 1.4) / (0.06 - 1.4), abs=0.01
    )
    assert ev["call"] == "pass"
