"""Grokking toy model: the weight-to-target ratio Sigma_0/S, gamma_+, the Riccati trajectory and the delay law.

docs/theory.md 6.2-6.3 (reconstruction [D*] of the paper's section 7 toy, arXiv:2502.21009). Scalar input x with
E[x^2] = v, target y = S x, N hidden units: f(x) = beta x, beta = (1/Z) sum_i a_i b_i, L = (v/2)(beta - S)^2,
Sigma = (1/(2Z)) sum_i (a_i^2 + b_i^2), S_0 = beta(0), Sigma_0 = Sigma(0). Gradient flow conserves
C = Sigma^2 - beta^2 = Sigma_0^2 - S_0^2 >= 0, and u = Sigma + beta obeys the Riccati flow
du/dt = (v/Z)(2 S u + C - u^2). Every neuron's pair is stretched by sqrt(gamma) along (1, 1) and shrunk by
1/sqrt(gamma) along (1, -1), gamma(t) = u(t)/u(0) -> gamma_+. Time is t = lr * step, except :func:`delay` (steps).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from linear_models._ode import integrate
from linear_models._riccati import riccati_solution
from linear_models._types import Predictor, Trajectory, as_f64, record_steps_array, times_array

__all__ = [
    "weight_ratio",
    "gamma_plus",
    "sigma_inf",
    "relative_weight_change",
    "riccati",
    "decayed_sigma",
    "delay",
    "simulate",
    "predictor",
]


def weight_ratio(a: Any, b: Any, Z: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Sigma = sum_i (a_i^2 + b_i^2)/(2Z) and beta = sum_i a_i b_i / Z over the last axis (docs/theory.md 2.3, 6.2).

    Args:
        a: First-layer weights (..., N).
        b: Second-layer weights (..., N).
        Z: Output normalization.

    Returns:
        (Sigma (...), beta (...)), float64; at init these are Sigma_0 and S_0.
    """
    a, b = as_f64(a), as_f64(b)
    return np.sum(a * a + b * b, axis=-1) / (2.0 * Z), np.sum(a * b, axis=-1) / Z


def gamma_plus(Sigma0: Any, S0: Any, S: Any) -> np.ndarray:
    """gamma_+ = (S + sqrt(Sigma_0^2 - S_0^2 + S^2)) / (Sigma_0 + S_0), feature-movement factor (docs/theory.md 6.2).

    gamma_+ >> 1: rich, fast generalization; gamma_+ ~ 1: lazy, grokking (the paper's Fig. 7 quantity). For S_0 = 0,
    gamma_+ = 1 + S/Sigma_0 + O((S/Sigma_0)^2) when Sigma_0 >> S and ~ 2 S/Sigma_0 when Sigma_0 << S.

    Args:
        Sigma0: Initial weight scale Sigma_0 > 0 (all arguments broadcast).
        S0: Initial output coefficient, |S_0| <= Sigma_0.
        S: Target.

    Returns:
        gamma_+, broadcast shape, float64.
    """
    sigma0, s0, s = (as_f64(x) for x in (Sigma0, S0, S))
    return (s + np.sqrt(sigma0 * sigma0 - s0 * s0 + s * s)) / (sigma0 + s0)


def sigma_inf(Sigma0: Any, S0: Any, S: Any) -> np.ndarray:
    """Final weight scale Sigma_inf = sqrt(Sigma_0^2 - S_0^2 + S^2); Sigma^2 - beta^2 conserved (docs/theory.md 6.2)."""
    sigma0, s0, s = (as_f64(x) for x in (Sigma0, S0, S))
    return np.sqrt(sigma0 * sigma0 - s0 * s0 + s * s)


def relative_weight_change(Sigma0: Any, S0: Any, S: Any, gamma: Any = None, gamma_minus: Any = None) -> np.ndarray:
    """RWC = ||theta - theta_0|| / ||theta_0|| of all weights, from the per-neuron factors (docs/theory.md 2.7, 6.2).

    RWC^2 = [(sqrt(gamma) - 1)^2 (Sigma_0 + S_0) + (sqrt(gamma_-) - 1)^2 (Sigma_0 - S_0)] / (2 Sigma_0) [D], with
    gamma = u/u_0 and gamma_- = w/w_0 (w = Sigma - beta); gamma_- = 1/gamma without weight decay. Defaults give the
    final value (gamma = gamma_+); for S_0 = 0 it is [(sqrt(g) - 1)^2 + (1/sqrt(g) - 1)^2] / 2.

    Args:
        Sigma0: Initial weight scale.
        S0: Initial output coefficient.
        S: Target.
        gamma: u(t)/u(0), default gamma_+.
        gamma_minus: w(t)/w(0), default 1/gamma.

    Returns:
        RWC, broadcast shape, float64.
    """
    sigma0, s0 = as_f64(Sigma0), as_f64(S0)
    g = gamma_plus(Sigma0, S0, S) if gamma is None else as_f64(gamma)
    gm = 1.0 / g if gamma_minus is None else as_f64(gamma_minus)
    sq = (np.sqrt(g) - 1.0) ** 2 * (sigma0 + s0) + (np.sqrt(gm) - 1.0) ** 2 * (sigma0 - s0)
    return np.sqrt(sq / (2.0 * sigma0))


