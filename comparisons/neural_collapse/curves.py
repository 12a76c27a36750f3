"""Curve tools of the neural-collapse comparison (docs/theory.md 2.1, 7): effective time, half-rise, slopes, time maps.

Pure functions of arrays, shared by :mod:`comparisons.neural_collapse.scores`,
:mod:`comparisons.neural_collapse.theory` and the figures.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import optimize

from comparisons.engine.config import OptimCfg
from comparisons.engine.metrics import first_crossing

__all__ = [
    "effective_time",
    "fit_time_map",
    "half_rise_times",
    "member_optim",
    "r_squared",
    "terminal_slope",
]


def effective_time(step: Any, optim: OptimCfg, total_steps: int, factor: float = 1.0) -> np.ndarray:
    """tau(step) = factor * sum_{k < step} lr_k / (1 - momentum) (docs/theory.md 2.1); float steps interpolate.

    lr_k follows ``optim.schedule`` as :func:`comparisons.engine.members.make_optimizer` sets it
    (MultiStepLR milestones at round(m * steps), cosine annealing to 0). The heavy-ball factor 1/(1 - momentum) is
    the late-time one.

    Args:
        step: Steps, any shape, in [0, total_steps].
        optim: The optimizer config.
        total_steps: ``train.steps``.
        factor: ``time_factor(loss, out_dim)``: 2/c for ``mse_mean``, else 1.

    Returns:
        tau, same shape as ``step``, float64.
    """
    k = np.arange(total_steps, dtype=np.float64)
    if optim.schedule == "step":
        marks = np.array(sorted({max(1, int(round(m * total_steps))) for m in optim.milestones}))
        lr = optim.lr * optim.gamma ** np.searchsorted(marks, k, side="right")
    elif optim.schedule == "cosine":
        lr = optim.lr * 0.5 * (1.0 + np.cos(np.pi * k / total_steps))
    else:
        lr = np.full(total_steps, float(optim.lr))
    cum = np.concatenate([[0.0], np.cumsum(lr)]) * factor / (1.0 - optim.momentum)
    return np.interp(np.asarray(step, dtype=np.float64), np.arange(total_steps + 1), cum)


def member_optim(optim: OptimCfg, overrides: dict[str, Any]) -> OptimCfg:
    """``optim`` with a sweep point's ``optim.*`` overrides (dotted keys) applied."""
    over = {k.split(".", 1)[1]: v for k, v in overrides.items() if k.startswith("optim.")}
    return dataclasses.replace(optim, **over) if over else optim


def half_rise_times(t: np.ndarray, strength: np.ndarray, min_rise: float = 0.2) -> np.ndarray:
    """Observed half-rise time of each mode: when (m - m(0)) / (max m - m(0)) first reaches 1/2.

    Args:
        t: Increasing times (T,), t[0] = 0 the init.
        strength: Mode strengths ||M u_a|| (T, r).
        min_rise: A mode whose peak is below (1 + min_rise) m(0) has not risen: nan.

    Returns:
        (r,) times, float64.
    """
    m = np.asarray(strength, dtype=np.float64)
    base, peak = m[0], np.nanmax(m, axis=0)
    out = np.full(m.shape[1], math.nan)
    for a in range(m.shape[1]):
        if peak[a] >= (1.0 + min_rise) * base[a] and peak[a] > base[a]:
            out[a] = first_crossing(t, (m[:, a] - base[a]) / (peak[a] - base[a]), 0.5, "log")
    return out


def terminal_slope(t: np.ndarray, nc1: np.ndarray, t_start: float) -> float:
    """Least-squares slope of ln NC1 against t over t >= t_start (>= 3 finite positive points, else nan)."""
    t, y = np.asarray(t, dtype=np.float64), np.asarray(nc1, dtype=np.float64)
    ok = (t >= t_start) & np.isfinite(y) & (y > 0)
    if ok.sum() < 3 or np.ptp(t[ok]) == 0:
        return math.nan
    return float(np.polyfit(t[ok], np.log(y[ok]), 1)[0])


def r_squared(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """R^2 and slope of the least-squares line y ~ x (nan with < 3 points or constant x or y)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan
    k, c = np.polyfit(x, y, 1)
    return float(1.0 - np.sum((y - (k * x + c)) ** 2) / np.sum((y - y.mean()) ** 2)), float(k)


def fit_time_map(t_obs: np.ndarray, loss_obs: np.ndarray, t_th: np.ndarray, loss_th: np.ndarray) -> tuple[float, float]:
    """The affine map tau_th = a t + b that best matches the normalised log losses (least squares over t > 0).

    Both losses are divided by their value at t = 0, so the map is about timing, not about the loss's scale.

    Returns:
        (a, b), a > 0.
    """
    t_obs, t_th = np.asarray(t_obs, dtype=np.float64), np.asarray(t_th, dtype=np.float64)
    lo = np.log(np.asarray(loss_obs, dtype=np.float64) / loss_obs[0])
    lt = np.log(np.asarray(loss_th, dtype=np.float64) / loss_th[0])
    use = (t_obs > 0) & np.isfinite(lo)

    def cost(z: np.ndarray) -> float:
        arg = np.clip(np.exp(z[0]) * t_obs[use] + z[1] * t_th[-1], 0.0, None)
        return float(np.mean((lo[use] - np.interp(arg, t_th, lt)) ** 2))

    starts = [np.array([a, 0.0]) for a in np.linspace(-6.0, 6.0, 25)]
    best = min(starts, key=cost)
    res = optimize.minimize(cost, best, method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-10})
    return float(np.exp(res.x[0])), float(res.x[1] * t_th[-1])
