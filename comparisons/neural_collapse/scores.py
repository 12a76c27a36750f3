"""Scores of the neural-collapse comparison (docs/theory.md 7): pure functions of saved curves and the prediction.

Every score is computed per loss (``mse``: the theory's domain; ``ce``: scored and labelled outside it) and per
voice (``real``, ``twin``); names read ``<loss>_<score>_<voice>``. Times are effective times tau (docs/theory.md 2.1;
:func:`effective_time`).

- ``mode_spearman``: Spearman correlation, over the class-space modes u_a of the twin's Sigma_yx, of the predicted
  half-rise times of ||M u_a|| (deep linear net, docs/theory.md 3.2 / 7.3) and the observed ones. Median over points.
- ``halfrise_logcorr``: Pearson correlation of log predicted and log observed half-rise times; ``halfrise_logratio``:
  the median over modes of log10(observed / predicted) half-rise time (0 = on time). Medians over points.
- ``nc1_logrmse``: RMSE in decades (log10) between observed train NC1 and the UFM's, after one affine time map
  tau_theory = a tau + b fitted on the normalised log train loss only. Median over points. ``nc1_neg_logrmse`` is
  minus it (higher is better), the form that carries the null, the ceiling and the criterion: the engine reads a
  criterion's operator as the direction of "better" for the p-value, so a judged score must rise with agreement.
- ``nc1_slope_r2``: R^2 of the linear fit of the terminal slope d ln NC1 / d tau against wd over a sweep of >= 3
  weight decays (points that differ only in wd); ``nc1_slope_per_wd``: minus the fitted slope of that line. Here NC1
  is the quotient form tr(Sigma_W) / tr(Sigma_B) (``nc1_tr``), the quantity proportional to ||H - Hbar||^2 for which
  docs/theory.md 7.2 derives NC1 ~ exp(-2 wd tau): the UFM predicts 2. ``theory_nc1_slope_per_wd`` is the same fit on
  the UFM curves; ``nc1pinv_slope_r2`` / ``nc1pinv_slope_per_wd`` repeat it for tr(Sigma_W Sigma_B^+)/C.
- ``init_end_logrmse_twin_real``: RMSE in decades between twin and real end-of-training NC1, NC2 (ETF error) and
  NC3 over an init-scale sweep at wd = 0; ``init_nc1_trend``: Spearman of end NC1 against init scale (the UFM
  predicts incomplete collapse growing with init scale, +1).
- ``end_<split>_<metric>``: end-of-training values at the first sweep point.

Negative controls (first loss, first point): ``random_labels`` (score: log10 of the end test NC1 of a real net
trained on shuffled labels over that of the real net; rejected when the ratio is >= ``control_ratio_min``) and
``permuted_means`` (score: the mode Spearman of a twin trained on permuted class means; rejected when it is below
``mode_spearman_min``).

Criteria, from MSE scores only (``criteria``; the verdict is the engine's, :mod:`comparisons.engine.stats`: every
criterion's seed interval on its passing side and every null beaten at p < 0.05):

- ``mse_mode_spearman_twin >= mode_spearman_min`` (0.5; kind "correlation", Fisher-z seed interval). Null: the same
  Spearman with the predicted half-rise times permuted across the modes (``null_draws`` seeded draws per member,
  median over points draw by draw), so the observed order must follow the predicted one better than chance. The
  threshold is absolute, not normalised: the noise ceiling (seed b's twin half-rise times standing in for the
  prediction of seed a's, mode by singular-value rank) is reported but is not a bound here, because every seed draws
  its own data subset and predicts from its own Sigma_yx, and when the singular values are nearly degenerate (the
  MNIST subset's lie within ~15% of each other) the a-th mode is a different direction in each seed: the span
  between null and ceiling can then be near zero and the normalised score ill-posed.
- ``mse_nc1_neg_logrmse_real >= nc1_normalised_min`` (0.5) on the normalised scale: at least half-way from the null
  (0) to the noise ceiling (1). Null: the UFM's time-mapped log NC1 values shuffled across the observed eval points
  (same values and same level, no temporal correspondence), ``null_draws`` seeded draws. Ceiling: seed b's real NC1
  curve as the prediction of seed a's, after the same affine time map fitted on the two train losses. An absolute
  "within one decade" threshold had no reference (one seed read 1.01 decades against 1.0); the null and the ceiling
  give the decade its scale: how much better than a curve with the right values and no timing, against how close
  two seeds of the real net come to each other.
- ``mse_end_train_nc1_real <= collapsed_nc1_max`` (0.5): the real net's train features have collapsed at the end
  (within-class spread well below between-class spread). An absolute property of the observation, no null.
- with a wd sweep: ``mse_nc1_slope_r2_real >= slope_r2_min`` (0.8). Null: the weight decays permuted within each
  init-scale group (the mean R^2 over groups recomputed per draw). With three weight decays there are only six
  orderings per group and R^2 is the same for an order and its reverse, so this null is weak by construction and the
  criterion rarely beats it: three points cannot establish a linear law.

The negative controls are kept beside the verdict (a control that is not rejected is noted); the engine's verdict
does not read them.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from comparisons.engine import stats as evidence_stats
from comparisons.engine.config import RunCfg, phenomenon_knobs
from comparisons.engine.phenomenon import Outcome, Prediction
from comparisons.engine.rundir import Run
from comparisons.neural_collapse.curves import (
    effective_time,
    fit_time_map,
    half_rise_times,
    member_optim,
    r_squared,
    terminal_slope,
)

__all__ = ["ceiling", "knobs", "score"]

RETIRED = {"nc1_logrmse_max"}  # knobs of earlier runs' config.yaml, read and ignored (now ``nc1_normalised_min``)
CORRELATIONS = ("mode_spearman", "halfrise_logcorr", "init_nc1_trend")  # kind "correlation": Fisher-z intervals
END_METRICS = ("nc1", "cdnv", "nc2_etf_error", "nc2_equinorm_means", "nc2_equiangular_means", "nc3", "nc4")
INIT_METRICS = ("nc1", "nc2_etf_error", "nc3")


def knobs(cfg: RunCfg | None) -> dict[str, Any]:
    """The phenomenon's knobs: conf/phenomenon/neural_collapse.yaml overridden by ``cfg.phenomenon``.

    Raises:
        ConfigError: An unknown key, with the closest known ones (``RETIRED`` keys of old run dirs are ignored).
    """
    return phenomenon_knobs("neural_collapse", None if cfg is None else cfg.phenomenon, tuple(RETIRED))


def score(curves: pd.DataFrame, prediction: Prediction, cfg: RunCfg) -> Outcome:
    """Scores, criteria, verdict and negative controls of a neural-collapse run (module docstring)."""
    kn = knobs(cfg)
    info = prediction.numbers.get("members", {})
    points = prediction.numbers.get("points", {})
    table = _wide(curves)
    per: dict[str, dict[str, float]] = {}
    per_null: dict[str, dict[str, np.ndarray]] = {}
    for name, meta in info.items():
        if name in table:
            rng = np.random.default_rng([int(cfg.seed or 0), zlib.crc32(name.encode())])
            per[name], per_null[name] = _member_scores(
                table[name], table.get(meta["theory"]), meta, points.get(meta["point"], {}), cfg, kn, rng
            )
    scores: dict[str, float] = {}
    nulls: dict[str, list[float]] = {}
    losses = list(dict.fromkeys(m["loss"] for m in info.values()))
    wd_sweep = _groups_with(info, "wd", 3)  # sweep scores exist only with the sweep they need
    init_sweep = _groups_with({n: m for n, m in info.items() if m.get("wd") == 0}, "init_scale", 2)
    for loss in losses:
        for role in ("real", "twin"):
            mine = {
                n: per[n]
                for n, m in info.items()
                if n in per and m["loss"] == loss and m["role"] == role and not m["control"]
            }
            if not mine:
                continue
            for key in ("mode_spearman", "halfrise_logcorr", "halfrise_logratio", "nc1_logrmse", "nc1_neg_logrmse"):
                scores[f"{loss}_{key}_{role}"] = _median([s[key] for s in mine.values()])
            for key in ("mode_spearman", "nc1_neg_logrmse"):
                draws = _median_draws([per_null[n].get(key) for n in mine])
                if draws is not None and math.isfinite(scores[f"{loss}_{key}_{role}"]):
                    nulls[f"{loss}_{key}_{role}"] = draws
            ref = next(iter(mine))
            for key, value in per[ref].items():
                if key.startswith("end_"):
                    scores[f"{loss}_{key}_{role}"] = value
            for tag, key in (("nc1", "slope"), ("nc1pinv", "slope_pinv")) if wd_sweep else ():
                sub, slopes = {n: info[n] for n in mine}, {n: s[key] for n, s in mine.items()}
                r2, k = _slope_sweep(sub, slopes)
                scores[f"{loss}_{tag}_slope_r2_{role}"], scores[f"{loss}_{tag}_slope_per_wd_{role}"] = r2, -k
                if math.isfinite(r2):
                    rng = np.random.default_rng([int(cfg.seed or 0), zlib.crc32(f"{loss}_{tag}_{role}".encode())])
                    draws = _slope_null(sub, slopes, int(kn["null_draws"]), rng)
                    if draws:
                        nulls[f"{loss}_{tag}_slope_r2_{role}"] = draws
            if init_sweep:
                scores[f"{loss}_init_nc1_trend_{role}"] = _init_trend({n: info[n] for n in mine}, mine)
        if init_sweep:
            scores[f"{loss}_init_end_logrmse_twin_real"] = _init_agreement(info, per, loss)
    theory = {
        n: _theory_scores(table[n], cfg, kn, points.get(n.partition(":")[2], {}))
        for n in table
        if n.startswith("theory")
    }
    if theory:
        first = next(iter(theory.values()))
        scores["theory_end_train_nc1"] = first["end_train_nc1"]
        by_point = {
            n: {k: points.get(n.partition(":")[2], {}).get(k, math.nan) for k in ("wd", "init_scale")} for n in theory
        }
        if wd_sweep:
            r2, k = _slope_sweep(by_point, {n: s["slope"] for n, s in theory.items()})
            scores["theory_nc1_slope_r2"], scores["theory_nc1_slope_per_wd"] = r2, -k
        if init_sweep:
            scores["theory_init_nc1_trend"] = _init_trend(by_point, {n: s for n, s in theory.items()})
    controls, notes = _controls(info, per, table, kn, losses[0] if losses else "mse")
    criteria: dict[str, tuple] = {
        "mse_mode_spearman_twin": (">=", float(kn["mode_spearman_min"])),
        "mse_nc1_neg_logrmse_real": (">=", float(kn["nc1_normalised_min"]), "normalised"),
        "mse_end_train_nc1_real": ("<=", float(kn["collapsed_nc1_max"])),
    }
    if math.isfinite(scores.get("mse_nc1_slope_r2_real", math.nan)):
        criteria["mse_nc1_slope_r2_real"] = (">=", float(kn["slope_r2_min"]))
    kinds = {k: "correlation" for k in scores if any(c in k for c in CORRELATIONS)}
    notes += [f"negative control {name} not rejected: {c['note']}" for name, c in controls.items() if not c["rejected"]]
    if "ce" in losses:
        notes.append(
            "ce_* scores are outside the theory's exact domain (UFM and deep linear nets assume MSE, "
            "docs/theory.md 7.2); they are reported, not used in the verdict"
        )
    headline = {
        "predicted": f"ETF, NC1~exp(-2 wd tau); modes s={_fmt_list(next(iter(points.values()), {}).get('s', []))}",
        "observed": f"NC1 real {scores.get('mse_end_train_nc1_real', math.nan):.2g}, "
        f"twin {scores.get('mse_end_train_nc1_twin', math.nan):.2g}"
        + (f" (CE real {scores.get('ce_end_train_nc1_real', math.nan):.2g})" if "ce" in losses else ""),
        "theory": f"mode rho {scores.get('mse_mode_spearman_real', math.nan):.2f}, "
        f"NC1 rmse {scores.get('mse_nc1_logrmse_real', math.nan):.2f} dec",
        "twin": f"mode rho {scores.get('mse_mode_spearman_twin', math.nan):.2f}",
    }
    return Outcome(
        scores=scores,
        negative_controls=controls,
        notes=notes,
        criteria=criteria,
        headline=headline,
        nulls=nulls,
        kinds=kinds,
    )


def ceiling(run_a: Run, run_b: Run) -> dict[str, float]:
    """The noise ceiling: seed b's observed side standing in for the prediction of seed a's (module docstring).

    For every loss and voice, over the members (not the controls) that both runs hold: ``mode_spearman`` of seed
    b's observed half-rise times against seed a's, mode by mode in singular-value rank (each seed's own Sigma_yx), and
    ``nc1_neg_logrmse`` of seed a's train NC1 against seed b's read through the affine time map fitted on the two
    train losses, exactly as the UFM is read. Medians over points, like the scores.
    """
    from omegaconf import OmegaConf

    from comparisons.engine.config import validate

    cfg_a = validate(OmegaConf.create(run_a.config))
    cfg_b = validate(OmegaConf.create(run_b.config))
    kn = knobs(cfg_a)
    info_a = run_a.summary.get("prediction", {}).get("members", {})
    info_b = run_b.summary.get("prediction", {}).get("members", {})
    wa, wb = _wide(run_a.curves), _wide(run_b.curves)
    per: dict[str, list[float]] = {}
    for name, meta in info_a.items():
        if meta["control"] or name not in info_b or name not in wa or name not in wb:
            continue
        ta, tb = _member_tau(wa[name], meta, cfg_a), _member_tau(wb[name], info_b[name], cfg_b)
        sa, sb = _seen_half_rise(wa[name], ta, kn), _seen_half_rise(wb[name], tb, kn)
        key = f"{meta['loss']}_{{}}_{meta['role']}"
        if sa is not None and sb is not None and len(sa) == len(sb):
            ok = np.isfinite(sa) & np.isfinite(sb) & (sa > 0) & (sb > 0)
            if ok.sum() >= 3 and np.ptp(sa[ok]) > 0 and np.ptp(sb[ok]) > 0:
                per.setdefault(key.format("mode_spearman"), []).append(float(stats.spearmanr(sb[ok], sa[ok])[0]))
        if {"train_loss", "train_nc1"} <= set(wa[name].columns) & set(wb[name].columns):
            fit = nc1_fit(ta, wa[name], tb, wb[name])
            if fit is not None:
                rmse = float(np.sqrt(np.mean((fit[0] - fit[1]) ** 2)))
                per.setdefault(key.format("nc1_neg_logrmse"), []).append(-rmse)
    return {k: _median(v) for k, v in per.items()}


def _wide(curves: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Member -> (step x metric) table; a repeated (step, metric) keeps its last value."""
    rows = curves.drop_duplicates(["member", "step", "metric"], keep="last")
    return {
        name: g.set_index(["step", "metric"])["value"].unstack().sort_index()
        for name, g in rows.groupby("member", sort=False)
    }


def _member_scores(
    obs: pd.DataFrame,
    th: pd.DataFrame | None,
    meta: dict[str, Any],
    point: dict[str, Any],
    cfg: RunCfg,
    kn: dict[str, Any],
    rng: np.random.Generator | None = None,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """A member's scores against its theory, and the permutation nulls of ``mode_spearman`` and ``nc1_neg_logrmse``."""
    optim = member_optim(cfg.optim, meta.get("optim", {}))
    tau = _member_tau(obs, meta, cfg)
    n_draws = int(kn["null_draws"])
    rng = rng if rng is not None else np.random.default_rng(0)
    out: dict[str, float] = {
        "mode_spearman": math.nan,
        "halfrise_logcorr": math.nan,
        "halfrise_logratio": math.nan,
        "nc1_logrmse": math.nan,
        "nc1_neg_logrmse": math.nan,
    }
    nulls: dict[str, np.ndarray] = {}
    pred = np.asarray(point.get("half_rise_tau", []), dtype=np.float64)
    seen = _seen_half_rise(obs, tau, kn)
    if seen is not None and len(pred) == len(seen):
        ok = np.isfinite(seen) & np.isfinite(pred) & (seen > 0) & (pred > 0)
        if ok.sum() >= 3 and np.ptp(seen[ok]) > 0 and np.ptp(pred[ok]) > 0:
            out["mode_spearman"] = float(stats.spearmanr(pred[ok], seen[ok])[0])
            out["halfrise_logcorr"] = float(np.corrcoef(np.log(pred[ok]), np.log(seen[ok]))[0, 1])
            nulls["mode_spearman"] = spearman_null(pred[ok], seen[ok], n_draws, rng)
        if ok.any():
            out["halfrise_logratio"] = float(np.median(np.log10(seen[ok] / pred[ok])))
    if th is not None and {"train_loss", "train_nc1"} <= set(obs.columns) & set(th.columns):
        t_th = effective_time(th.index.to_numpy(dtype=np.float64), optim, cfg.train.steps, 1.0)
        fit = nc1_fit(tau, obs, t_th, th)
        if fit is not None:
            observed, mapped, a, b = fit
            out["nc1_logrmse"] = float(np.sqrt(np.mean((observed - mapped) ** 2)))
            out["nc1_neg_logrmse"] = -out["nc1_logrmse"]
            out["time_map_a"], out["time_map_b"] = a, b
            shuffled = np.stack([mapped[rng.permutation(len(mapped))] for _ in range(n_draws)])
            nulls["nc1_neg_logrmse"] = -np.sqrt(np.mean((observed[None, :] - shuffled) ** 2, axis=1))
    t0 = effective_time(float(kn["terminal_frac"]) * cfg.train.steps, optim, cfg.train.steps, meta.get("factor", 1))
    out.update(_slopes(obs, tau, float(t0)))
    last = obs.ffill().iloc[-1]
    for split in ("train", "test"):
        for m in END_METRICS:
            out[f"end_{split}_{m}"] = float(last.get(f"{split}_{m}", math.nan))
    return out, nulls


def _member_tau(obs: pd.DataFrame, meta: dict[str, Any], cfg: RunCfg) -> np.ndarray:
    """Effective time of a member's eval steps (its optim overrides and time factor)."""
    optim = member_optim(cfg.optim, meta.get("optim", {}))
    return effective_time(obs.index.to_numpy(dtype=np.float64), optim, cfg.train.steps, meta.get("factor", 1.0))


def _seen_half_rise(obs: pd.DataFrame, tau: np.ndarray, kn: dict[str, Any]) -> np.ndarray | None:
    """Observed half-rise times of the ``train_mode_<a>`` columns, in mode order (None without them)."""
    cols = [c for c in obs.columns if c.startswith("train_mode_") and c.rsplit("_", 1)[1].isdigit()]
    if not cols:
        return None
    cols = sorted(cols, key=lambda c: int(c.rsplit("_", 1)[1]))
    return half_rise_times(tau, obs[cols].to_numpy(), float(kn["min_rise"]))


def nc1_fit(
    tau: np.ndarray, obs: pd.DataFrame, t_ref: np.ndarray, ref: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, float, float] | None:
    """Observed log10 train NC1 and the reference's, mapped by the affine time map fitted on the train losses.

    ``ref`` (the UFM, or another seed's real net for the noise ceiling) is read at tau_ref = a tau + b, with (a, b)
    from :func:`fit_time_map` on the normalised log train losses only. Returns (observed, mapped, a, b) over the eval
    points with tau > 0 and a finite observed NC1, or None when fewer than 3 remain.
    """
    both = ref[["train_loss", "train_nc1"]].dropna()
    both = both[both["train_nc1"] > 0]
    if len(both) < 2:
        return None
    t_both = t_ref[ref.index.isin(both.index)]
    a, b = fit_time_map(tau, obs["train_loss"].to_numpy(), t_both, both["train_loss"].to_numpy())
    mapped = np.interp(np.clip(a * tau + b, 0.0, None), t_both, np.log10(both["train_nc1"].to_numpy()))
    with np.errstate(divide="ignore", invalid="ignore"):
        observed = np.log10(obs["train_nc1"].to_numpy(dtype=np.float64))
    good = np.isfinite(observed) & (tau > 0)
    if good.sum() < 3:
        return None
    return observed[good], mapped[good], float(a), float(b)


def spearman_null(pred: np.ndarray, seen: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Spearman of ``seen`` against ``pred`` with the predicted values permuted across the modes, ``n`` draws."""
    rp, rs = stats.rankdata(pred), stats.rankdata(seen)
    perms = np.stack([rng.permutation(len(rp)) for _ in range(n)])
    x = rp[perms] - rp.mean()
    y = rs - rs.mean()
    return (x @ y) / (np.sqrt(np.sum(x**2, axis=1)) * np.sqrt(np.sum(y**2)))


def _slope_null(
    info: dict[str, dict[str, Any]], slopes: dict[str, float], n: int, rng: np.random.Generator
) -> list[float]:
    """The slope-vs-wd R^2 (:func:`_slope_sweep`) with the weight decays permuted within each init-scale group."""
    groups: dict[Any, list[str]] = {}
    for name, meta in info.items():
        groups.setdefault(meta.get("init_scale"), []).append(name)
    r2s = []
    for g in groups.values():
        x = np.array([info[m]["wd"] for m in g], dtype=np.float64)
        y = np.array([slopes[m] for m in g], dtype=np.float64)
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        if len(set(x)) < 3 or np.ptp(y) == 0:
            continue
        xs = x[np.stack([rng.permutation(len(x)) for _ in range(n)])]  # (n, k)
        xc, yc = xs - xs.mean(axis=1, keepdims=True), y - y.mean()
        r = (xc @ yc) / (np.sqrt(np.sum(xc**2, axis=1)) * np.sqrt(np.sum(yc**2)))
        r2s.append(r**2)  # R^2 of a least-squares line with intercept
    return [float(v) for v in np.mean(r2s, axis=0)] if r2s else []


def _median_draws(draws: list[np.ndarray | None]) -> list[float] | None:
    """Per-draw median over points of the members' null draws (the null of a median-over-points score)."""
    have = [np.asarray(d, dtype=np.float64) for d in draws if d is not None and len(d)]
    if not have:
        return None
    m = min(len(d) for d in have)
    return [float(x) for x in np.median(np.stack([d[:m] for d in have]), axis=0)]


def _theory_scores(th: pd.DataFrame, cfg: RunCfg, kn: dict[str, Any], point: dict[str, Any]) -> dict[str, float]:
    optim = member_optim(cfg.optim, point.get("optim", {}))
    tau = effective_time(th.index.to_numpy(dtype=np.float64), optim, cfg.train.steps, 1.0)
    t0 = effective_time(float(kn["terminal_frac"]) * cfg.train.steps, optim, cfg.train.steps, 1.0)
    last = th.ffill().iloc[-1]
    out = {f"end_train_{m}": float(last.get(f"train_{m}", math.nan)) for m in END_METRICS}
    out.update(_slopes(th, tau, float(t0)))
    return out


def _slopes(df: pd.DataFrame, tau: np.ndarray, t0: float) -> dict[str, float]:
    """Terminal slopes of ln nc1_tr (``slope``) and of ln nc1 (``slope_pinv``) against tau after t0."""
    return {
        key: terminal_slope(tau, df[col].to_numpy(), t0) if col in df else math.nan
        for key, col in (("slope", "train_nc1_tr"), ("slope_pinv", "train_nc1"))
    }


def _groups_with(info: dict[str, dict[str, Any]], key: str, n: int) -> bool:
    """Whether some group of members that agree on everything but ``key`` (and the loss) has >= n values of it."""
    groups: dict[tuple, set] = {}
    for m in info.values():
        if not m["control"]:
            rest = tuple(sorted((k, str(v)) for k, v in m.items() if k in ("wd", "init_scale", "loss") and k != key))
            groups.setdefault(rest, set()).add(m.get(key))
    return any(len(v) >= n for v in groups.values())


def _slope_sweep(info: dict[str, dict[str, Any]], slopes: dict[str, float]) -> tuple[float, float]:
    """Mean R^2 (and mean fitted slope) of terminal slope vs wd over groups that differ only in wd."""
    groups: dict[Any, list[str]] = {}
    for name, meta in info.items():
        groups.setdefault(meta.get("init_scale"), []).append(name)
    fits = [
        r_squared([info[n]["wd"] for n in g], [slopes[n] for n in g])
        for g in groups.values()
        if len({info[n]["wd"] for n in g}) >= 3
    ]
    fits = [f for f in fits if math.isfinite(f[0])]
    if not fits:
        return math.nan, math.nan
    return float(np.mean([f[0] for f in fits])), float(np.mean([f[1] for f in fits]))


def _init_trend(info: dict[str, dict[str, Any]], per: dict[str, dict[str, float]]) -> float:
    """Spearman of end train NC1 against init scale over wd = 0 points (nan with < 3 init scales)."""
    names = [n for n, m in info.items() if m.get("wd") == 0 and m.get("init_scale") is not None]
    if len({info[n]["init_scale"] for n in names}) < 3:
        return math.nan
    return float(stats.spearmanr([info[n]["init_scale"] for n in names], [per[n]["end_train_nc1"] for n in names])[0])


def _init_agreement(info: dict[str, dict[str, Any]], per: dict[str, dict[str, float]], loss: str) -> float:
    """RMSE (decades) of twin vs real end NC1, NC2 ETF error, NC3 over the wd = 0 points of an init sweep."""
    by_point: dict[str, dict[str, str]] = {}
    for name, m in info.items():
        if m["loss"] == loss and not m["control"] and m.get("wd") == 0 and name in per:
            by_point.setdefault(m["point"], {})[m["role"]] = name
    pairs = [p for p in by_point.values() if {"real", "twin"} <= set(p)]
    if len({info[p["real"]]["init_scale"] for p in pairs}) < 2:
        return math.nan
    diffs = [
        np.log10(per[p["twin"]][f"end_train_{m}"]) - np.log10(per[p["real"]][f"end_train_{m}"])
        for p in pairs
        for m in INIT_METRICS
    ]
    diffs = [d for d in diffs if np.isfinite(d)]
    return float(np.sqrt(np.mean(np.square(diffs)))) if diffs else math.nan


def _controls(info, per, table, kn, loss) -> tuple[dict[str, dict[str, Any]], list[str]]:
    controls: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for name, m in info.items():
        if not m["control"] or name not in per:
            continue
        ref = next(
            (
                n
                for n, r in info.items()
                if r["point"] == m["point"] and r["loss"] == m["loss"] and r["role"] == m["role"] and not r["control"]
            ),
            None,
        )
        if m["control"] == "random_labels" and ref in per:
            ratio = per[name]["end_test_nc1"] / per[ref]["end_test_nc1"]
            controls["random_labels"] = {
                "score": float(np.log10(ratio)) if ratio > 0 else math.nan,
                "rejected": bool(ratio >= float(kn["control_ratio_min"])),
                "note": f"test NC1 after shuffled-label training {per[name]['end_test_nc1']:.3g} vs "
                f"{per[ref]['end_test_nc1']:.3g} with true labels (needs ratio >= {kn['control_ratio_min']})",
            }
        elif m["control"] == "permuted_means":
            rho = per[name]["mode_spearman"]
            below = evidence_stats.passes({"rho": rho}, {"rho": ("<", float(kn["mode_spearman_min"]))})["rho"]
            controls["permuted_means"] = {
                "score": rho,
                "rejected": bool(below),
                "note": f"mode-order Spearman of a twin on permuted class means {rho:.2f} "
                f"(needs < {kn['mode_spearman_min']}; the true twin's is "
                f"{per[ref]['mode_spearman'] if ref in per else math.nan:.2f})",
            }
    if not controls:
        notes.append(f"no negative controls were trained (phenomenon.controls=false or missing for loss={loss})")
    return controls, notes


def _median(values: list[float]) -> float:
    vals = [v for v in values if math.isfinite(v)]
    return float(np.median(vals)) if vals else math.nan


def _fmt_list(values: Sequence[float]) -> str:
    return "[" + ",".join(f"{v:.2g}" for v in values[:4]) + (",...]" if len(values) > 4 else "]")