def riccati(t: Any, Sigma0: Any, S0: Any, S: Any, v: Any = 1.0, Z: Any = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """beta(t) and Sigma(t) under gradient flow, in closed form (docs/theory.md 6.2, "Full trajectory (Riccati)").

    (u - u_+)/(u - u_-) = [(u_0 - u_+)/(u_0 - u_-)] exp(-2 v sqrt(S^2 + C) t / Z), u_pm = S +- sqrt(S^2 + C),
    beta = (u - C/u)/2, Sigma = (u + C/u)/2, u = Sigma + beta, C = Sigma_0^2 - S_0^2.

    Args:
        t: Continuous times, any shape broadcastable with the rest (+inf gives the limit).
        Sigma0: Initial weight scale (Sigma_0 + S_0 > 0).
        S0: Initial output coefficient.
        S: Target.
        v: Input variance E[x^2], > 0.
        Z: Output normalization, > 0.

    Returns:
        (beta, Sigma), broadcast shape, float64.
    """
    t, sigma0, s0, s, v, z = (as_f64(x) for x in (t, Sigma0, S0, S, v, Z))
    c = np.maximum(sigma0 * sigma0 - s0 * s0, 0.0)
    u = riccati_solution(t, sigma0 + s0, s, c, v / z)
    beta, sig = 0.5 * (u - c / u), 0.5 * (u + c / u)
    at0 = t == 0  # exact initial values
    return np.where(at0, s0, beta), np.where(at0, sigma0, sig)


def decayed_sigma(t: Any, Sigma0: Any, S0: Any, beta: Any, wd: Any) -> np.ndarray:
    """Weight scale under an L2 penalty (wd/2)||theta||^2 once the fit holds beta: sqrt(C_0 e^{-4 wd t} + beta^2).

    Gradient flow with the penalty gives d(Sigma^2 - beta^2)/dt = -4 wd (Sigma^2 - beta^2) exactly [D*], so
    Sigma^2 = beta^2 + (Sigma_0^2 - S_0^2) e^{-4 wd t}; after the lazy fit beta ~ S. Sigma falls to ~S after
    ln(Sigma_0/S)/(2 wd): the delay law (:func:`delay`).

    Args:
        t: Continuous times.
        Sigma0: Initial weight scale.
        S0: Initial output coefficient.
        beta: The fitted output coefficient (~S).
        wd: Weight decay.

    Returns:
        Sigma(t), broadcast shape, float64.
    """
    t, sigma0, s0, beta, wd = (as_f64(x) for x in (t, Sigma0, S0, beta, wd))
    return np.sqrt((sigma0 * sigma0 - s0 * s0) * np.exp(-4.0 * wd * t) + beta * beta)


def delay(ratio: Any, lr: Any, wd: Any, c: Any = 1.0) -> np.ndarray:
    """Predicted grokking delay in steps: max(0, ln(ratio / c)) / (2 lr wd) (docs/theory.md 6.3) [D*].

    Under decoupled weight decay theta <- (1 - lr wd) theta - lr grad, quadratic weight quantities decay as
    exp(-2 lr wd step), and the rich transition starts when Sigma ~ c S. Test the slope 1/(2 lr wd) in ln(ratio), the
    1/lr and 1/wd scaling; the intercept c is problem-specific. Not valid for Adam with coupled L2.

    Args:
        ratio: Weight-to-target ratio Sigma_0/S (all arguments broadcast).
        lr: Learning rate.
        wd: Decoupled weight decay.
        c: Threshold, O(1).

    Returns:
        Steps, broadcast shape, float64 (multiply by lr for continuous time).
    """
    ratio, lr, wd, c = (as_f64(x) for x in (ratio, lr, wd, c))
    return np.maximum(0.0, np.log(ratio / c)) / (2.0 * lr * wd)


def simulate(
    a0: Any,
    b0: Any,
    S: float,
    v: float = 1.0,
    Z: float = 1.0,
    *,
    lr: float,
    steps: int,
    record_steps: Any = None,
    wd: float = 0.0,
) -> Trajectory:
    """GD on the toy, with decoupled weight decay, in float64.

    a <- (1 - lr wd) a - lr (v/Z) b (beta - S), b <- (1 - lr wd) b - lr (v/Z) a (beta - S), beta = sum a b / Z.

    Args:
        a0: Initial first-layer weights (N,).
        b0: Initial second-layer weights (N,).
        S: Target.
        v: Input variance.
        Z: Output normalization.
        lr: Learning rate.
        steps: Number of updates.
        record_steps: Steps to record: a list, an interval, or None.
        wd: Decoupled weight decay.

    Returns:
        Trajectory with ``beta``, ``Sigma``, ``gamma`` (= u/u_0), ``gamma_minus`` (= w/w_0), ``rwc`` (from the
        weights) and ``loss`` (= v/2 (beta - S)^2), each (R,), plus ``a`` and ``b`` (R, N).
    """
    a, b = (np.array(as_f64(x), dtype=np.float64) for x in (a0, b0))
    a0_, b0_ = a.copy(), b.copy()
    rec = record_steps_array(record_steps, steps)
    out_a, out_b = [], []
    j = 0
    for step in range(steps + 1):
        if step == rec[j]:
            out_a.append(a.copy())
            out_b.append(b.copy())
            j += 1
            if j == rec.size:
                break
        r = v / Z * (np.sum(a * b) / Z - S)
        a, b = (1.0 - lr * wd) * a - lr * r * b, (1.0 - lr * wd) * b - lr * r * a
    aa, bb = np.stack(out_a), np.stack(out_b)
    sig, beta = weight_ratio(aa, bb, Z)
    u0, w0 = sig[0] + beta[0], sig[0] - beta[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        gm = (sig - beta) / w0
    rwc = np.sqrt(np.sum((aa - a0_) ** 2 + (bb - b0_) ** 2, axis=1) / np.sum(a0_**2 + b0_**2))
    values = {
        "beta": beta,
        "Sigma": sig,
        "gamma": (sig + beta) / u0,
        "gamma_minus": gm,
        "rwc": rwc,
        "loss": 0.5 * v * (beta - S) ** 2,
        "a": aa,
        "b": bb,
    }
    return Trajectory(lr * rec.astype(np.float64), values, step=rec)


def predictor(Sigma0: float, S0: float, S: float, v: float = 1.0, Z: float = 1.0, wd: float = 0.0) -> Predictor:
    """Gradient-flow prediction of :func:`simulate` from (Sigma_0, S_0) alone.

    Without weight decay the closed form :func:`riccati`; with wd > 0 the flows du/dt = -2u (v/Z (beta - S) + wd),
    dw/dt = 2w (v/Z (beta - S) - wd) of u = Sigma + beta, w = Sigma - beta (beta = (u - w)/2) are integrated with
    scipy (DOP853, rtol 1e-11). RWC uses the common per-neuron factors (:func:`relative_weight_change`).

    Args:
        Sigma0: Initial weight scale.
        S0: Initial output coefficient.
        S: Target.
        v: Input variance.
        Z: Output normalization.
        wd: L2 / decoupled weight decay (per unit t).

    Returns:
        A function t (T,) -> Trajectory with ``beta``, ``Sigma``, ``gamma``, ``gamma_minus``, ``rwc``, ``loss``.
    """
    u0, w0 = Sigma0 + S0, Sigma0 - S0
    k = v / Z

    def finish(t: np.ndarray, beta: np.ndarray, sig: np.ndarray) -> Trajectory:
        g = (sig + beta) / u0
        with np.errstate(divide="ignore", invalid="ignore"):
            gm = np.where(w0 > 0, (sig - beta) / w0, 1.0)
        rwc = relative_weight_change(Sigma0, S0, S, g, gm)
        values = {
            "beta": beta,
            "Sigma": sig,
            "gamma": g,
            "gamma_minus": gm,
            "rwc": rwc,
            "loss": 0.5 * v * (beta - S) ** 2,
        }
        return Trajectory(t, values)

    def closed_form(t: Any) -> Trajectory:
        t = times_array(t)
        beta, sig = riccati(t, Sigma0, S0, S, v, Z)
        return finish(t, beta, sig)

    def ode(t: Any) -> Trajectory:
        t = times_array(t)

        def rhs(_: float, y: np.ndarray) -> np.ndarray:
            u, w = y
            r = k * (0.5 * (u - w) - S)
            return np.array([-2.0 * u * (r + wd), 2.0 * w * (r - wd)])

        y = integrate(rhs, np.array([u0, w0]), t, rtol=1e-11, where="grokking.predictor")
        u, w = y[:, 0], y[:, 1]
        return finish(t, 0.5 * (u - w), 0.5 * (u + w))

    return closed_form if wd == 0 else ode
