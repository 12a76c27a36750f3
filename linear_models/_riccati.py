"""The scalar Riccati flow shared by the diagonal unit at any imbalance and the grokking toy.

Both reduce to dw/dt = k (2 m w + C - w^2), C >= 0, whose roots are w_pm = m +- sqrt(m^2 + C):
- diagonal unit (docs/theory.md 3.1): w = s + sqrt(s^2 + q^2), q = |lambda|/2, C = q^2, m = S, k = v; s = (w - C/w)/2.
- grokking toy (docs/theory.md 6.2): w = Sigma + beta, C = Sigma_0^2 - S_0^2, m = S, k = v/Z; beta = (w - C/w)/2.
"""

from __future__ import annotations

import numpy as np


def riccati_roots(m: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Roots w_+ >= 0 >= w_- of w^2 - 2 m w - C and R = sqrt(m^2 + C), without cancellation.

    Args:
        m: Target, any shape.
        c: Conserved quantity C >= 0, broadcastable with m.

    Returns:
        (w_plus, w_minus, R), broadcast shape, float64.
    """
    r = np.sqrt(m * m + c)
    with np.errstate(divide="ignore", invalid="ignore"):
        # w_+ w_- = -C: compute the small root from the large one so that C << m^2 keeps its digits
        w_plus = np.where(m >= 0, m + r, c / (r - m))
        w_minus = np.where(m >= 0, -c / (m + r), m - r)
    w_plus = np.where((m < 0) & (c == 0), 0.0, w_plus)
    w_minus = np.where((m >= 0) & (c == 0), 0.0, w_minus)
    return w_plus, w_minus, r


def riccati_solution(t: np.ndarray, w0: np.ndarray, m: np.ndarray, c: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Solve dw/dt = k (2 m w + C - w^2), w(0) = w0 >= 0, in closed form.

    (w - w_+)/(w - w_-) = [(w0 - w_+)/(w0 - w_-)] exp(-2 k R t), R = sqrt(m^2 + C), rearranged as
    w = w_- + g0 / (g0 phi + exp(-2 k R t)),  g0 = w0 - w_- >= 0,  phi = (1 - exp(-2 k R t)) / (2 R),
    which has no cancellation, is exact at t = 0 (w0) and t = inf (w_+), and tends to w0 / (1 + k w0 t) at the double
    root R = 0 (phi -> k t).

    Args:
        t: Continuous times, any shape broadcastable with the rest (may be +inf).
        w0: Initial value, >= w_- (the callers pass w0 >= 0 >= w_-).
        m: Target of the flow.
        c: C >= 0.
        k: Rate constant, > 0.

    Returns:
        w(t), broadcast shape, float64.
    """
    w_plus, w_minus, r = riccati_roots(m, c)
    x = 2.0 * k * r * t
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        phi = np.where(r > 0, -np.expm1(-x) / (2.0 * r), k * t)
        g0 = w0 - w_minus
        w = w_minus + g0 / (g0 * phi + np.exp(-x))
    return np.where(g0 == 0, w_minus, w)
