"""Pure metrics and scores of the lazy/rich phenomenon (docs/theory.md 2.6, 2.7, 5.4, 5.5). No I/O, no state.

A *KD map* is a 2-D float64 array of log10(KD + floor) over a grid: rows are the imbalance axis (lambda, or the
layer-scale ratio r of an MLP), columns the weight-to-target-ratio axis (scale, init multiplier or target scale),
both sorted ascending. Scores compare a predicted map (theory or twin) with an observed one (simulation or real):

- Spearman rank correlation over the shared cells;
- the lazy/rich boundary: per row, the log-ratio where log10 KD first falls below a level (KD = 0.1 by default),
  and the mean distance between predicted and observed boundaries in log10-ratio units;
- negative controls: the same scores for a prediction whose imbalance axis is permuted (rolled by half its length,
  so small |lambda| meets large |lambda| in the symmetric Fig. 6a grid) or whose ratio axis is reversed.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

KD_FLOOR = 1e-6  # plots and maps use log10(KD + 1e-6), as the Fig. 6 code does (docs/theory.md 2.6)


def log_kd(kd: np.ndarray | float, floor: float = KD_FLOOR) -> np.ndarray:
    """log10(KD + floor), float64 (docs/theory.md 2.6): the colour of the Fig. 6 maps, floor -6."""
    return np.log10(np.asarray(kd, dtype=np.float64) + floor)


def spearman(pred: np.ndarray, obs: np.ndarray) -> float:
    """Spearman rank correlation of two maps over the cells finite in both (NaN if fewer than 3 or constant)."""
    a, b = np.asarray(pred, dtype=np.float64).ravel(), np.asarray(obs, dtype=np.float64).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return math.nan
    return float(stats.spearmanr(a[ok], b[ok]).statistic)


def max_abs_diff(pred: np.ndarray, obs: np.ndarray) -> float:
    """Largest |pred - obs| over the cells finite in both (decades of KD for log maps)."""
    d = np.abs(np.asarray(pred, dtype=np.float64) - np.asarray(obs, dtype=np.float64))
    return float(np.nanmax(d)) if np.isfinite(d).any() else math.nan


def boundary(log_map: np.ndarray, log_ratio: np.ndarray, level: float) -> np.ndarray:
    """The lazy/rich boundary of each row: the log-ratio where log10 KD first drops below ``level``.

    Along each row (ascending ratio) the crossing between the last cell above the level and the next is found by
    linear interpolation in log-ratio. A row that is lazy everywhere gets its first log-ratio, a row rich everywhere
    its last one (the boundary lies beyond the grid; clipping keeps distances finite and conservative).

    Args:
        log_map: log10 KD, shape (R, C), columns ordered by increasing ratio.
        log_ratio: log10 of the weight-to-target ratio of each cell, shape (R, C) or (C,), increasing along rows.
        level: log10 of the KD level (-1 for KD = 0.1).

    Returns:
        Boundary log-ratio per row, shape (R,), float64; NaN for a row with no finite cell.
    """
    m = np.asarray(log_map, dtype=np.float64)
    x = np.broadcast_to(np.asarray(log_ratio, dtype=np.float64), m.shape)
    out = np.full(m.shape[0], np.nan)
    for i, (row, xs) in enumerate(zip(m, x, strict=True)):
        ok = np.isfinite(row) & np.isfinite(xs)
        row, xs = row[ok], xs[ok]
        if row.size == 0:
            continue
        below = np.flatnonzero(row < level)
        if below.size == 0:
            out[i] = xs[-1]
        elif below[0] == 0:
            out[i] = xs[0]
        else:
            j = below[0]
            frac = (row[j - 1] - level) / (row[j - 1] - row[j])
            out[i] = xs[j - 1] + frac * (xs[j] - xs[j - 1])
    return out


def boundary_distance(
    pred: np.ndarray, obs: np.ndarray, log_ratio: np.ndarray, level: float, log_ratio_pred: np.ndarray | None = None
) -> float:
    """Mean |boundary_pred - boundary_obs| over rows, in log10-ratio units (0 = same lazy/rich boundary).

    Args:
        pred: Predicted log10 KD map (R, C).
        obs: Observed log10 KD map (R, C).
        log_ratio: Observed log10 ratio per cell, (R, C) or (C,).
        level: log10 KD of the boundary (-1 for KD = 0.1).
        log_ratio_pred: The prediction's own log ratio per cell, if it differs (default: ``log_ratio``).

    Returns:
        The distance, float; NaN if no row has finite cells in both maps.
    """
    bp = boundary(pred, log_ratio if log_ratio_pred is None else log_ratio_pred, level)
    bo = boundary(obs, log_ratio, level)
    d = np.abs(bp - bo)
    return float(np.nanmean(d)) if np.isfinite(d).any() else math.nan


def permute_rows(m: np.ndarray) -> np.ndarray:
    """Negative control: the imbalance axis permuted (rolled by half its length; a derangement for R >= 2)."""
    m = np.asarray(m)
    return np.roll(m, max(1, m.shape[0] // 2), axis=0)


def reverse_cols(m: np.ndarray) -> np.ndarray:
    """Negative control: the ratio axis reversed (lazy predicted where rich is expected and vice versa)."""
    return np.asarray(m)[:, ::-1]


def map_scores(
    pred: np.ndarray,
    obs: np.ndarray,
    log_ratio: np.ndarray,
    levels: list[float],
    log_ratio_pred: np.ndarray | None = None,
) -> dict[str, float]:
    """Spearman, max |difference| and boundary distances of one predicted vs observed log10 KD map.

    Args:
        pred: Predicted log10 KD map (R, C).
        obs: Observed log10 KD map (R, C).
        log_ratio: Observed log10 ratio per cell, (R, C) or (C,).
        levels: KD levels of the boundaries (e.g. [0.1]); each gives ``boundary_dist_kd<level>``.
        log_ratio_pred: The prediction's own log ratio per cell, if it differs.

    Returns:
        ``spearman``, ``max_abs_dlogkd`` and one ``boundary_dist_kd<level>`` per level.
    """
    out = {"spearman": spearman(pred, obs), "max_abs_dlogkd": max_abs_diff(pred, obs)}
    for level in levels:
        out[f"boundary_dist_kd{level:g}"] = boundary_distance(pred, obs, log_ratio, math.log10(level), log_ratio_pred)
    return out


def control_scores(
    pred: np.ndarray, obs: np.ndarray, true_spearman: float, margin: float, reject_below: float
) -> dict[str, dict]:
    """The two negative controls of a prediction: permuted imbalance axis and reversed ratio axis.

    A control is *rejected* (correctly told apart from the real prediction) when its Spearman is below
    ``reject_below`` and at least ``margin`` below the true prediction's.

    Args:
        pred: Predicted log10 KD map (R, C).
        obs: Observed log10 KD map (R, C).
        true_spearman: Spearman of the unmodified prediction.
        margin: Required gap to the true Spearman.
        reject_below: Absolute Spearman a control must fall below.

    Returns:
        ``{"lambda_permuted": {...}, "ratio_reversed": {...}}`` with ``score``, ``rejected``, ``note``.
    """
    out = {}
    for name, broken, note in (
        ("lambda_permuted", permute_rows(pred), "imbalance axis rolled by half its length"),
        ("ratio_reversed", reverse_cols(pred), "ratio axis reversed"),
    ):
        s = spearman(broken, obs)
        rejected = bool(
            np.isfinite(s) and s < reject_below and (not np.isfinite(true_spearman) or s <= true_spearman - margin)
        )
        out[name] = {
            "score": s,
            "rejected": rejected,
            "note": f"{note}; Spearman {s:.3f} vs {true_spearman:.3f} for the true prediction",
        }
    return out


def curve_shape(t: np.ndarray, loss: np.ndarray) -> dict[str, float]:
    """Shape of a loss curve: sharpness ratio and exponential-vs-sigmoidal fit (docs/theory.md 5.5).

    Progress p(t) = (L(0) - L(t)) / (L(0) - L_end), monotone-cleaned (running max). With t10, t50, t90 the times
    at which p reaches 0.1, 0.5, 0.9 (linear interpolation), the sharpness ratio is (t90 - t10) / t50:
    2 ln 3 / ln 2 ~ 3.17 for an exponential decay (lazy), well below 1 for a late sigmoidal drop (rich; a Saxe
    mode from u0 = 1e-3 s gives ~0.64). Two least-squares fits of p(t) (scipy ``curve_fit``, started from the
    quantiles): an exponential 1 - exp(-k t) and a logistic started at 0,
    (s((t - t0)/w) - s(-t0/w)) / (1 - s(-t0/w)), s the sigmoid. ``sigmoid_vs_exp`` = log10(rss_exp / rss_sigmoid):
    about 0 when the extra parameter buys nothing (exponential curve), large and positive for a plateau + drop.

    Args:
        t: Times (T,), increasing, t[0] = 0.
        loss: Loss at those times (T,).

    Returns:
        ``sharpness`` (NaN if the loss never fell), ``t_half``, ``sigmoid_vs_exp``.
    """
    t = np.asarray(t, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    ok = np.isfinite(loss)
    t, loss = t[ok], loss[ok]
    nan = {"sharpness": math.nan, "t_half": math.nan, "sigmoid_vs_exp": math.nan}
    if t.size < 4 or not loss[0] > loss[-1]:
        return nan
    p = np.maximum.accumulate((loss[0] - loss) / (loss[0] - loss[-1]))
    if p[-1] < 0.9:
        return nan
    t10, t50, t90 = (float(np.interp(q, p, t)) if np.all(np.diff(p) >= 0) else math.nan for q in (0.1, 0.5, 0.9))
    out = {"sharpness": (t90 - t10) / t50 if t50 > 0 else math.nan, "t_half": t50}
    if not t50 > 0:
        return {**out, "sigmoid_vs_exp": math.nan}
    rss_exp = _fit_rss(_exp_curve, t, p, [math.log(2.0) / t50])
    w0 = max((t90 - t10) / (2.0 * math.log(9.0)), 1e-6 * t50)
    rss_sig = _fit_rss(_logistic_curve, t, p, [t50, w0])
    out["sigmoid_vs_exp"] = math.log10(max(rss_exp, 1e-30) / max(rss_sig, 1e-30))
    return out


def _exp_curve(t: np.ndarray, k: float) -> np.ndarray:
    return -np.expm1(-abs(k) * t)


def _logistic_curve(t: np.ndarray, t0: float, w: float) -> np.ndarray:
    w = max(abs(w), 1e-12)
    s = 1.0 / (1.0 + np.exp(-np.clip((t - t0) / w, -700, 700)))
    s0 = 1.0 / (1.0 + math.exp(-min(max(-t0 / w, -700), 700)))
    return (s - s0) / max(1.0 - s0, 1e-300)


def _fit_rss(fn, t: np.ndarray, p: np.ndarray, p0: list[float]) -> float:
    """Residual sum of squares of the least-squares fit of ``fn`` (the start point's if the fit fails)."""
    import warnings

    from scipy.optimize import OptimizeWarning, curve_fit

    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)  # a flat covariance is fine: only the fit's rss is used
            popt, _ = curve_fit(fn, t, p, p0=p0, maxfev=2000)
    except (RuntimeError, ValueError):
        popt = p0
    return float(np.sum((p - fn(t, *popt)) ** 2))


def cell_permutation_null(pred: np.ndarray, obs: np.ndarray, stat, n: int = 200, seed: int = 0) -> list[float]:
    """``stat(permuted pred, obs)`` for ``n`` seeded permutations of the prediction's cells (the map's null).

    A permuted map keeps every predicted value but places it at a random (lambda, ratio) cell: the score a prediction
    gets for knowing the distribution of KD but not where the lazy and rich regions lie.
    """
    p = np.asarray(pred, dtype=np.float64)
    rng = np.random.default_rng(seed)
    flat = p.ravel()
    return [float(stat(flat[rng.permutation(flat.size)].reshape(p.shape), obs)) for _ in range(n)]


def rich_cells(log_map: np.ndarray, level: float = -3.0) -> float:
    """The number of cells with log10 KD above ``level`` (the size of the rich region of one map)."""
    m = np.asarray(log_map, dtype=np.float64)
    return float(np.sum(np.isfinite(m) & (m > level)))
