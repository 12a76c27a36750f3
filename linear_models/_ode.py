"""One wrapper around scipy's solve_ivp, shared by every ODE-based predictor in :mod:`linear_models`."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.integrate import solve_ivp


def integrate(
    rhs: Callable[[float, np.ndarray], np.ndarray],
    y0: np.ndarray,
    t: np.ndarray,
    *,
    rtol: float = 1e-10,
    atol: float = 1e-13,
    where: str = "linear_models",
) -> np.ndarray:
    """Integrate dy/dt = rhs(t, y) from y(0) = y0 and return y at the times t, in the order given.

    Uses DOP853 (an explicit 8th-order Runge-Kutta method; the flows here are not stiff).

    Args:
        rhs: The vector field, (t, y (n,)) -> (n,).
        y0: Initial state, (n,).
        t: Times >= 0, shape (T,), any order, repeats allowed; t = 0 returns y0 exactly.
        rtol: Relative tolerance.
        atol: Absolute tolerance.
        where: Caller name for the error message.

    Returns:
        y, shape (T, n), float64.

    Raises:
        RuntimeError: If the solver fails.
    """
    y0 = np.asarray(y0, dtype=np.float64)
    out = np.empty((t.size, y0.size))
    out[t == 0] = y0
    pos = t > 0
    if np.any(pos):
        grid = np.unique(t[pos])
        sol = solve_ivp(rhs, (0.0, float(grid[-1])), y0, method="DOP853", t_eval=grid, rtol=rtol, atol=atol)
        if not sol.success:
            raise RuntimeError(f"{where}: solve_ivp failed: {sol.message}")
        out[pos] = sol.y.T[np.searchsorted(grid, t[pos])]
    return out
