"""Scores of the neural-collapse comparison (docs/theory.md 7): pure functions of saved curves and the prediction.

Every score is computed per loss (``mse``: the theory's domain; ``ce``: scored and labelled outside it) and per
voice (``real``, ``twin``); names read ``<loss>_<score>_<voice>``. Times are effective times tau (docs/theory.md 2.1;
:func:`effective_time`).

- ``mode_spearman``: Spearman correlation, over the class-space modes u_a of the twin's Sigma_yx, of the predicted
  half-rise times of ||M u_a|| (deep linear net, docs/theory.md 3.2 / 7.3) and the observed ones. Median over points.
- ``halfrise_logcorr``: Pearson correlation of log predicted and log observed half-rise times; ``halfrise_logratio``:
  the median over modes of log10(observed / predicted) half-rise time (0 = on time). Medians over points.
- ``nc1_logrmse``: RMSE in decades (log10) between observed train NC1 and the UFM's, after one affine time map
  tau_theory = a tau + b fitted on the normalised log train loss only. Median over points.
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

Verdict, from MSE scores only (``criteria``): ``mse_mode_spearman_twin >= mode_spearman_min``,
``mse_nc1_logrmse_real <= nc1_logrmse_max``, ``mse_end_train_nc1_real <= collapsed_nc1_max`` and, with a wd sweep,
``mse_nc1_slope_r2_real >= slope_r2_min``. A failed criterion gives "disagree"; a missing one or a control that is
not rejected gives "inconclusive"; otherwise "agree".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from comparisons.engine.config import RunCfg
from comparisons.engine.phenomenon import Outcome, Prediction
from comparisons.neural_collapse.curves import (
    effective_time,
    fit_time_map,
    half_rise_times,
    member_optim,
    r_squared,
    terminal_slope,
)

__all__ = ["DEFAULTS", "knobs", "score"]

DEFAULTS: dict[str, Any] = {
    "losses": ["mse", "ce"],  # each trained in the same run; the theory is exact for MSE only (docs/theory.md 7.2)
    "controls": True,  # train the two negative controls at the first sweep point
    "n_eval": 1000,  # samples per split on which NC metrics are measured
    "ufm_per_class": 30,  # UFM samples per class (its per-sample clock makes the dynamics independent of n)
    "ufm_max_steps": 20000,  # cap on UFM GD steps
    "ufm_feature_rate": 1.0,  # rho: features move at rho/N times the W-rate (1: the UFM as written; "n": per sample)
    "theory_points": 100,  # log-spaced theory points over training
    "depth": None,  # layers of the deep linear prediction; None = Linear + non-1x1 Conv layers of the model
    "terminal_frac": 0.25,  # terminal window for the NC1 slope: eval steps after this fraction of training
    "min_rise": 0.2,  # a mode has risen when max ||M u_a|| >= (1 + min_rise) ||M(0) u_a||
    "mode_spearman_min": 0.5,  # verdict thresholds (module docstring)
    "slope_r2_min": 0.8,
    "nc1_logrmse_max": 1.0,
    "collapsed_nc1_max": 0.5,
    "control_ratio_min": 3.0,
}
END_METRICS = ("nc1", "cdnv", "nc2_etf_error", "nc2_equinorm_means", "nc2_equiangular_means", "nc3", "nc4")
INIT_METRICS = ("nc1", "nc2_etf_error", "nc3")


def knobs(cfg: RunCfg) -> dict[str, Any]:
    """The phenomenon's knobs (``conf/phenomenon/neural_collapse.yaml``) over :data:`DEFAULTS`.

    Raises:
        ConfigError: An unknown key, naming the known ones.
    """
    unknown = sorted(set(cfg.phenomenon) - set(DEFAULTS) - {"name"})
    if unknown:
        from comparisons.engine.config import ConfigError

        raise ConfigError(f"phenomenon.{unknown[0]}: unknown key for neural_collapse; known: {', '.join(DEFAULTS)}")
    return {**DEFAULTS, **{k: v for k, v in cfg.phenomenon.items() if k != "name"}}


def score(curves: pd.DataFrame, prediction: Prediction, cfg: RunCfg) -> Outcome:
    """Scores, criteria, verdict and negative controls of a neural-collapse run (module docstring)."""
    kn = knobs(cfg)
    info = prediction.numbers.get("members", {})
    points = prediction.numbers.get("points", {})
    table = _wide(curves)
    per: dict[str, dict[str, float]] = {}
    for name, meta in info.items():
        if name in table:
            per[name] = _member_scores(
                table[name], table.get(meta["theory"]), meta, points.get(meta["point"], {}), cfg, kn
            )
    scores: dict[str, float] = {}
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
            for key in ("mode_spearman", "halfrise_logcorr", "halfrise_logratio", "nc1_logrmse"):
                scores[f"{loss}_{key}_{role}"] = _median([s[key] for s in mine.values()])
            ref = next(iter(mine))
            for key, value in per[ref].items():
                if key.startswith("end_"):
                    scores[f"{loss}_{key}_{role}"] = value
            for tag, key in (("nc1", "slope"), ("nc1pinv", "slope_pinv")) if wd_sweep else ():
                r2, k = _slope_sweep({n: info[n] for n in mine}, {n: s[key] for n, s in mine.items()})
                scores[f"{loss}_{tag}_slope_r2_{role}"], scores[f"{loss}_{tag}_slope_per_wd_{role}"] = r2, -k
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
    criteria = {
        "mse_mode_spearman_twin": (">=", float(kn["mode_spearman_min"])),
        "mse_nc1_logrmse_real": ("<=", float(kn["nc1_logrmse_max"])),
        "mse_end_train_nc1_real": ("<=", float(kn["collapsed_nc1_max"])),
    }
    if math.isfinite(scores.get("mse_nc1_slope_r2_real", math.nan)):
        criteria["mse_nc1_slope_r2_real"] = (">=", float(kn["slope_r2_min"]))
    verdict = _verdict(scores, criteria, controls)
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
        scores=scores, verdict=verdict, negative_controls=controls, notes=notes, criteria=criteria, headline=headline
    )


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
) -> dict[str, float]:
    steps = obs.index.to_numpy(dtype=np.float64)
    optim = member_optim(cfg.optim, meta.get("optim", {}))
    tau = effective_time(steps, optim, cfg.train.steps, meta.get("factor", 1.0))
    out: dict[str, float] = {
        "mode_spearman": math.nan,
        "halfrise_logcorr": math.nan,
        "halfrise_logratio": math.nan,
        "nc1_logrmse": math.nan,
    }
    mode_cols = sorted((c for c in obs.columns if c.startswith("train_mode_")), key=lambda c: int(c.rsplit("_", 1)[1]))
    pred = np.asarray(point.get("half_rise_tau", []), dtype=np.float64)
    if mode_cols and len(pred) == len(mode_cols):
        seen = half_rise_times(tau, obs[mode_cols].to_numpy(), float(kn["min_rise"]))
        ok = np.isfinite(seen) & np.isfinite(pred) & (seen > 0) & (pred > 0)
        if ok.sum() >= 3 and np.ptp(seen[ok]) > 0 and np.ptp(pred[ok]) > 0:
            out["mode_spearman"] = float(stats.spearmanr(pred[ok], seen[ok])[0])
            out["halfrise_logcorr"] = float(np.corrcoef(np.log(pred[ok]), np.log(seen[ok]))[0, 1])
        if ok.any():
            out["halfrise_logratio"] = float(np.median(np.log10(seen[ok] / pred[ok])))
    if th is not None and {"train_loss", "train_nc1"} <= set(obs.columns) & set(th.columns):
        tt = effective_time(th.index.to_numpy(dtype=np.float64), optim, cfg.train.steps, 1.0)
        both = th[["train_loss", "train_nc1"]].dropna()
        t_th = tt[th.index.isin(both.index)]
        a, b = fit_time_map(tau, obs["train_loss"].to_numpy(), t_th, both["train_loss"].to_numpy())
        mapped = np.interp(np.clip(a * tau + b, 0.0, None), t_th, np.log10(both["train_nc1"].to_numpy()))
        good = np.isfinite(np.log10(obs["train_nc1"].to_numpy())) & (tau > 0)
        out["nc1_logrmse"] = float(np.sqrt(np.mean((np.log10(obs["train_nc1"].to_numpy())[good] - mapped[good]) ** 2)))
        out["time_map_a"], out["time_map_b"] = a, b
    t0 = effective_time(float(kn["terminal_frac"]) * cfg.train.steps, optim, cfg.train.steps, meta.get("factor", 1))
    out.update(_slopes(obs, tau, float(t0)))
    last = obs.ffill().iloc[-1]
    for split in ("train", "test"):
        for m in END_METRICS:
            out[f"end_{split}_{m}"] = float(last.get(f"{split}_{m}", math.nan))
    return out


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
            controls["permuted_means"] = {
                "score": rho,
                "rejected": bool(math.isfinite(rho) and rho < float(kn["mode_spearman_min"])),
                "note": f"mode-order Spearman of a twin on permuted class means {rho:.2f} "
                f"(needs < {kn['mode_spearman_min']}; the true twin's is "
                f"{per[ref]['mode_spearman'] if ref in per else math.nan:.2f})",
            }
    if not controls:
        notes.append(f"no negative controls were trained (phenomenon.controls=false or missing for loss={loss})")
    return controls, notes


def _verdict(scores: dict[str, float], criteria: dict[str, tuple[str, float]], controls: dict[str, Any]) -> str:
    ops = {">=": np.greater_equal, "<=": np.less_equal, ">": np.greater, "<": np.less}
    results = []
    for key, (op, thr) in criteria.items():
        v = scores.get(key, math.nan)
        results.append(None if not math.isfinite(v) else bool(ops[op](v, thr)))
    if False in results:
        return "disagree"
    if None in results or not controls or not all(c["rejected"] for c in controls.values()):
        return "inconclusive"
    return "agree"


def _median(values: list[float]) -> float:
    vals = [v for v in values if math.isfinite(v)]
    return float(np.median(vals)) if vals else math.nan


def _fmt_list(values: Sequence[float]) -> str:
    return "[" + ",".join(f"{v:.2g}" for v in values[:4]) + (",...]" if len(values) > 4 else "]")
