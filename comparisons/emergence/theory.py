"""The multilinear skill model's curves for the emergence run: calibration of tau and the data/params constants, and
the theory's time curves."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from comparisons.emergence.metrics import fit_scale
from comparisons.engine.metrics import first_crossing
from comparisons.engine.phenomenon import Prediction
from comparisons.engine.rundir import CURVE_COLUMNS as COLUMNS
from linear_models import skills


def calibrate(prediction: Prediction, observed: pd.DataFrame, p: list[float] | None = None) -> Prediction:
    """Fit the one constant on skill 1 of the real net and return the calibrated prediction (docs/theory.md 4.3, 4.5).

    - time: tau in R_k/S = 1/(1 + (S/R0 - 1) exp(-2 p_k S t / tau)), least squares over skill 1's curve;
    - data: D_c in R_k/S = 1 - sqrt(max(0, 1 - D p_k / D_c)) (the authors' curve), over skill 1's final values;
    - params: N_c in R_k/S = clip(N/N_c - (k - 1), 0, 1), over skill 1's final values.

    Args:
        prediction: :func:`predict`'s output.
        observed: The trained members' curves (long table).
        p: Frequencies to use instead of the task's (the swapped-frequency negative control).

    Returns:
        A new Prediction whose curves are the calibrated theory (same members and metrics as the bare one) and
        whose numbers add ``fit`` (the constant's name), ``constant`` and, for the time variant, ``t_pred`` (the
        predicted emergence steps, (n_s,)) and ``sharpness_pred``.
    """
    nums = {**prediction.numbers, "p": list(p) if p is not None else prediction.numbers["p"]}
    variant = nums["variant"]
    if variant == "time":
        wide = _wide(observed, "real")
        steps = wide.index.to_numpy(dtype=np.float64)
        r1 = wide["skill_1"].to_numpy() if "skill_1" in wide else np.full(steps.shape, np.nan)
        lr_eff = nums["time_factor"] * nums["lr"]
        bare1 = float(skills.emergence_time(nums["p"][:1], nums["S"], nums["R0"], frac=nums["level"])[0]) / lr_eff
        tau = fit_scale(
            lambda c: theory_time_values(steps, nums, c)[:, 0],
            r1,
            first_crossing(steps, r1, nums["level"], "linear") / bare1,
        )
        grid = np.asarray(sorted(set(prediction.curves["step"]) | set(steps)), dtype=np.float64)
        curves = theory_time(grid, nums, tau)
        t = lambda f: skills.emergence_time(nums["p"], nums["S"], nums["R0"], frac=f) * tau / lr_eff  # noqa: E731
        nums.update(
            fit="tau",
            constant=tau,
            t_pred=t(nums["level"]).tolist(),
            sharpness_pred=float(((t(0.9) - t(0.1)) / t(0.5))[0]) if math.isfinite(tau) else math.nan,
        )
    else:
        final = _final(observed, nums)
        x = np.array([v for v in nums["points"].values()], dtype=np.float64)
        r1 = np.array([final.get(label, {}).get("skill_1", math.nan) for label in nums["points"]])
        guess = _guess_constant(variant, x, r1, nums["p"][0])
        const = fit_scale(lambda c: _final_strength(variant, x, nums["p"], c)[:, 0], r1, guess, span=100.0)
        nums.update(fit="D_c" if variant == "data" else "N_c", constant=const)
        curves = _theory_final(nums, const)
    return Prediction(curves=curves, numbers=nums)


def fit_tau_r0(steps: np.ndarray, r1: np.ndarray, nums: dict[str, Any], tau0: float) -> tuple[float, float]:
    """Diagnostic two-constant fit on skill 1: tau and R_0 together (least squares in log space from (tau0, R0)).

    The one-constant fit keeps R_0 = init^2 / r0_divisor, which fixes the sharpness of every rise; freeing R_0
    separates the timing law (t_k ~ 1/p_k) from the shape of the rise. Returns (tau, R0), NaN if tau0 is not finite.
    """
    from scipy import optimize

    keep = np.isfinite(r1)
    if not (math.isfinite(tau0) and tau0 > 0 and keep.any()):
        return math.nan, math.nan

    def resid(theta: np.ndarray) -> np.ndarray:
        trial = {**nums, "R0": math.exp(theta[1])}
        return theory_time_values(steps, trial, math.exp(theta[0]))[keep, 0] - r1[keep]

    hi = math.log(0.5 * nums["S"])  # R_0 below S/2: the rise starts under the emergence level
    x0 = [math.log(tau0), min(math.log(nums["R0"]), hi - 1.0)]
    res = optimize.least_squares(resid, x0=x0, bounds=([-np.inf, -60.0], [np.inf, hi]))
    return float(math.exp(res.x[0])), float(math.exp(res.x[1]))


def theory_time_values(steps: np.ndarray, nums: dict[str, Any], tau: float) -> np.ndarray:
    """R_k/S of the multilinear model at the given steps, time constant tau, (T, n_s) float64 (docs/theory.md 4.3)."""
    if not (math.isfinite(tau) and tau > 0):
        return np.full((len(steps), len(nums["p"])), np.nan)
    lr_eff = nums["time_factor"] * nums["lr"] / tau
    r = skills.skill_strength(np.asarray(steps, dtype=np.float64), nums["p"], nums["S"], nums["R0"], lr_eff)
    return np.atleast_2d(r) / nums["S"]


def theory_time(steps: np.ndarray, nums: dict[str, Any], tau: float) -> pd.DataFrame:
    """Theory rows (member ``theory``) of ``skill_k`` = R_k/S and ``test_loss`` in the run's loss units.

    The loss is 1/2 sum_k p_k (S - R_k)^2 (docs/theory.md 4.2) times ``time_factor`` (2 for torch's mean MSE with one
    output, docs/theory.md 2.2), i.e. the population loss the real net's ``test_loss`` estimates.
    """
    r = theory_time_values(steps, nums, tau)  # (T, n_s)
    p, s = np.asarray(nums["p"]), nums["S"]
    loss = nums["time_factor"] * 0.5 * np.sum(p * (s - s * r) ** 2, axis=1)
    time = nums["time_factor"] * nums["lr"] * np.asarray(steps, dtype=np.float64)
    rows = [
        ("theory", int(st), float(tt), f"skill_{k + 1}", float(r[i, k]))
        for i, (st, tt) in enumerate(zip(steps, time, strict=True))
        for k in range(r.shape[1])
    ]
    rows += [("theory", int(st), float(tt), "test_loss", float(v)) for st, tt, v in zip(steps, time, loss, strict=True)]
    return pd.DataFrame(rows, columns=COLUMNS)


def _final_strength(variant: str, x: np.ndarray, p: list[float], const: float) -> np.ndarray:
    """Calibrated final R_k/S, (len(x), n_s): the data curve with D_c = const, or the width curve with N_c = const."""
    if not (math.isfinite(const) and const > 0):
        return np.full((x.size, len(p)), np.nan)
    if variant == "data":
        return np.atleast_2d(skills.data_strength_calibrated(x, p, D_c=const))
    by_rank = np.atleast_2d(skills.parameter_strength_calibrated(x, len(p), N_c=const))  # column j: (j+1)-th commonest
    rank = np.argsort(np.argsort(-np.asarray(p), kind="stable"), kind="stable")  # identity for the task's sorted p
    return by_rank[:, rank]


def _theory_final(nums: dict[str, Any], const: float | None) -> pd.DataFrame:
    """Theory rows ``theory:<point>`` at the last step: final R_k/S and the loss 1/2 S^2 sum_k p_k (1 - R_k/S)^2.

    ``const`` None gives the basic model (1 - (1 - p_k)^D, or one skill per neuron, 1[k <= N]); a number gives the
    calibrated curve with D_c or N_c = const. The loss is in run units (times ``time_factor``, docs/theory.md 2.2).
    """
    x = np.array(list(nums["points"].values()), dtype=np.float64)
    p, s = np.asarray(nums["p"]), nums["S"]
    if const is None:
        r = skills.data_strength(x, p) if nums["variant"] == "data" else skills.parameter_strength(x, p.size)
        r = np.atleast_2d(r)
    else:
        r = _final_strength(nums["variant"], x, nums["p"], const)
    loss = nums["time_factor"] * 0.5 * s * s * np.sum(p * (1.0 - r) ** 2, axis=1)
    step, time = nums["steps"], nums["time_factor"] * nums["lr"] * nums["steps"]
    rows = []
    for i, label in enumerate(nums["points"]):
        member = f"theory:{label}"
        rows += [(member, step, time, f"skill_{k + 1}", float(r[i, k])) for k in range(p.size)]
        rows.append((member, step, time, "test_loss", float(loss[i])))
    return pd.DataFrame(rows, columns=COLUMNS)


def _guess_constant(variant: str, x: np.ndarray, r1: np.ndarray, p1: float) -> float:
    """A starting value for D_c or N_c: the smallest swept value at which skill 1 is half learned."""
    ok = np.isfinite(r1) & (r1 >= 0.5)
    if not ok.any():
        return math.nan
    x_half = float(x[ok].min())
    return x_half * p1 / 0.75 if variant == "data" else x_half / 0.5  # the curves reach 1/2 at these constants


def _final(observed: pd.DataFrame, nums: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Point label -> {metric: value} of the real net at its last eval step."""
    out = {}
    for label in nums["points"]:
        wide = _wide(observed, f"real:{label}" if label else "real")
        out[label] = {} if wide.empty else wide.iloc[-1].to_dict()
    return out


def _wide(curves: pd.DataFrame, member: str) -> pd.DataFrame:
    """One member's curves as a step x metric table (sorted by step)."""
    rows = curves[curves["member"] == member]
    return rows.pivot_table(index="step", columns="metric", values="value").sort_index()
