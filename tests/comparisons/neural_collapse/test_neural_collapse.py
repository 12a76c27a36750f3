"""Tests of comparisons/neural_collapse.py and its metrics (comparisons/nc_metrics.py), on constructed ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from comparisons.neural_collapse.metrics import NCAccumulator, nc_metrics_stream
from comparisons.neural_collapse.phenomenon import nc_metrics

KEYS = [
    "nc1",
    "cdnv",
    "nc2_equinorm_means",
    "nc2_equinorm_weights",
    "nc2_equiangular_means",
    "nc2_equiangular_weights",
    "nc2_etf_error",
    "nc3",
    "nc4",
]


# ----------------------------------------------------------------------------------------------------------------
# constructed data and an independent float64 reference (loops, numpy.linalg.pinv)


def simplex_etf(c: int, p: int, rng: np.random.Generator) -> np.ndarray:
    """Rows: C simplex-ETF vertices in R^p (p >= C), randomly rotated; shape (C, p)."""
    q, _ = np.linalg.qr(rng.standard_normal((p, c)))  # (p, C) orthonormal columns
    return (np.eye(c) - 1.0 / c) @ q.T * np.sqrt(c / (c - 1))


def clustered(c: int, n: int, p: int, noise: float, rng: np.random.Generator, unbalanced: bool = False):
    """Gaussian clusters around random means; returns features (N, p), labels (N,), a classifier (C, p), bias (C,)."""
    counts = [n + (k if unbalanced else 0) for k in range(c)]
    means = rng.standard_normal((c, p)) * 2.0
    labels = np.concatenate([np.full(k, i) for i, k in enumerate(counts)])
    rng.shuffle(labels)
    h = means[labels] + noise * rng.standard_normal((len(labels), p))
    w = means + 0.8 * rng.standard_normal((c, p))
    return h, labels, w, rng.standard_normal(c)


def reference(h: np.ndarray, labels: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> dict[str, float]:
    """docs/theory.md 7.1 written out directly: loops over classes and pairs, numpy pinv, float64."""
    c = w.shape[0]
    n_tot = len(h)
    mus = np.stack([h[labels == k].mean(0) for k in range(c)])
    mu_g = h.mean(0)
    m = (mus - mu_g).T
    sw = sum(np.outer(x - mus[k], x - mus[k]) for x, k in zip(h, labels, strict=True)) / n_tot
    sb = m @ m.T / c
    out = {"nc1": np.trace(sw @ np.linalg.pinv(sb, rcond=1e-10)) / c}
    var = [np.mean(np.sum((h[labels == k] - mus[k]) ** 2, 1)) for k in range(c)]
    pairs = [(i, j) for i in range(c) for j in range(c) if i != j]
    out["cdnv"] = np.mean([(var[i] + var[j]) / (2 * np.sum((mus[i] - mus[j]) ** 2)) for i, j in pairs])
    for name, vecs in (("means", m.T), ("weights", w)):
        norms = np.linalg.norm(vecs, axis=1)
        out[f"nc2_equinorm_{name}"] = np.std(norms, ddof=1) / np.mean(norms)
        cos = [vecs[i] @ vecs[j] / (norms[i] * norms[j]) for i, j in pairs]
        out[f"nc2_equiangular_{name}"] = np.mean([abs(x + 1 / (c - 1)) for x in cos])
    g = m.T @ m
    etf = (np.eye(c) - np.ones((c, c)) / c) / np.sqrt(c - 1)
    out["nc2_etf_error"] = np.linalg.norm(g / np.linalg.norm(g) - etf)
    out["nc3"] = np.linalg.norm(w.T / np.linalg.norm(w) - m / np.linalg.norm(m)) ** 2
    logits = h @ w.T + (0 if b is None else b)
    ncc = [np.argmin([np.linalg.norm(x - mu) for mu in mus]) for x in h]
    out["nc4"] = np.mean(np.argmax(logits, 1) != np.array(ncc))
    return out


def t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a))


# ----------------------------------------------------------------------------------------------------------------
# metrics


def test_exact_simplex_etf_gives_zero() -> None:
    rng = np.random.default_rng(0)
    c, p, n = 5, 12, 6
    etf = 3.0 * simplex_etf(c, p, rng) + rng.standard_normal(p)  # shifted: mu_G != 0 must not matter
    labels = np.repeat(np.arange(c), n)
    w = 0.7 * (etf - etf.mean(0))  # self-dual classifier
    out = nc_metrics(t(etf[labels]).float(), t(labels), t(w).float(), bias=t(np.zeros(c)))
    for key in KEYS:
        assert out[key] == pytest.approx(0.0, abs=1e-5), key
    assert out["sv_means_1"] == pytest.approx(out[f"sv_means_{c - 1}"], rel=1e-5)  # C - 1 equal modes
    assert out[f"sv_means_{c}"] == pytest.approx(0.0, abs=1e-5)


def test_random_features_are_not_collapsed() -> None:
    rng = np.random.default_rng(1)
    c, p, n = 5, 20, 40
    labels = np.repeat(np.arange(c), n)
    out = nc_metrics(t(rng.standard_normal((c * n, p))), t(labels), t(rng.standard_normal((c, p))))
    assert out["nc1"] > 1.0
    assert out["cdnv"] > 1.0
    assert out["nc2_etf_error"] > 0.2
    assert out["nc3"] > 0.5
    assert out["nc4"] > 0.2


@pytest.mark.parametrize("unbalanced", [False, True], ids=["balanced", "unbalanced"])
def test_matches_float64_reference(unbalanced: bool) -> None:
    rng = np.random.default_rng(2)
    h, labels, w, b = clustered(c=4, n=15, p=7, noise=1.5, rng=rng, unbalanced=unbalanced)
    out = nc_metrics(t(h), t(labels), t(w), t(b))
    chunked = nc_metrics(t(h), t(labels), t(w), t(b), chunk_size=5)  # Chan merges across 12+ chunks
    ref = reference(h, labels, w, b)
    for key in KEYS:
        assert out[key] == pytest.approx(ref[key], rel=1e-9, abs=1e-12), key
        assert chunked[key] == pytest.approx(ref[key], rel=1e-9, abs=1e-12), key
    assert 0.0 < out["nc4"] < 1.0  # the NC4 branch is exercised, not trivially 0


def test_relabelling_and_rotation_change_nothing() -> None:
    rng = np.random.default_rng(3)
    c, p = 6, 9
    h, labels, w, b = clustered(c=c, n=10, p=p, noise=2.0, rng=rng)
    base = nc_metrics(t(h), t(labels), t(w), t(b))
    perm = rng.permutation(c)  # class k is now called perm[k]
    w_p, b_p = np.empty_like(w), np.empty_like(b)
    w_p[perm], b_p[perm] = w, b
    q, _ = np.linalg.qr(rng.standard_normal((p, p)))  # h -> Q h, W -> W Q^T
    moved = nc_metrics(t(h @ q.T), t(perm[labels]), t(w_p @ q.T), t(b_p))
    assert set(moved) == set(base)
    for key, value in base.items():
        assert moved[key] == pytest.approx(value, rel=1e-8, abs=1e-10), key


def test_streaming_equals_one_shot_and_keeps_tiny_within_class_spread() -> None:
    rng = np.random.default_rng(4)
    c, p = 3, 5
    etf = simplex_etf(c, p, rng)
    labels = np.repeat(np.arange(c), 50)
    rng.shuffle(labels)
    # near-collapsed features far from the origin: raw second moments would cancel to rounding noise here
    h = 1e4 + etf[labels] + 1e-5 * rng.standard_normal((len(labels), p))
    w = etf.copy()
    one = nc_metrics(t(h), t(labels), t(w), chunk_size=10_000)
    small = nc_metrics(t(h), t(labels), t(w), chunk_size=7)
    ref = reference(h - 1e4, labels, w, None)  # the reference centres first, exactly
    for key in KEYS:
        assert small[key] == pytest.approx(one[key], rel=1e-6, abs=1e-10), key
    assert small["nc1"] == pytest.approx(one["nc1"], rel=1e-6)
    assert one["nc1"] == pytest.approx(ref["nc1"], rel=1e-4)
    assert 0 < one["nc1"] < 1e-8


def test_stream_api_and_accumulator_counts() -> None:
    rng = np.random.default_rng(5)
    h, labels, w, b = clustered(c=3, n=8, p=4, noise=1.0, rng=rng)
    parts = [(t(h[i : i + 5]), t(labels[i : i + 5])) for i in range(0, len(h), 5)]
    out = nc_metrics_stream(lambda: iter(parts), t(w), t(b))
    assert out["nc1"] == pytest.approx(nc_metrics(t(h), t(labels), t(w), t(b))["nc1"], rel=1e-10)
    acc = NCAccumulator(3, 4)
    for x, y in parts:
        acc.update(x, y)
    assert acc.counts.tolist() == [8.0, 8.0, 8.0]


BAD = [
    ("label out of range", lambda h, y, w: (h, y + 1, w), "labels must lie in"),
    ("missing class", lambda h, y, w: (h, y.clamp(max=1), w), "have no samples"),
    ("rows differ", lambda h, y, w: (h[:-1], y, w), "rows"),
    ("weight shape", lambda h, y, w: (h, y, w[:, :-1]), "weight must be"),
]


@pytest.mark.parametrize(("what", "break_", "needle"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_raises(what, break_, needle) -> None:
    h, y, w = torch.randn(12, 4), torch.arange(3).repeat(4), torch.randn(3, 4)
    with pytest.raises(ValueError, match=needle):
        nc_metrics(*break_(h, y, w))


# ----------------------------------------------------------------------------------------------------------------
# time, half-rise, slopes, time map


@pytest.mark.parametrize("schedule", ["constant", "step", "cosine"])
def test_effective_time_sums_the_schedulers_lr(schedule: str) -> None:
    from comparisons.engine.members import make_optimizer
    from comparisons.neural_collapse.curves import effective_time
    from tests.conftest import compose_cfg

    cfg = compose_cfg(["experiment=nc_suite", f"optim.schedule={schedule}", "optim.momentum=0.5", "train.steps=90"])
    opt, sched = make_optimizer(torch.nn.Linear(2, 2), cfg.optim, cfg.train.steps)
    lrs = []
    for _ in range(cfg.train.steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if sched is not None:
            sched.step()
    expected = np.concatenate([[0.0], np.cumsum(lrs)]) / (1 - 0.5)
    got = effective_time(np.arange(91), cfg.optim, 90)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert effective_time(np.array([0.5]), cfg.optim, 90)[0] == pytest.approx(expected[1] / 2)


def test_half_rise_times_of_sigmoids() -> None:
    from comparisons.neural_collapse.curves import half_rise_times

    t = np.concatenate([[0.0], np.geomspace(0.01, 1e4, 400)])
    t_half = np.array([0.5, 3.0, 40.0])
    with np.errstate(divide="ignore"):
        m = 1.0 + 5.0 / (1.0 + (t[:, None] / t_half) ** -4.0)  # (T, 3): m(0) = 1, rises by 5 at t_half
    got = half_rise_times(t, np.column_stack([m, np.full(len(t), 2.0)]))
    np.testing.assert_allclose(got[:3], t_half, rtol=2e-3)
    assert np.isnan(got[3])  # a flat mode has not risen


@pytest.mark.parametrize("depth", [2, 3])
def test_half_rise_time_matches_the_mode_ode(depth: int) -> None:
    from comparisons.engine.metrics import first_crossing
    from comparisons.neural_collapse.theory import half_rise_time
    from linear_models.deep_linear import mode_strength

    s, u0 = 0.8, 1e-3
    t = np.concatenate([[0.0], np.geomspace(1e-2, 2e3, 4000)])
    q = mode_strength(t, s, u0, depth=depth)[:, 0] ** ((depth - 1) / depth)
    expected = first_crossing(t, (q - q[0]) / (s ** ((depth - 1) / depth) - q[0]), 0.5, "log")
    assert half_rise_time(s, u0, depth) == pytest.approx(expected, rel=1e-3)
    assert half_rise_time(0.4, u0, depth) > half_rise_time(s, u0, depth)  # smaller modes rise later
    assert np.isnan(half_rise_time(0.5, 0.6, depth))  # u0 > s: no rise


def test_terminal_slope_and_r_squared() -> None:
    from comparisons.neural_collapse.curves import r_squared, terminal_slope

    t = np.linspace(0.0, 100.0, 51)
    assert terminal_slope(t, 3.0 * np.exp(-0.02 * t) * (t > 50) + 5 * (t <= 50), 51.0) == pytest.approx(-0.02)
    assert np.isnan(terminal_slope(t[:2], np.ones(2), 0.0))
    r2, k = r_squared([0.0, 1.0, 2.0], [1.0, 3.0, 5.0])
    assert (r2, k) == (pytest.approx(1.0), pytest.approx(2.0))
    assert r_squared([0.0, 1.0, 2.0], [0.0, 1.0, 0.0])[0] == pytest.approx(0.0)


def test_fit_time_map_recovers_a_time_scale() -> None:
    from comparisons.neural_collapse.curves import fit_time_map

    t_th = np.linspace(0.0, 50.0, 501)
    loss_th = 0.5 * np.exp(-t_th / 4.0) + 0.01
    t_obs = np.geomspace(0.05, 18.0, 40)
    t_obs = np.concatenate([[0.0], t_obs])
    a, b = fit_time_map(t_obs, 0.5 * np.exp(-2.5 * t_obs / 4.0) + 0.01, t_th, loss_th)
    assert a == pytest.approx(2.5, rel=1e-3)
    assert abs(b) < 1e-2


# ----------------------------------------------------------------------------------------------------------------
# score() on constructed curves with known answers


def _synthetic_run(
    twin_order: str = "same",
    control_nc1: float = 5.0,
    losses=("mse", "ce"),
    inits=(0.5, 0.25, 1.0),
    seed: int = 0,
    noise: float = 0.0,
    theory_nc1: str = "same",
):
    """Curves of a 3 wd x 3 init sweep (mse and ce), theory and controls, with known scores.

    tau = 0.1 * step. Four modes with predicted half-rise tau [2, 4, 8, 16]; real modes rise 1.5x later (same order),
    the twin's in ``twin_order``, the permuted-means twin's reversed. NC1 (both forms) = 0.3 * init * exp(-2 wd tau) for
    real and theory; the twin's decays at 3 wd. The train loss equals the theory's. ``seed`` sets ``cfg.seed`` (the
    null draws) and the seed's observation noise: log10 NC1 of real and twin and the log mode half-rise times move by
    ``noise`` standard normal draws. ``theory_nc1="reversed"`` runs the UFM's NC1 curve backwards in time.
    """
    from comparisons.engine.members import eval_steps
    from comparisons.engine.phenomenon import Prediction
    from comparisons.engine.sweep import point_label
    from tests.conftest import compose_cfg

    cfg = compose_cfg(
        [
            "experiment=nc_mnist_mlp",
            "optim.schedule=constant",
            "optim.momentum=0.0",
            "optim.lr=0.1",
            "train.steps=1000",
            f"seed={seed}",
        ]
    )
    rng = np.random.default_rng(100 + seed)
    steps = np.array(eval_steps(1000, 50, "log"), dtype=np.float64)
    tau = 0.1 * steps
    pred = np.array([2.0, 4.0, 8.0, 16.0])
    rows, members, points = [], {}, {}

    def add(member, metric, values, at=steps):
        rows.extend(
            {"member": member, "step": s, "time": 0.1 * s, "metric": metric, "value": v}
            for s, v in zip(at, values, strict=True)
        )

    def modes(member, half):
        for a, h in enumerate(half):
            add(member, f"train_mode_{a + 1}", 1.0 + 5.0 / (1.0 + (np.maximum(tau, 1e-9) / h) ** -4.0))

    def jitter(values):
        return values * 10 ** (noise * rng.standard_normal(len(values)))

    for init in inits:
        for wd in (0.01, 0.0, 0.02):
            label = point_label({"model.init_scale": init, "optim.weight_decay": wd})
            points[label] = {"half_rise_tau": pred.tolist(), "s": [4.0, 3.0, 2.0, 1.0], "wd": wd, "init_scale": init}
            theory = f"theory:{label}"
            th_nc1 = 0.3 * init * np.exp(-2 * wd * tau)
            add(theory, "train_nc1", th_nc1[::-1] if theory_nc1 == "reversed" else th_nc1)
            add(theory, "train_nc1_tr", 0.3 * init * np.exp(-2 * wd * tau))
            add(theory, "train_loss", 0.5 * np.exp(-tau / 5.0) + 0.01)
            for loss in losses:
                for role in ("real", "twin"):
                    name = f"{role}:loss={loss},{label}"
                    members[name] = {
                        "role": role,
                        "loss": loss,
                        "control": None,
                        "theory": theory,
                        "point": label,
                        "wd": wd,
                        "init_scale": init,
                        "factor": 1.0,
                    }
                    k = 2.0 if role == "real" else 3.0  # trace-form rate; pinv NC1 decays at 2 wd for both
                    add(name, "train_nc1_tr", 0.3 * init * np.exp(-k * wd * tau))
                    add(name, "train_nc1", jitter(0.3 * init * np.exp(-(k if role == "twin" else 2.0) * wd * tau)))
                    add(name, "test_nc1", np.full(len(tau), 0.1))
                    add(name, "train_loss", 0.5 * np.exp(-tau / 5.0) + 0.01)
                    order = (
                        pred[::-1]
                        if role == "twin" and twin_order != "same"
                        else pred * (1.5 if role == "real" else 1.0)
                    )
                    modes(name, jitter(order))
    first = point_label({"model.init_scale": 0.5, "optim.weight_decay": 0.01})
    for role, control in (("real", "random_labels"), ("twin", "permuted_means")):
        name = f"{role}:loss=mse,{first},control={control}"
        members[name] = {
            "role": role,
            "loss": "mse",
            "control": control,
            "theory": f"theory:{first}",
            "point": first,
            "wd": 0.01,
            "init_scale": 0.5,
            "factor": 1.0,
        }
        add(name, "train_nc1", np.full(len(tau), 0.05))
        add(name, "test_nc1", np.full(len(tau), control_nc1))
        modes(name, pred[::-1])
    curves = pd.DataFrame(rows)
    return (
        curves,
        Prediction(
            curves=curves[curves.member.str.startswith("theory")], numbers={"members": members, "points": points}
        ),
        cfg,
    )


def _judged(seeds=(0, 1, 2), **kw):
    """Score the synthetic run for each seed, compute the noise ceilings between seed pairs, and judge them."""
    import itertools
    from pathlib import Path

    from comparisons.engine.aggregate import judgement
    from comparisons.engine.config import to_container
    from comparisons.engine.rundir import Run
    from comparisons.neural_collapse.scores import ceiling, score

    summaries, runs = [], []
    for seed in seeds:
        curves, prediction, cfg = _synthetic_run(seed=seed, **kw)
        out = score(curves, prediction, cfg)
        summaries.append(
            {
                "seed": seed,
                "scores": out.scores,
                "criteria": {k: list(v) for k, v in out.criteria.items()},
                "nulls": out.nulls,
                "kinds": out.kinds,
            }
        )
        runs.append(Run(Path(f"seed_{seed}"), to_container(cfg), curves, {"prediction": prediction.numbers}))
    ceilings = [ceiling(a, b) for a, b in itertools.permutations(runs, 2)]
    return judgement(summaries, ceilings), summaries, ceilings


def test_score_recovers_constructed_truth_and_passes_its_criteria() -> None:
    from comparisons.engine import stats
    from comparisons.neural_collapse.scores import score

    curves, prediction, cfg = _synthetic_run()
    out = score(curves, prediction, cfg)
    s = out.scores
    assert s["mse_mode_spearman_real"] == pytest.approx(1.0)
    assert s["mse_halfrise_logcorr_twin"] == pytest.approx(1.0)
    assert s["mse_halfrise_logratio_real"] == pytest.approx(np.log10(1.5), abs=0.02)  # real modes rise 1.5x late
    assert s["mse_halfrise_logratio_twin"] == pytest.approx(0.0, abs=0.02)
    assert s["mse_nc1_logrmse_real"] == pytest.approx(0.0, abs=1e-3)
    assert s["mse_nc1_neg_logrmse_real"] == -s["mse_nc1_logrmse_real"]
    assert s["mse_nc1_logrmse_twin"] > 0.05  # the twin decays at 3 wd, not 2 wd
    assert s["mse_nc1_slope_r2_real"] == pytest.approx(1.0)
    assert s["mse_nc1_slope_per_wd_real"] == pytest.approx(2.0, rel=1e-6)
    assert s["mse_nc1_slope_per_wd_twin"] == pytest.approx(3.0, rel=1e-6)
    assert s["mse_nc1pinv_slope_per_wd_real"] == pytest.approx(2.0, rel=1e-6)
    assert s["theory_nc1_slope_per_wd"] == pytest.approx(2.0, rel=1e-6)
    assert s["mse_init_nc1_trend_real"] == pytest.approx(1.0)
    assert s["mse_init_end_logrmse_twin_real"] == pytest.approx(0.0, abs=1e-12)  # wd = 0: both constant
    assert s["mse_end_train_nc1_real"] == pytest.approx(0.3 * 0.5 * np.exp(-2 * 0.01 * 100.0))
    assert {"ce_mode_spearman_real", "ce_nc1_slope_r2_twin"} <= set(s)
    assert out.negative_controls["random_labels"]["rejected"]
    assert out.negative_controls["random_labels"]["score"] == pytest.approx(np.log10(50.0))
    assert out.negative_controls["permuted_means"]["rejected"]
    assert out.negative_controls["permuted_means"]["score"] == pytest.approx(-1.0)
    assert any("outside the theory" in n for n in out.notes)
    # criteria: the absolute ones pass on this run's values; the NC1 one is on the normalised scale (needs seeds)
    assert out.criteria["mse_nc1_neg_logrmse_real"] == (">=", 0.5, "normalised")
    checked = stats.passes(s, out.criteria)
    assert checked == {
        "mse_mode_spearman_twin": True,
        "mse_nc1_neg_logrmse_real": None,
        "mse_end_train_nc1_real": True,
        "mse_nc1_slope_r2_real": True,
    }
    # every criterion but the end value carries a seeded permutation null, all of whose draws do worse than the truth
    assert set(out.nulls) >= {"mse_mode_spearman_twin", "mse_nc1_neg_logrmse_real", "mse_nc1_slope_r2_real"}
    assert "mse_end_train_nc1_real" not in out.nulls
    for name in ("mse_mode_spearman_twin", "mse_nc1_neg_logrmse_real"):
        assert len(out.nulls[name]) == 999
    assert np.mean(out.nulls["mse_mode_spearman_twin"]) == pytest.approx(0.0, abs=0.1)
    assert max(out.nulls["mse_nc1_neg_logrmse_real"]) < s["mse_nc1_neg_logrmse_real"] - 0.1
    assert out.kinds["mse_mode_spearman_twin"] == "correlation" and "mse_nc1_neg_logrmse_real" not in out.kinds
    assert out.nulls == score(curves, prediction, cfg).nulls  # seeded: the same draws every time


def test_spearman_null_is_the_spearman_of_permuted_predictions() -> None:
    from scipy import stats as sps

    from comparisons.neural_collapse.scores import spearman_null

    pred, seen = np.array([2.0, 4.0, 8.0, 16.0, 3.0]), np.array([3.0, 1.0, 9.0, 20.0, 5.0])
    draws = spearman_null(pred, seen, 50, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    expected = [sps.spearmanr(pred[rng.permutation(5)], seen)[0] for _ in range(50)]
    np.testing.assert_allclose(draws, expected, rtol=1e-12)


def test_prediction_equal_to_observation_agrees_over_seeds() -> None:
    judged, summaries, ceilings = _judged(noise=0.02, losses=("mse",))
    ev = judged["evidence"]
    assert judged["verdict"] == "agree", judged["verdict_reason"]
    for name in ("mse_mode_spearman_twin", "mse_nc1_neg_logrmse_real", "mse_nc1_slope_r2_real"):
        assert ev[name]["call"] == "pass" and ev[name]["p"] < 0.05, name
    nc1 = ev["mse_nc1_neg_logrmse_real"]
    assert nc1["ceiling"] == pytest.approx(-0.028, abs=0.01)  # two seeds differ by their noise, sqrt(2) x 0.02 dec
    # the truth differs from each seed by one seed's noise, another seed by two: it beats the ceiling (normalised > 1)
    assert nc1["value"] > nc1["ceiling"] > nc1["null_mean"]
    assert nc1["normalised_lo"] > 1.0 and nc1["normalised"] < 1.5
    assert len(ceilings) == 6 and {"mse_mode_spearman_twin", "mse_nc1_neg_logrmse_real"} <= set(ceilings[0])


@pytest.mark.parametrize(
    "wrong",
    [{"twin_order": "reversed"}, {"theory_nc1": "reversed"}],
    ids=["mode order reversed", "UFM NC1 reversed in time"],
)
def test_a_permuted_prediction_never_agrees(wrong) -> None:
    from comparisons.engine import stats

    for seeds in ((0, 1, 2), (3, 4, 5)):
        judged, summaries, _ = _judged(seeds=seeds, noise=0.02, losses=("mse",), inits=(0.5,), **wrong)
        assert judged["verdict"] == "disagree", judged["verdict_reason"]
        failing = [k for k, e in judged["evidence"].items() if e["call"] == "fail"]
        if "twin_order" in wrong:
            assert failing == ["mse_mode_spearman_twin"]
            assert stats.passes(summaries[0]["scores"], summaries[0]["criteria"])["mse_mode_spearman_twin"] is False
        else:
            assert failing == ["mse_nc1_neg_logrmse_real"]
            assert judged["evidence"]["mse_nc1_neg_logrmse_real"]["normalised_hi"] < 0.5


def test_one_seed_is_inconclusive_and_an_unrejected_control_is_noted() -> None:
    from comparisons.neural_collapse.scores import score

    judged, _, ceilings = _judged(seeds=(0,), losses=("mse",), inits=(0.5,))
    assert judged["verdict"] == "inconclusive" and ceilings == []
    curves, prediction, cfg = _synthetic_run(control_nc1=0.1, losses=("mse",), inits=(0.5,))  # no test difference
    out = score(curves, prediction, cfg)
    assert not out.negative_controls["random_labels"]["rejected"]
    assert any("random_labels not rejected" in n for n in out.notes)


# ----------------------------------------------------------------------------------------------------------------
# the UFM voice, the controls and one tiny end-to-end run


def test_ufm_flow_rescaling_is_the_per_sample_flow() -> None:
    from comparisons.neural_collapse.theory import ufm_flow

    rng = np.random.default_rng(6)
    p, c, n, wd, rho = 5, 3, 12, 0.05, 12.0
    h0, w0 = rng.standard_normal((p, n)), 0.5 * rng.standard_normal((c, p))
    y = np.eye(c)[:, np.arange(n) % c]
    tau = np.array([0.0, 0.4, 1.0])
    flow = ufm_flow(h0, w0, None, y, tau, wd, rho, max_steps=50)
    h, w, dt = h0.copy(), w0.copy(), flow["dt"]  # direct Euler on dH = -(rho/N) W^T R - wd H, dW = -(1/N) R H^T - wd W
    for _ in range(flow["steps"]):
        r = w @ h - y
        h, w = h - dt * (rho / n * w.T @ r + wd * h), w - dt * (r @ h.T / n + wd * w)
    np.testing.assert_allclose(flow["H"][-1], h, rtol=1e-10)
    np.testing.assert_allclose(flow["W"][-1], w, rtol=1e-10)
    np.testing.assert_allclose(flow["H"][0], h0)


def test_ufm_terminal_rate_is_two_wd() -> None:
    """docs/theory.md 7.2 [D*]: tr(Sigma_W)/tr(Sigma_B) of the UFM decays like exp(-2 wd tau) late in training."""
    from comparisons.neural_collapse.curves import r_squared, terminal_slope
    from comparisons.neural_collapse.theory import ufm_flow

    rng = np.random.default_rng(7)
    p, c, n = 6, 3, 8
    labels = np.arange(c * n) % c
    y = np.eye(c)[:, labels] - 1.0 / c
    h0, w0 = rng.standard_normal((p, c * n)), 0.5 * rng.standard_normal((c, p))
    tau = np.linspace(0.0, 300.0, 31)
    wds, slopes = [0.005, 0.01, 0.02], []
    for wd in wds:
        flow = ufm_flow(h0, w0, np.zeros(c), y, tau, wd, rho=float(c * n), max_steps=6000)
        nc1 = [nc_metrics(t(h.T), t(labels), t(w))["nc1_tr"] for h, w in zip(flow["H"], flow["W"], strict=True)]
        slopes.append(terminal_slope(tau, np.array(nc1), 150.0))
    r2, k = r_squared(wds, slopes)
    assert r2 > 0.999
    assert -k == pytest.approx(2.0, rel=0.05)


def _clusters_task(n_train: int = 60, n_test: int = 36, c: int = 3, d: int = 10):
    from tasks import Task

    g = torch.Generator().manual_seed(0)
    means = 2.0 * torch.randn(c, d, generator=g)

    def split(n):
        labels = torch.arange(n) % c  # balanced
        labels = labels[torch.randperm(n, generator=g)]
        x = means[labels] + torch.randn(n, d, generator=g)
        return x, torch.nn.functional.one_hot(labels, c).float() - 1.0 / c, labels

    x_tr, y_tr, l_tr = split(n_train)
    x_te, y_te, l_te = split(n_test)
    meta = {
        "input_shape": (d,),
        "out_dim": c,
        "num_classes": c,
        "target_scale": 1.0,
        "n_train": n_train,
        "n_test": n_test,
        "target": "centered_onehot",
    }
    return Task("clusters", x_tr, y_tr, x_te, y_te, l_tr, l_te, meta)


def test_controls_shuffle_labels_and_permute_class_means() -> None:
    import tasks
    from comparisons.engine.members import Context, streams
    from comparisons.engine.sweep import build_members
    from comparisons.neural_collapse.phenomenon import _controls
    from tests.conftest import compose_cfg

    cfg = compose_cfg(["experiment=nc_suite", "model.width=8"])
    task = _clusters_task()
    original = tasks.build
    tasks.build = lambda *a, **k: task
    try:
        members = build_members(cfg, Context(cfg, torch.device("cpu"), torch.float32, None, streams(0)))
    finally:
        tasks.build = original
    real_ctrl, twin_ctrl = _controls(members, cfg)
    assert real_ctrl.point["control"] == "random_labels" and twin_ctrl.point["control"] == "permuted_means"
    lab, shuffled = task.labels_train, real_ctrl.task.labels_train
    assert torch.equal(torch.bincount(lab), torch.bincount(shuffled)) and not torch.equal(lab, shuffled)
    assert torch.equal(real_ctrl.task.labels_test, task.labels_test)
    wt = members[1].task  # the whitened twin task
    mean = lambda x, ls: torch.stack([x[ls == k].mean(0) for k in range(3)])  # noqa: E731
    moved = mean(twin_ctrl.task.x_train, wt.labels_train)
    orig = mean(wt.x_train, wt.labels_train)
    shifts = [s for s in (1, 2) if all(torch.allclose(moved[k], orig[(k + s) % 3], atol=1e-4) for k in range(3))]
    assert len(shifts) == 1  # a cyclic shift of the class means: no class keeps its own
    assert torch.allclose(twin_ctrl.model.get_classifier().weight, members[1].model.get_classifier().weight)


def test_tiny_run_end_to_end(tmp_path, monkeypatch) -> None:
    import tasks
    from comparisons.engine.run import run
    from comparisons.engine.rundir import is_complete, load_run
    from comparisons.neural_collapse import figures as nc_figures
    from tests.conftest import compose_cfg

    cfg = compose_cfg(
        [
            "experiment=nc_suite",
            f"paths.runs_root={tmp_path}",
            "train.progress=off",
            "model.width=8",
            "train.steps=40",
            "train.batch_size=null",
            "train.eval_points=6",
            "phenomenon.n_eval=60",
            "phenomenon.losses=[mse,ce]",
            "phenomenon.ufm_per_class=10",
            "phenomenon.theory_points=8",
            "sweep.grid={optim.weight_decay:[0.01,0.0,0.02]}",
        ]
    )
    task = _clusters_task(c=4)
    monkeypatch.setattr(tasks, "build", lambda *a, **k: task)
    monkeypatch.setattr(nc_figures, "FORMATS", ("png",))  # PDFs double the drawing time
    summary = run(cfg)
    out = load_run(next(tmp_path.rglob("summary.json")).parent)
    assert is_complete(out.path)
    members = set(out.curves.member)
    assert {
        "real:loss=mse,weight_decay=0.01",
        "twin:loss=ce,weight_decay=0.0",
        "theory:weight_decay=0.01",
        "real:loss=mse,weight_decay=0.01,control=random_labels",
        "twin:loss=mse,weight_decay=0.01,control=permuted_means",
    } <= members
    metrics = set(out.curves.metric)
    assert {"train_nc1", "test_nc4", "train_mode_1", "train_sv_means_1", "pred_mode_1", "train_acc"} <= metrics
    named = set(summary["scores"]) | set(summary["omitted_scores"])  # non-finite scores are listed as omitted
    assert {
        "mse_mode_spearman_twin",
        "ce_nc1_logrmse_real",
        "mse_end_test_nc1_real",
        "mse_nc1_slope_r2_real",
        "theory_nc1_slope_per_wd",
    } <= named
    assert not any("init" in k for k in named)  # no init-scale sweep, no init-sweep scores
    assert summary["scores"]["mse_end_train_nc1_real"] > 0
    assert set(summary["negative_controls"]) == {"random_labels", "permuted_means"}
    assert summary["verdict"] in ("agree", "disagree", "inconclusive")
    assert {p.name for p in (out.path / "figures").iterdir()} >= {"nc_curves.png", "nc_modes.png"}


def test_experiment_presets_compose() -> None:
    from hydra import compose, initialize_config_dir

    from comparisons.engine.config import ConfigError, validate
    from comparisons.neural_collapse.scores import knobs
    from tests.conftest import ROOT

    names = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("nc_*.yaml"))
    assert {"nc_suite", "nc_mnist_mlp", "nc_fashion_mlp", "nc_cifar_resnet", "nc_cifar_resnet_paper"} <= set(names)
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf"), job_name="test"):
        for name in names:
            cfg = validate(compose(config_name="config", overrides=[f"experiment={name}"]))
            assert cfg.phenomenon["name"] == "neural_collapse" and knobs(cfg)["losses"], name
            assert cfg.optim.momentum == 0.9 and cfg.optim.schedule == "step", name  # the published protocol
        with pytest.raises(ConfigError, match="phenomenon.n_evl: unknown neural_collapse knob; did you mean"):
            validate(compose(config_name="config", overrides=["experiment=nc_suite", "+phenomenon.n_evl=3"]))
