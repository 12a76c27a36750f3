"""Scores, criteria, verdict and negative controls of an emergence run (docs/theory.md 4.3-4.6).

Time variant (members ``real``, ``twin``, ``real:control=shuffled_control``, ``theory``), with n_s skills:

- ``tau``: the time constant fitted on skill 1 (the bare multilinear model has tau = 1; Nam et al. fit 22).
- ``rmse_heldout``: RMSE of R_k/S, real vs calibrated theory, over skills 2..n_s and every eval step.
- ``t_obs_k`` / ``t_pred_k`` / ``log_ratio_k``: observed and predicted emergence step (R_k/S = ``level``) and
  ln(t_obs/t_pred). A skill predicted to emerge inside the run that never does gets the lower bound
  ln(last step / t_pred). ``log_ratio_mae``: mean |log_ratio_k| over skills 2..n_s.
- ``slope`` [``slope_lo``, ``slope_hi``]: least-squares slope of ln t_k against ln p_k over the skills that
  emerged, with its 95% t-interval (predicted -1, docs/theory.md 4.4); ``slope_error`` = |slope + 1|, NaN when fewer
  than ``min_emerged`` skills emerged. Seed aggregation gives the interval over seeds.
- ``sharpness_obs`` / ``sharpness_pred``: rise width (R_k/S from 0.1 to 0.9) over half-time, mean over skills
  (for the logistic: 2 ln 9 / ln(S/R_0 - 1), independent of tau).
- ``exponent_time_{real,theory,predicted}``: slope of ln test_loss against ln t between the first and last
  observed emergence, for the real net and for the calibrated finite-n_s theory, and -alpha/(alpha+1) (4.6).
- ``twin_max_skill``: max |R_k/S| of the twin over all steps and skills (~0: a linear map has no parity).
- ``tau_2c``, ``R0_2c``, ``rmse_heldout_2c``, ``sharpness_pred_2c``: diagnostic, not judged: tau and R_0 both
  fitted on skill 1, which frees the shape of the rise (the sharpness) and leaves only the 1/p_k timing law.

Data / params variants (members ``real:<point>``, ``twin:<point>``, ``theory:<point>``): ``constant`` (D_c or N_c
fitted on skill 1), ``rmse_heldout`` (final R_k/S of skills 2..n_s over all points), ``rmse_basic_heldout`` (the
uncalibrated model: 1 - (1 - p_k)^D, or one skill per neuron), ``exponent_{data,params}_{real,theory,predicted}``
(ln final test loss against ln D or ln N; predicted -alpha/(alpha+1) and -alpha) and ``twin_max_skill``.

Verdict (``criteria``): time: ``rmse_heldout <= rmse_max``, ``log_ratio_mae <= log_ratio_max``,
``slope_error <= slope_tol``; data/params: ``rmse_heldout <= rmse_max``. *agree* when all pass, *disagree* when one
fails, *inconclusive* when one is NaN (too few skills emerged) or a negative control is not rejected. The scaling
exponents are reported, not judged: with n_s = 5 skills the loss is a staircase of five steps, so the asymptotic
power law is only a trend (compare real with the finite-n_s theory over the same window).

Negative controls:

- ``shuffled_control`` (time): the real net trained with control bits unrelated to the target. Rejected when its
  skills do not emerge in order: fewer than ``min_emerged`` reach ``level``, or their slope misses -1 by more than
  ``slope_tol``. Score: the number of skills that emerged.
- ``swapped_frequencies`` (all variants): the same one-constant fit with p_k reversed. Rejected when its held-out
  RMSE exceeds ``rmse_max`` and the true prediction's. Score: that RMSE.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from comparisons.emergence.metrics import crossing_step, power_law_exponent, rmse, sharpness, slope_fit
from comparisons.engine.phenomenon import Outcome, Prediction

DEFAULTS: dict[str, Any] = {
    "variant": "time",  # time | data | params
    "controls": True,  # time variant: train the shuffled-control real net
    "level": 0.5,  # emergence: R_k/S crosses this (docs/theory.md 4.4)
    "r0_divisor": 3.6,  # R_k(0) = init^2 / 3.6, the authors' match to the measured strength (docs/theory.md 4.3)
    "min_emerged": 3,  # skills needed for a slope
    "rmse_max": 0.15,  # verdict thresholds (module docstring)
    "log_ratio_max": 0.405,
    "slope_tol": 0.3,
}
VARIANTS = ("time", "data", "params")
CONTROL_MEMBER = "real:control=shuffled_control"


def knobs(cfg: Any) -> dict[str, Any]:
    """``DEFAULTS`` updated with ``cfg.phenomenon`` (``cfg`` may be None)."""
    kn = dict(DEFAULTS)
    if cfg is not None:
        kn.update({k: v for k, v in dict(cfg.phenomenon).items() if k != "name"})
    if kn["variant"] not in VARIANTS:
        from comparisons.engine.config import ConfigError

        raise ConfigError(f"phenomenon.variant={kn['variant']!r} is not known; choose one of: {', '.join(VARIANTS)}")
    return kn


def score(curves: pd.DataFrame, prediction: Prediction, cfg: Any) -> Outcome:
    """Scores, criteria, verdict and negative controls of one emergence run (module docstring)."""
    kn = knobs(cfg)
    if prediction.numbers["variant"] == "time":
        return _score_time(curves, prediction, kn)
    return _score_final(curves, prediction, kn)


def emergence_steps(steps: np.ndarray, r: np.ndarray, level: float) -> np.ndarray:
    """Crossing step of ``level`` for each column of r (T, n_s) -> (n_s,), NaN where it never crosses."""
    return np.array([crossing_step(steps, r[:, k], level) for k in range(r.shape[1])])


def ordered_slope(p: np.ndarray, t: np.ndarray, kn: dict[str, Any]) -> dict[str, float]:
    """Slope of ln t_k against ln p_k over the emerged skills, its interval, error |slope + 1| and the count."""
    ok = np.isfinite(t)
    n = int(ok.sum())
    slope, lo, hi = slope_fit(np.log(p[ok]), np.log(t[ok])) if n >= 2 else (math.nan,) * 3
    err = abs(slope + 1.0) if n >= kn["min_emerged"] else math.nan
    return {"slope": slope, "slope_lo": lo, "slope_hi": hi, "slope_error": err, "n_emerged": float(n)}


def _score_time(curves: pd.DataFrame, prediction: Prediction, kn: dict[str, Any]) -> Outcome:
    from comparisons.emergence.theory import calibrate

    nums = prediction.numbers
    p, n, level = np.asarray(nums["p"]), len(nums["p"]), nums["level"]
    cols = [f"skill_{k + 1}" for k in range(n)]
    real = _wide(curves, "real")
    steps = real.index.to_numpy(dtype=np.float64)
    r = real.reindex(columns=cols).to_numpy()
    th = _wide(curves, "theory").reindex(index=real.index, columns=cols).to_numpy()
    scores: dict[str, float] = {
        "tau": nums.get("constant", math.nan),
        "rmse_heldout": rmse(r[:, 1:], th[:, 1:]),
        "rmse_skill1": rmse(r[:, 0], th[:, 0]),
    }
    t_obs, t_pred = emergence_steps(steps, r, level), np.asarray(nums.get("t_pred", [math.nan] * n))
    ratios = np.log(t_obs / t_pred)
    censored = ~np.isfinite(t_obs) & (t_pred <= steps[-1])  # predicted inside the run, never seen
    ratios[censored] = np.log(steps[-1] / t_pred[censored])
    for k in range(n):
        scores.update({f"t_obs_{k + 1}": t_obs[k], f"t_pred_{k + 1}": t_pred[k], f"log_ratio_{k + 1}": ratios[k]})
    held = np.abs(ratios[1:])
    scores["log_ratio_mae"] = float(np.mean(held[np.isfinite(held)])) if np.isfinite(held).any() else math.nan
    scores.update(ordered_slope(p, t_obs, kn))
    sharp = [sharpness(steps, r[:, k], level=level) for k in range(n)]
    scores["sharpness_obs"] = float(np.nanmean(sharp)) if np.isfinite(sharp).any() else math.nan
    scores["sharpness_pred"] = nums.get("sharpness_pred", math.nan)
    scores.update(_time_exponents(curves, real, t_obs, nums))
    scores.update(_two_constant(steps, r, nums, scores["tau"]))
    if "twin" in set(curves["member"]):
        tw = _wide(curves, "twin").reindex(columns=cols).to_numpy()
        scores["twin_max_skill"] = float(np.nanmax(np.abs(tw)))
        scores["twin_rmse_heldout"] = rmse(tw[:, 1:], th[:, 1:])
    controls, notes = {}, []
    if CONTROL_MEMBER in set(curves["member"]):
        wc = _wide(curves, CONTROL_MEMBER)
        rc = wc.reindex(columns=cols).to_numpy()
        sl = ordered_slope(p, emergence_steps(wc.index.to_numpy(dtype=np.float64), rc, level), kn)
        ordered = math.isfinite(sl["slope_error"]) and sl["slope_error"] <= kn["slope_tol"]
        controls["shuffled_control"] = {
            "score": sl["n_emerged"],
            "rejected": not ordered,
            "note": f"{int(sl['n_emerged'])}/{n} skills reach R_k/S={level} (slope {sl['slope']:.2f}); final R_k/S "
            f"{np.round(rc[-1], 2).tolist()} ~ p_k {np.round(p, 2).tolist()}",
        }
    observed = curves[~curves["member"].str.startswith("theory")]
    swapped = calibrate(prediction, observed, p=list(p[::-1]))
    th_sw = _wide(swapped.curves, "theory").reindex(index=real.index, columns=cols).to_numpy()
    controls["swapped_frequencies"] = _swapped(rmse(r[:, 1:], th_sw[:, 1:]), scores["rmse_heldout"], kn)
    criteria = {
        "rmse_heldout": ("<=", kn["rmse_max"]),
        "log_ratio_mae": ("<=", kn["log_ratio_max"]),
        "slope_error": ("<=", kn["slope_tol"]),
    }
    if censored[1:].any():
        notes.append(
            f"skills {(np.nonzero(censored)[0] + 1).tolist()} never emerged though predicted inside the run;"
            " their log ratio is the lower bound ln(last step / t_pred)"
        )
    notes.append(f"tau = {scores['tau']:.3g} fitted on skill 1 (bare multilinear model: tau = 1)")
    fmt = lambda v: "/".join("-" if not math.isfinite(x) else f"{x:.0f}" for x in v)  # noqa: E731
    headline = {
        "predicted": f"t_k={fmt(t_pred)}",
        "observed": f"t_k={fmt(t_obs)}",
        "theory": f"rmse={scores['rmse_heldout']:.3f}",
        "twin": f"max R/S={scores.get('twin_max_skill', math.nan):.3f}",
    }
    return _outcome(scores, criteria, controls, notes, headline)


def _score_final(curves: pd.DataFrame, prediction: Prediction, kn: dict[str, Any]) -> Outcome:
    from comparisons.emergence.theory import calibrate

    nums = prediction.numbers
    variant, p, n = nums["variant"], np.asarray(nums["p"]), len(nums["p"])
    labels, x = list(nums["points"]), np.array(list(nums["points"].values()), dtype=np.float64)
    cols = [f"skill_{k + 1}" for k in range(n)]

    def table(prefix: str, source: pd.DataFrame = curves) -> tuple[np.ndarray, np.ndarray]:
        rows = [_wide(source, f"{prefix}:{lb}" if lb else prefix) for lb in labels]
        last = [w.iloc[-1] if not w.empty else pd.Series(dtype=float) for w in rows]
        return (
            np.array([s.reindex(cols).to_numpy(dtype=np.float64) for s in last]),
            np.array([float(s.get("test_loss", math.nan)) for s in last]),
        )

    r, loss = table("real")
    th, th_loss = table("theory")
    scores: dict[str, float] = {
        "constant": nums.get("constant", math.nan),
        "rmse_heldout": rmse(r[:, 1:], th[:, 1:]),
        "rmse_skill1": rmse(r[:, 0], th[:, 0]),
    }
    from linear_models import skills

    basic = skills.data_strength(x, p) if variant == "data" else skills.parameter_strength(x, n)
    scores["rmse_basic_heldout"] = rmse(r[:, 1:], np.atleast_2d(basic)[:, 1:])
    name = "data" if variant == "data" else "params"
    scores[f"exponent_{name}_real"] = power_law_exponent(x, loss)
    scores[f"exponent_{name}_theory"] = power_law_exponent(x, th_loss)
    scores[f"exponent_{name}_predicted"] = nums["exponents"].get(name, math.nan)
    tw, _ = table("twin")
    if np.isfinite(tw).any():
        scores["twin_max_skill"] = float(np.nanmax(np.abs(tw)))
    observed = curves[~curves["member"].str.startswith("theory")]
    swapped = calibrate(prediction, observed, p=list(p[::-1]))
    th_sw, _ = table("theory", swapped.curves)
    controls = {"swapped_frequencies": _swapped(rmse(r[:, 1:], th_sw[:, 1:]), scores["rmse_heldout"], kn)}
    notes = [f"{nums.get('fit')} = {scores['constant']:.3g} fitted on skill 1's final strength"]
    headline = {
        "predicted": f"{nums.get('fit')}={scores['constant']:.3g}",
        "observed": f"n={len(labels)} points",
        "theory": f"rmse={scores['rmse_heldout']:.3f}",
        "twin": f"max R/S={scores.get('twin_max_skill', math.nan):.3f}",
    }
    return _outcome(scores, {"rmse_heldout": ("<=", kn["rmse_max"])}, controls, notes, headline)


def _time_exponents(curves: pd.DataFrame, real: pd.DataFrame, t_obs: np.ndarray, nums: dict[str, Any]) -> dict:
    """Loss exponents in t between the first and the last observed emergence (real, theory) and the predicted one."""
    out = {"exponent_time_predicted": nums["exponents"].get("time", math.nan)}
    ok = t_obs[np.isfinite(t_obs)]
    lo, hi = (ok.min(), ok.max()) if ok.size >= 2 else (math.nan, math.nan)
    for member, wide in (("real", real), ("theory", _wide(curves, "theory"))):
        if "test_loss" not in wide or not math.isfinite(lo):
            out[f"exponent_time_{member}"] = math.nan
            continue
        win = wide.loc[(wide.index >= lo) & (wide.index <= hi), "test_loss"]
        out[f"exponent_time_{member}"] = power_law_exponent(win.index.to_numpy(dtype=np.float64), win.to_numpy())
    return out


def _two_constant(steps: np.ndarray, r: np.ndarray, nums: dict[str, Any], tau: float) -> dict[str, float]:
    """Diagnostic: tau and R_0 both fitted on skill 1 (shape freed), the held-out RMSE and the sharpness then."""
    from comparisons.emergence.theory import fit_tau_r0, theory_time_values

    tau2, r02 = fit_tau_r0(steps, r[:, 0], nums, tau)
    th2 = theory_time_values(steps, {**nums, "R0": r02}, tau2)
    c = nums["S"] / r02 - 1.0 if math.isfinite(r02) else math.nan
    return {
        "tau_2c": tau2,
        "R0_2c": r02,
        "rmse_heldout_2c": rmse(r[:, 1:], th2[:, 1:]),
        "sharpness_pred_2c": 2 * math.log(9) / math.log(c) if c > 1 else math.nan,
    }


def _swapped(rmse_swapped: float, rmse_true: float, kn: dict[str, Any]) -> dict[str, Any]:
    bad = math.isfinite(rmse_swapped) and rmse_swapped > kn["rmse_max"] and not rmse_swapped <= rmse_true
    return {
        "score": rmse_swapped,
        "rejected": bool(bad),
        "note": f"p_k reversed, constant refitted on skill 1: held-out RMSE {rmse_swapped:.3f} "
        f"vs {rmse_true:.3f} for the true p_k",
    }


def _outcome(
    scores: dict[str, float],
    criteria: dict[str, tuple[str, float]],
    controls: dict[str, Any],
    notes: list[str],
    headline: dict[str, str],
) -> Outcome:
    from comparisons.engine.aggregate import OPS

    results = [
        OPS[op](scores[k], thr) if math.isfinite(scores.get(k, math.nan)) else None for k, (op, thr) in criteria.items()
    ]
    verdict = "disagree" if False in results else "agree" if all(results) else "inconclusive"
    unrejected = [k for k, c in controls.items() if not c["rejected"]]
    if unrejected and verdict == "agree":
        verdict = "inconclusive"
        notes.append(f"negative control(s) {unrejected} not rejected: the scores cannot tell them apart")
    return Outcome(
        scores={k: float(v) for k, v in scores.items()},
        verdict=verdict,
        negative_controls=controls,
        notes=notes,
        criteria=criteria,
        headline=headline,
    )


def _wide(curves: pd.DataFrame, member: str) -> pd.DataFrame:
    rows = curves[curves["member"] == member]
    return rows.pivot_table(index="step", columns="metric", values="value").sort_index()
