"""Pure measurements behind the emergence scores: skill strength, crossing times, fits (docs/theory.md 4.4, 4.8).

Nam, Fonseca, Lee, Mingard & Louis 2024 (arXiv:2404.17563); the paper, arXiv:2502.21009, section 4. Every function
here is pure (no I/O, no state), float64, and is tested against a constructed ground truth in
``tests/comparisons/test_emergence.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import optimize, stats

from comparisons.engine.metrics import first_crossing


def skill_projection(out: Any, g: Any) -> float:
    """Skill strength R_hat_k: the centred projection of the outputs on skill k's function (docs/theory.md 4.8).

    R_hat_k = <g - mean(g), o - mean(o)> / (||g - mean(g)|| sqrt(M)) on a probe set whose every sample belongs to
    task k. This is the authors' ``check_corrs`` with y = S g (the factor S cancels); for balanced +-1 labels
    ||g - mean(g)|| ~ sqrt(M), so R_hat_k ~ (1/M) sum_m g_m (o_m - mean(o)), an estimate of the coefficient a_k b_k
    of e_k in f. Divide by S for the plotted R_k/S.

    Args:
        out: Network outputs o on the probe set, shape (M,) (or (M, 1)); tensor or array.
        g: Skill function values g_k(x_m) in {-1, +1}, shape (M,).

    Returns:
        R_hat_k in output units, float64 (0 when g is constant).

    Example:
        >>> g = np.array([1.0, -1.0, 1.0, -1.0])
        >>> skill_projection(3.0 * g + 7.0, g)
        3.0
    """
    o = _f64(out).reshape(-1)
    gv = _f64(g).reshape(-1)
    if o.shape != gv.shape:
        raise ValueError(f"skill_projection needs outputs and labels of one length, got {o.shape} and {gv.shape}")
    gc = gv - gv.mean()
    norm = float(np.linalg.norm(gc))
    if norm == 0.0:
        return 0.0
    return float(gc @ (o - o.mean()) / (norm * math.sqrt(gv.size)))


def sharpness(steps: Any, values: Any, lo: float = 0.1, hi: float = 0.9, level: float = 0.5) -> float:
    """Sharpness ratio of a rise: its width (steps from ``lo`` to ``hi``) over its half-time (step at ``level``).

    For the logistic R/S = 1/(1 + c exp(-r t)) this is 2 ln 9 / ln c at lo, hi = 0.1, 0.9: small for a long plateau
    and a sudden jump (large c, small init), the signature of emergence; it does not depend on the time constant.

    Args:
        steps: Eval steps, (T,). values: the curve, (T,). lo, hi: rise levels. level: half level.

    Returns:
        (t_hi - t_lo) / t_level, NaN if the curve does not reach ``hi``.
    """
    t_lo, t_hi, t_half = (first_crossing(steps, values, x, "linear") for x in (lo, hi, level))
    if not (math.isfinite(t_hi) and t_half > 0):
        return math.nan
    return (t_hi - t_lo) / t_half


def slope_fit(x: Any, y: Any, level: float = 0.95) -> tuple[float, float, float]:
    """Least-squares slope of y against x with its two-sided Student-t interval (n - 2 degrees of freedom).

    Used for log t_k against log p_k (predicted slope -1, docs/theory.md 4.4) and for scaling exponents.

    Args:
        x, y: Points, shape (n,); non-finite pairs are dropped.
        level: Interval level.

    Returns:
        (slope, lo, hi); NaN when fewer than 2 points remain; lo = hi = slope for exactly 2 points.
    """
    xv, yv = _f64(x), _f64(y)
    keep = np.isfinite(xv) & np.isfinite(yv)
    xv, yv = xv[keep], yv[keep]
    if xv.size < 2 or np.ptp(xv) == 0:
        return (math.nan, math.nan, math.nan)
    res = stats.linregress(xv, yv)
    if xv.size == 2:
        return (float(res.slope), float(res.slope), float(res.slope))
    half = float(stats.t.ppf(0.5 + level / 2, xv.size - 2) * res.stderr)
    return (float(res.slope), float(res.slope - half), float(res.slope + half))


def power_law_exponent(x: Any, y: Any) -> float:
    """Exponent a of y ~ x^a: the least-squares slope of log y against log x over positive finite pairs."""
    xv, yv = _f64(x), _f64(y)
    keep = np.isfinite(xv) & np.isfinite(yv) & (xv > 0) & (yv > 0)
    return slope_fit(np.log(xv[keep]), np.log(yv[keep]))[0]


def rmse(a: Any, b: Any) -> float:
    """Root mean squared difference over the finite pairs of two equal-shape arrays (NaN if there are none)."""
    d = _f64(a) - _f64(b)
    d = d[np.isfinite(d)]
    return float(np.sqrt(np.mean(d * d))) if d.size else math.nan


def fit_scale(model: Callable[[float], np.ndarray], observed: Any, guess: float, span: float = 30.0) -> float:
    """One positive constant c minimising sum (model(c) - observed)^2, searched in log c around ``guess``.

    The skill curves are sigmoids in c, so a least-squares fit from far away sits on a flat plateau; the search is
    a bounded scalar minimisation of log c over [guess/span, guess*span] after a coarse grid picks the basin.

    Args:
        model: c -> predicted values, same shape as ``observed``.
        observed: Target values; non-finite entries are ignored.
        guess: Starting value (> 0), e.g. from a crossing time.
        span: Search range factor.

    Returns:
        The fitted c (float), NaN if ``guess`` is not a positive finite number.
    """
    obs = _f64(observed)
    keep = np.isfinite(obs)
    if not (math.isfinite(guess) and guess > 0) or not keep.any():
        return math.nan

    def loss(logc: float) -> float:
        return float(np.sum((np.asarray(model(math.exp(logc)))[keep] - obs[keep]) ** 2))

    lo, hi = math.log(guess / span), math.log(guess * span)
    grid = np.linspace(lo, hi, 61)
    best = int(np.argmin([loss(v) for v in grid]))
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
    res = optimize.minimize_scalar(loss, bounds=(a, b), method="bounded", options={"xatol": 1e-6})
    return float(math.exp(res.x))


def _f64(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor on any device
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)
