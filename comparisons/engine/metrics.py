"""Curve and weight metrics shared by the phenomena, each written once with its convention in its docstring.

- :func:`first_crossing`: when a curve first reaches a level, with the interpolation named by the caller;
- :func:`relative_change`: relative weight change ||W(t) - W(0)||_F / ||W(0)||_F (docs/theory.md 2.7);
- :func:`effective_rank`: the entropy effective rank of a matrix (Roy & Vetterli 2007).

Every function computes in float64 and returns NaN where its quantity is undefined (a curve that never reaches its
level, a zero initial weight, a zero matrix), never 0 or inf.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

INTERPOLATIONS = ("none", "linear", "log")


def _f64(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def first_crossing(x: Any, y: Any, level: float, interp: str = "none") -> float:
    """The first x at which the curve y(x) reaches ``level`` (y >= level); NaN if it never does.

    Conventions (``interp``), for a first sample j at or above the level and the sample j - 1 before it:

    - ``"none"``: x[j] itself, the first eval step that has reached the level (grokking's t_fit and t_gen);
    - ``"linear"``: the level crossing of the straight line through (x[j-1], y[j-1]) and (x[j], y[j]) (emergence);
    - ``"log"``: the same line in log x, i.e. exp of the crossing in (log x, y) (neural collapse's half-rise times);
      when x[j-1] <= 0 it falls back to x[j].

    A curve that starts at or above the level crosses at x[0]. NaN samples never count as reaching the level.

    Args:
        x: Increasing sample positions (steps or times), shape (T,).
        y: The curve at those positions, shape (T,).
        level: The level.
        interp: ``"none"``, ``"linear"`` or ``"log"``.

    Returns:
        The crossing position as a float, NaN when the curve never reaches the level.
    """
    if interp not in INTERPOLATIONS:
        raise ValueError(f"interp={interp!r}: choose one of {', '.join(INTERPOLATIONS)}")
    xs, ys = _f64(x), _f64(y)
    hit = np.nonzero(np.nan_to_num(ys, nan=-np.inf) >= level)[0]
    if hit.size == 0:
        return math.nan
    j = int(hit[0])
    if j == 0 or interp == "none" or (interp == "log" and xs[j - 1] <= 0):
        return float(xs[j])
    frac = (level - ys[j - 1]) / (ys[j] - ys[j - 1])
    if interp == "linear":
        return float(xs[j - 1] + frac * (xs[j] - xs[j - 1]))
    return float(np.exp(np.log(xs[j - 1]) + frac * (np.log(xs[j]) - np.log(xs[j - 1]))))


def relative_change(now: Sequence[Any] | Any, init: Sequence[Any] | Any) -> float:
    """Relative weight change ||W(t) - W(0)||_F / ||W(0)||_F (docs/theory.md 2.7), float64.

    Args:
        now: One array/tensor, or a sequence of them (their norms are pooled: the change of all of them together).
        init: The same at step 0.

    Returns:
        The ratio; NaN when W(0) = 0.
    """
    now_l = list(now) if isinstance(now, (list, tuple)) else [now]
    init_l = list(init) if isinstance(init, (list, tuple)) else [init]
    num = sum(float(np.sum((_f64(a) - _f64(b)) ** 2)) for a, b in zip(now_l, init_l, strict=True))
    den = sum(float(np.sum(_f64(b) ** 2)) for b in init_l)
    return math.sqrt(num) / math.sqrt(den) if den > 0 else math.nan


def effective_rank(m: Any) -> float:
    """Entropy effective rank exp(H(p)), p_k = s_k / sum s, of a matrix (Roy & Vetterli 2007), float64.

    1 for a rank-one matrix, min(rows, cols) for a flat spectrum. A tensor with more than 2 dims (a conv kernel
    (out, in, k, k)) is reshaped to (out, in k k).

    Returns:
        The effective rank; NaN for the zero matrix (no spectrum to take the entropy of).
    """
    a = _f64(m)
    a = a.reshape(a.shape[0], -1)
    s = np.linalg.svd(a, compute_uv=False)
    total = float(s.sum())
    if total <= 0:
        return math.nan
    p = s[s > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))
