"""Diagonal linear network f(x) = sum_i x_i a_i b_i: closed forms, the mode ODE and gradient descent.

Model (docs/theory.md 1.2, 3.1; Nam et al. 2025, arXiv:2502.21009, the running example): inputs with E[x_i x_j] =
v_i delta_ij, target y = sum_i S_i x_i, loss L = 1/2 sum_i v_i (a_i b_i - S_i)^2. Each mode i is independent; its
strength is s_i = a_i b_i and its imbalance lambda_i = a_i^2 - b_i^2 (suite sign, docs/theory.md 2.4) is conserved by
gradient flow. Time is t = lr * step (docs/theory.md 2.1). Arrays hold modes along the last axis; every function
broadcasts its arguments.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from linear_models._ode import integrate
from linear_models._riccati import riccati_solution
from linear_models._types import Predictor, Trajectory, as_f64, record_steps_array, times_array

__all__ = [
    "balanced_solution",
    "solution",
    "time_to_reach",
    "ode_solution",
    "linear_solution",
    "linear_time_to_reach",
    "imbalance",
    "imbalance_decay",
    "imbalance_step_factor",
    "simulate",
    "simulate_linear",
    "predictor",
]


def balanced_solution(t: Any, S: Any, s0: Any, v: Any = 1.0) -> np.ndarray:
    """Strength of a balanced mode (lambda = 0), the logistic sigmoid of docs/theory.md eq. (3.1.2).

    ds/dt = 2 v s (S - s), so s(t) = S / (1 + (S/s0 - 1) exp(-2 v S t)) (Saxe et al. 2014, arXiv:1312.6120;
    the paper's diagonal example, arXiv:2502.21009). Modes are learned in order of v S.

    Args:
        t: Continuous times (lr * step), any shape broadcastable with S, s0, v; +inf gives S.
        S: Target strength, > 0.
        s0: Initial strength a(0) b(0), > 0 (at lambda = 0 a mode with s0 <= 0 never learns; use :func:`solution`).
        v: Input variance E[x_i^2], > 0.

    Returns:
        s(t), broadcast shape of (t, S, s0, v), float64.

    Raises:
        ValueError: If S, s0 or v is not positive.

    Example:
        >>> float(balanced_solution(0.0, S=2.0, s0=1e-3))
        0.001
    """
    t, S, s0, v = (as_f64(x) for x in (t, S, s0, v))
    if np.any(S <= 0) or np.any(s0 <= 0) or np.any(v <= 0):
        raise ValueError("balanced_solution needs S > 0, s0 > 0, v > 0; use diagonal.solution for other signs")
    # logistic form: s0 e^{2vSt} / (...) overflows once vSt > ~355
    s = S / (1.0 + (S / s0 - 1.0) * np.exp(-2.0 * v * S * t))
    return np.where(t == 0, s0, s)  # exact initial value


def solution(t: Any, S: Any, s0: Any, lam: Any, v: Any = 1.0) -> np.ndarray:
    """Strength s(t) of a mode with any imbalance lambda, in closed form.

    Solves ds/dt = v (S - s) sqrt(lambda^2 + 4 s^2) (docs/theory.md eq. 3.1.1) exactly. With q = |lambda|/2 the variable
    w = s + sqrt(s^2 + q^2) obeys the scalar Riccati flow dw/dt = v (2 S w + q^2 - w^2), so
    (w - w_+)/(w - w_-) = [(w0 - w_+)/(w0 - w_-)] exp(-2 v sqrt(S^2 + q^2) t), w_pm = S +- sqrt(S^2 + q^2), and
    s = (w - q^2/w)/2. This is the sinh substitution s = q sinh(theta) of Dominé et al. 2024 (arXiv:2409.14623,
    Thm. 3.2.1 in Anguita's thesis), derived here [D]. At lambda = 0 it reduces to :func:`balanced_solution`; at
    large |lambda| the approach is exponential at rate v |lambda| (lazy). Because the flow is odd in (s, S), a mode
    with s0 < 0 is solved as -s(t; -S, -s0). At lambda = 0 and s0 = 0 the mode stays at the saddle 0.

    Args:
        t: Continuous times, any shape broadcastable with the rest; +inf allowed.
        S: Target strength (any sign).
        s0: Initial strength a(0) b(0) (any sign).
        lam: Conserved imbalance a^2 - b^2 (its sign does not matter here).
        v: Input variance, > 0.

    Returns:
        s(t), broadcast shape, float64.
    """
    t, S, s0, lam, v = np.broadcast_arrays(*(as_f64(x) for x in (t, S, s0, lam, v)))
    if np.any(v <= 0):
        raise ValueError("solution needs v > 0")
    sign = np.where(s0 < 0, -1.0, 1.0)
    m, x0 = sign * S, sign * s0  # now x0 >= 0
    c = 0.25 * lam * lam  # q^2
    w0 = x0 + np.sqrt(x0 * x0 + c)
    w = riccati_solution(t, w0, m, c, v)
    s = 0.5 * (w - c / np.where(w > 0, w, 1.0))  # w = 0 only when c = 0
    return np.where(t == 0, s0, sign * s)  # exact initial value, not s0 after a round trip through w


def time_to_reach(s: Any, S: Any, s0: Any, lam: Any, v: Any = 1.0) -> np.ndarray:
    """Continuous time at which a mode with imbalance lambda reaches strength s, docs/theory.md eq. (3.1.3).

    With q = |lambda|/2, R = sqrt(S^2 + q^2) and F(x) = ln((q^2 + S x + R sqrt(x^2 + q^2)) / |S - x|),
    t(s0 -> s) = (F(s) - F(s0)) / (2 v R) [D*; integrates ds / (v (S - s) sqrt(lambda^2 + 4 s^2))]. At lambda = 0 and
    s0 > 0 it is ln(s (S - s0) / (s0 (S - s))) / (2 v S) (eq. 3.1.2). The numerator is evaluated without
    cancellation when S x < 0, so q << |x| stays accurate.

    Args:
        s: Strength to reach, any shape broadcastable with the rest.
        S: Target strength (any sign).
        s0: Initial strength (any sign).
        lam: Imbalance a^2 - b^2 (only |lambda| matters).
        v: Input variance, > 0.

    Returns:
        t >= 0, broadcast shape, float64; 0 where s == s0, +inf where the flow never reaches s (s beyond the target,
        behind s0, or across the saddle s = 0 when lambda = 0).
    """
    s, S, s0, lam, v = np.broadcast_arrays(*(as_f64(x) for x in (s, S, s0, lam, v)))
    flip = np.where(S < 0, -1.0, 1.0)  # the flow is odd in (s, S, s0): work with S >= 0
    s, S, s0 = flip * s, flip * S, flip * s0
    q = 0.5 * np.abs(lam)
    between = ((s0 < s) & (s < S)) | ((s > S) & (s < s0))
    saddle = (q == 0) & (s0 * s <= 0)  # at lambda = 0 the sign of s never changes and s = 0 is never left
    reachable = between & ~saddle
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = np.sqrt(S * S + q * q)
        t_imb = (_log_num(s, S, q, r) - _log_num(s0, S, q, r)) / (2.0 * v * r)
        g = np.log(np.abs(s)) - np.log(np.abs(S - s)) - np.log(np.abs(s0)) + np.log(np.abs(S - s0))
        t_bal = np.where(S > 0, np.sign(s0) * g / (2.0 * v * S), (1.0 / np.abs(s) - 1.0 / np.abs(s0)) / (2.0 * v))
    t = np.where(q > 0, t_imb, t_bal)
    t = np.where(reachable, t, np.inf)
    return np.where(s == s0, 0.0, t)


def ode_solution(
    t: Any, S: Any, s0: Any, lam: Any, v: Any = 1.0, rtol: float = 1e-10, atol: float = 1e-13
) -> np.ndarray:
    """Strength s(t) from the mode ODE ds/dt = v (S - s) sqrt(lambda^2 + 4 s^2) (docs/theory.md eq. 3.1.1), by scipy.

    An independent route to :func:`solution` (DOP853 at tight tolerances); all modes are integrated together.

    Args:
        t: Continuous times, shape (T,), >= 0, any order.
        S: Targets, broadcastable with the others to a common shape (n...) of modes.
        s0: Initial strengths.
        lam: Imbalances a^2 - b^2.
        v: Input variances, > 0.
        rtol: Relative tolerance of the integrator.
        atol: Absolute tolerance of the integrator, in units of s.

    Returns:
        s, shape (T, *n), float64.
    """
    t = times_array(t)
    S, s0, lam, v = np.broadcast_arrays(*(as_f64(x) for x in (S, s0, lam, v)))
    shape = S.shape
    S, s0, lam, v = (x.ravel() for x in (S, s0, lam, v))

    def rhs(_: float, s: np.ndarray) -> np.ndarray:
        return v * (S - s) * np.sqrt(lam * lam + 4.0 * s * s)

    return integrate(rhs, s0, t, rtol=rtol, atol=atol, where="ode_solution").reshape(t.shape + shape)


def linear_solution(t: Any, S: Any, theta0: Any, v: Any = 1.0) -> np.ndarray:
    """Plain linear model f = sum_i theta_i x_i, for contrast (docs/theory.md 1.2, 3.1).

    theta(t) = S + (theta0 - S) exp(-v t): exponential, half-time ln 2 / v independent of S, so no target-dependent
    order (the negative control of the paper's Fig. 3, arXiv:2502.21009).

    Args:
        t: Continuous times, broadcastable with the rest.
        S: Target.
        theta0: Initial coefficient.
        v: Input variance, > 0.

    Returns:
        theta(t), broadcast shape, float64.
    """
    t, S, theta0, v = (as_f64(x) for x in (t, S, theta0, v))
    return S + (theta0 - S) * np.exp(-v * t)


def linear_time_to_reach(theta: Any, S: Any, theta0: Any, v: Any = 1.0) -> np.ndarray:
    """Time for the plain linear model to reach theta: ln((S - theta0)/(S - theta)) / v (+inf if never).

    Args:
        theta: Value to reach (all arguments broadcast).
        S: Target.
        theta0: Initial value.
        v: Input variance, > 0.

    Returns:
        t, broadcast shape, float64.
    """
    theta, S, theta0, v = (as_f64(x) for x in (theta, S, theta0, v))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (S - theta0) / (S - theta)
        t = np.log(ratio) / v
    return np.where((ratio >= 1) & np.isfinite(t), t, np.inf)


def imbalance(a: Any, b: Any) -> np.ndarray:
    """The conserved quantity lambda = a^2 - b^2 (suite sign, first layer minus second; docs/theory.md 2.4, 3.1)."""
    a, b = as_f64(a), as_f64(b)
    return a * a - b * b


def imbalance_decay(t: Any, lam0: Any, wd: Any) -> np.ndarray:
    """Imbalance under gradient flow with L2 penalty (wd/2)(a^2 + b^2): lambda(t) = lambda0 exp(-2 wd t).

    docs/theory.md 3.1, "Weight decay shrinks the imbalance" [D]. Holds for every mode whatever S and v.

    Args:
        t: Continuous times (all arguments broadcast).
        lam0: Initial imbalance.
        wd: Weight decay coefficient (per unit t).

    Returns:
        lambda(t), broadcast shape, float64.
    """
    t, lam0, wd = (as_f64(x) for x in (t, lam0, wd))
    return lam0 * np.exp(-2.0 * wd * t)


def imbalance_step_factor(residual: Any, lr: float, wd: float = 0.0) -> np.ndarray:
    """Exact one-step factor of the imbalance under discrete GD: lambda_+ = lambda [(1 - lr wd)^2 - lr^2 r^2].

    docs/theory.md 3.1 [D]; r = v (a b - S) is the mode residual. Without weight decay the change per step is
    -lr^2 r^2 lambda = O(lr^2), i.e. O(lr) per unit of continuous time: finite steps slowly balance the layers.

    Args:
        residual: r = v (a b - S), any shape.
        lr: Learning rate.
        wd: Weight decay coefficient.

    Returns:
        The factor, shape of residual, float64.
    """
    r = as_f64(residual)
    return (1.0 - lr * wd) ** 2 - lr * lr * r * r


def simulate(
    a0: Any,
    b0: Any,
    S: Any,
    v: Any = 1.0,
    *,
    lr: float,
    steps: int,
    record_steps: Any = None,
    wd: float = 0.0,
) -> Trajectory:
    """Full-batch gradient descent on the population loss of the diagonal network, in float64.

    a <- a - lr (v b (a b - S) + wd a), b <- b - lr (v a (a b - S) + wd b), simultaneously (docs/theory.md 1.2, 3.1),
    i.e. GD on L = 1/2 sum_i v_i (a_i b_i - S_i)^2 + (wd/2)(|a|^2 + |b|^2).

    Args:
        a0: First-layer weights, shape (..., n) (modes last; a scalar is one mode).
        b0: Second-layer weights, broadcastable with a0.
        S: Targets per mode, broadcastable with a0.
        v: Input variances per mode, broadcastable with a0.
        lr: Learning rate (time per step).
        steps: Number of updates.
        record_steps: Steps to record (list), an interval (int), or None for every step.
        wd: L2 weight decay coefficient.

    Returns:
        Trajectory at t = lr * step with values ``a``, ``b``, ``s`` (= a b), ``lam`` (= a^2 - b^2), each
        (R, ..., n), and ``loss`` (R, ...), the loss without the penalty.
    """
    a, b, S, v = (
        np.array(x, dtype=np.float64) for x in np.broadcast_arrays(*(np.atleast_1d(as_f64(x)) for x in (a0, b0, S, v)))
    )
    rec = record_steps_array(record_steps, steps)
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("a", "b")}
    j = 0
    for step in range(steps + 1):
        if step == rec[j]:
            out["a"].append(a.copy())
            out["b"].append(b.copy())
            j += 1
            if j == rec.size:
                break
        r = v * (a * b - S)  # dL/ds per mode
        a, b = a - lr * (r * b + wd * a), b - lr * (r * a + wd * b)
    return Trajectory(lr * rec.astype(np.float64), _mode_values(np.stack(out["a"]), np.stack(out["b"]), S, v), step=rec)


def simulate_linear(
    theta0: Any, S: Any, v: Any = 1.0, *, lr: float, steps: int, record_steps: Any = None
) -> Trajectory:
    """Gradient descent on the plain linear model, theta <- theta - lr v (theta - S) (contrast of docs/theory.md 3.1).

    Args:
        theta0: Initial coefficients, shape (..., n).
        S: Targets, broadcastable with theta0.
        v: Input variances, broadcastable with theta0.
        lr: Learning rate.
        steps: Number of updates.
        record_steps: As in :func:`simulate`.

    Returns:
        Trajectory with ``s`` (= theta, (R, ..., n)) and ``loss`` ((R, ...)).
    """
    theta, S, v = (
        np.array(x, dtype=np.float64) for x in np.broadcast_arrays(*(np.atleast_1d(as_f64(x)) for x in (theta0, S, v)))
    )
    rec = record_steps_array(record_steps, steps)
    # the linear update is theta - S <- (1 - lr v)(theta - S): evaluate it in closed form at the record steps
    th = S + (theta - S) * (1.0 - lr * v) ** rec.reshape((-1,) + (1,) * theta.ndim)
    return Trajectory(
        lr * rec.astype(np.float64), {"s": th, "loss": 0.5 * np.sum(v * (th - S) ** 2, axis=-1)}, step=rec
    )


def predictor(a0: Any, b0: Any, S: Any, v: Any = 1.0, wd: float = 0.0) -> Predictor:
    """Gradient-flow prediction for the diagonal network, comparable with :func:`simulate`.

    Without weight decay it uses the closed form :func:`solution` with the conserved lambda = a0^2 - b0^2 and
    s0 = a0 b0; the layers follow from a^2 + b^2 = sqrt(lambda^2 + 4 s^2) (docs/theory.md 3.1): the layer with the
    larger square keeps its sign and the other takes the sign of s. With wd > 0 there is no closed form, and the
    predictor integrates da/dt = -v b (a b - S) - wd a, db/dt = -v a (a b - S) - wd b with scipy (DOP853, rtol 1e-10).

    Args:
        a0: First-layer weights, as in :func:`simulate`.
        b0: Second-layer weights.
        S: Targets per mode.
        v: Input variances per mode.
        wd: L2 weight decay coefficient.

    Returns:
        A function t (T,) -> Trajectory with the keys of :func:`simulate`.
    """
    a0, b0, S, v = (
        np.array(x, dtype=np.float64) for x in np.broadcast_arrays(*(np.atleast_1d(as_f64(x)) for x in (a0, b0, S, v)))
    )
    lam0, s0 = imbalance(a0, b0), a0 * b0

    def closed_form(t: Any) -> Trajectory:
        t = times_array(t)
        tt = t.reshape((-1,) + (1,) * a0.ndim)
        s = solution(tt, S, s0, lam0, v)
        lam = np.broadcast_to(lam0, s.shape)
        k = np.sqrt(lam * lam + 4.0 * s * s)  # a^2 + b^2
        big = np.sqrt(0.5 * (k + np.abs(lam)))  # the larger layer keeps its sign (it never crosses 0)
        small = np.sqrt(np.maximum(0.5 * (k - np.abs(lam)), 0.0))
        a_big = lam >= 0
        sgn_big = np.where(a_big, np.sign(a0), np.sign(b0))
        sgn_small = np.sign(s) * sgn_big
        a = np.where(a_big, sgn_big * big, sgn_small * small)
        b = np.where(a_big, sgn_small * small, sgn_big * big)
        return Trajectory(t, _mode_values(a, b, S, v))

    def ode(t: Any) -> Trajectory:
        t = times_array(t)
        shape, n = a0.shape, a0.size

        def rhs(_: float, y: np.ndarray) -> np.ndarray:
            a, b = y[:n], y[n:]
            r = v.ravel() * (a * b - S.ravel())
            return np.concatenate([-r * b - wd * a, -r * a - wd * b])

        y0 = np.concatenate([a0.ravel(), b0.ravel()])
        y = integrate(rhs, y0, t, where="diagonal.predictor")
        a, b = y[:, :n].reshape((-1,) + shape), y[:, n:].reshape((-1,) + shape)
        return Trajectory(t, _mode_values(a, b, S, v))

    return closed_form if wd == 0 else ode


def _mode_values(a: np.ndarray, b: np.ndarray, S: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
    """The recorded quantities of a diagonal network from its layers: a, b, s, lam (T, ..., n), loss (T, ...)."""
    s = a * b
    return {"a": a, "b": b, "s": s, "lam": a * a - b * b, "loss": 0.5 * np.sum(v * (s - S) ** 2, axis=-1)}


def _log_num(x: np.ndarray, S: np.ndarray, q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """F(x) = ln((q^2 + S x + R sqrt(x^2 + q^2)) / |S - x|) of eq. (3.1.3), without cancellation for S x < 0."""
    rq = np.sqrt(x * x + q * q)
    # S x + R rq = q^2 (x^2 + R^2) / (R rq - S x): use it when S x < 0, where the direct sum cancels
    with np.errstate(divide="ignore", invalid="ignore"):
        direct = q * q + S * x + r * rq
        stable = q * q * (1.0 + (x * x + r * r) / (r * rq - S * x))
        return np.log(np.where(S * x >= 0, direct, stable)) - np.log(np.abs(S - x))
