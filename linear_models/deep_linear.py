"""Deep linear networks W_L ... W_1 (L >= 2): the Saxe et al. mode solution from data, and the depth-L mode ODE.

Conventions (docs/theory.md 2.2, 2.5, 3.2): X (N, d) and Y (N, c) hold samples in rows; whitened means X^T X / N = I_d;
Sigma_yx = Y^T X / N = U diag(s) V^T with s_1 >= s_2 >= ...; loss L = 1/(2N) sum_n ||f(x_n) - y_n||^2; time
t = lr * step. From a balanced init aligned with (U, V), the product is U diag(u(t)) V^T and each mode strength u_a
follows du/dt = L u^{2 - 2/L} (s_a - u) (Saxe, McClelland & Ganguli 2014, arXiv:1312.6120). The two-layer NTK, the
kernel distance and the lazy/rich inits live in :mod:`linear_models.two_layer` and are re-exported here.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import numpy as np

from linear_models._ode import integrate
from linear_models._types import Predictor, Trajectory, as_f64, record_steps_array, times_array
from linear_models.diagonal import solution as _scalar_mode
from linear_models.ntk import kernel_distance, ntk_distance, ntk_grams, ntk_two_layer
from linear_models.two_layer import lambda_balanced_init, zero_output_init

__all__ = [
    "SaxeModes",
    "whiten",
    "io_modes",
    "saxe_modes",
    "saxe_loss",
    "mode_strength",
    "mode_time_to_reach",
    "aligned_init",
    "simulate",
    "predictor",
    "ntk_two_layer",
    "ntk_grams",
    "ntk_distance",
    "kernel_distance",
    "lambda_balanced_init",
    "zero_output_init",
]


logger = logging.getLogger(__name__)


class SaxeModes(NamedTuple):
    """Per-mode strengths over time and the singular values they approach (unpacks as ``u, s``).

    Attributes:
        u: Mode strengths u_a(t), shape (T, r), r = min(c, d), float64.
        s: Singular values of Sigma_yx, shape (r,), descending.
    """

    u: np.ndarray
    s: np.ndarray


def whiten(X: Any, tol: float | None = None) -> np.ndarray:
    """Whiten inputs: centre, thin SVD X = U S V^T, return sqrt(N) U (docs/theory.md 2.5).

    Equal to the paper's StandardScaler + PCA recipe up to a rotation of input space [C]. The one whitening of the
    theory side (``tasks.whitening`` is its fitted-map form for a task's train and test inputs).

    Args:
        X: (N, d), rows are samples.
        tol: None: X must have full column rank (N > d). A number: whiten within the span, keeping the r columns of U
            whose singular values exceed ``tol`` times the largest.

    Returns:
        X_w (N, d) (or (N, r)) with zero column means and X_w^T X_w / N = I.
    """
    x = as_f64(X)
    x = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    if tol is not None:
        r = int((s > s[0] * tol).sum()) if s.size and s[0] > 0 else 0
        return np.sqrt(x.shape[0]) * u[:, :r]
    if s[-1] <= 1e-12 * s[0]:
        raise ValueError(f"whiten: centred X (N={x.shape[0]}, d={x.shape[1]}) is rank deficient; needs N > d")
    return np.sqrt(x.shape[0]) * u


def io_modes(X: Any, Y: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The input-output modes: thin SVD of Sigma_yx = Y^T X / N (docs/theory.md 3.2).

    Args:
        X: Inputs (N, d), rows are samples.
        Y: Targets (N, c).

    Returns:
        (U (c, r), s (r,) descending, Vt (r, d)), r = min(c, d).
    """
    x, y = as_f64(X), as_f64(Y)
    return np.linalg.svd(y.T @ x / x.shape[0], full_matrices=False)


def saxe_modes(
    X: Any, Y: Any, t: Any, init_scale: Any, *, depth: int = 2, whitened_tol: float | None = 1e-2
) -> SaxeModes:
    """Mode strengths of a deep linear net on whitened data, from the data (Saxe et al. 2014, arXiv:1312.6120).

    u_a(t) = s_a / (1 + (s_a/u0 - 1) exp(-2 s_a t)) for depth 2 (docs/theory.md eq. 3.2.1), the depth-L ODE otherwise
    (:func:`mode_strength`). Exact for a balanced init aligned with the modes (:func:`aligned_init`); from a small
    random init the same staircase follows an early alignment phase [R: Saxe et al. 2019]. Modes are learned in order
    of s_a, mode a dropping near t_a ~ ln(s_a/u0) / (2 s_a).

    Args:
        X: (N, d) whitened inputs (X^T X / N = I_d), rows are samples.
        Y: (N, c) targets.
        t: Continuous times (T,), lr * step.
        init_scale: Initial strength u_a(0) of every mode of the product W_L...W_1, > 0; scalar or (r,). A balanced
            aligned init with per-layer singular values w has u0 = w^L.
        depth: Number of weight matrices L >= 2.
        whitened_tol: Max |X^T X / N - I| allowed (above 1e-8 a warning is logged); None skips the check.

    Returns:
        SaxeModes(u (T, r), s (r,)).
    """
    x = as_f64(X)
    if whitened_tol is not None:
        dev = np.abs(x.T @ x / x.shape[0] - np.eye(x.shape[1])).max()
        if dev > whitened_tol:
            raise ValueError(
                f"saxe_modes needs whitened X (X^T X / N = I), off by {dev:.2e}; use deep_linear.whiten(X)"
            )
        if dev > 1e-8:
            logger.warning("saxe_modes: X is whitened only to %.1e (max |X^T X / N - I|)", dev)
    _, s, _ = io_modes(x, Y)
    return SaxeModes(mode_strength(t, s, init_scale, depth=depth), s)


def saxe_loss(X: Any, Y: Any, t: Any, init_scale: Any, *, depth: int = 2) -> np.ndarray:
    """Predicted loss curve with plateaus: L(t) = 1/2 sum_a (s_a - u_a(t))^2 + 1/2 (tr Sigma_yy - sum_a s_a^2).

    docs/theory.md 3.2 (whitened X, aligned balanced init); each plateau ends when its mode rises.

    Args:
        X: Whitened inputs (N, d).
        Y: Targets (N, c).
        t: Continuous times (T,).
        init_scale: Initial mode strength u0, as in :func:`saxe_modes`.
        depth: Number of weight matrices L >= 2.

    Returns:
        L(t), shape (T,), float64.
    """
    u, s = saxe_modes(X, Y, t, init_scale, depth=depth)
    y = as_f64(Y)
    rest = 0.5 * (np.sum(y * y) / y.shape[0] - np.sum(s * s))
    return 0.5 * np.sum((s - u) ** 2, axis=-1) + rest


def mode_strength(t: Any, s: Any, u0: Any, depth: int = 2) -> np.ndarray:
    """Strength u(t) of balanced aligned modes of a depth-L linear net: du/dt = L u^{2 - 2/L} (s - u).

    Depth 2 is the closed form of docs/theory.md eq. (3.2.1) (any s >= 0, including a mode with s = 0 that decays as
    u0 / (1 + 2 u0 t)). Depth L >= 3 (docs/theory.md 3.2, "Depth L") is integrated in log u with scipy (DOP853,
    rtol 1e-11): its plateau lasts ~ u0^{-(L-2)/L} / ((L - 2) s), polynomial in 1/u0.

    Args:
        t: Continuous times (T,), >= 0, any order.
        s: Singular values, shape (r,) (or scalar), >= 0.
        u0: Initial strengths, > 0, broadcastable with s.
        depth: L >= 2.

    Returns:
        u, shape (T, r), float64.
    """
    t = times_array(t)
    s, u0 = (np.atleast_1d(x) for x in np.broadcast_arrays(as_f64(s), as_f64(u0)))
    if depth < 2:
        raise ValueError(f"mode_strength needs depth >= 2, got {depth}")
    if np.any(u0 <= 0) or np.any(s < 0):
        raise ValueError("mode_strength needs u0 > 0 and s >= 0")
    if depth == 2:
        return _scalar_mode(t[:, None], s, u0, 0.0)
    ell = float(depth)

    def rhs(_: float, y: np.ndarray) -> np.ndarray:  # y = ln u
        u = np.exp(y)
        return ell * u ** (1.0 - 2.0 / ell) * (s - u)

    return np.exp(integrate(rhs, np.log(u0), t, rtol=1e-11, atol=1e-12, where="mode_strength"))


def mode_time_to_reach(u: Any, s: Any, u0: Any) -> np.ndarray:
    """Depth-2 time for a mode to go from u0 to u: ln(u (s - u0) / (u0 (s - u))) / (2 s) (docs/theory.md 3.2).

    Args:
        u: Strength to reach, between u0 and s (all arguments broadcast).
        s: Singular value, > 0.
        u0: Initial strength, > 0.

    Returns:
        t, broadcast shape, float64 (+inf when u is not between u0 and s).
    """
    u, s, u0 = (as_f64(x) for x in (u, s, u0))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.log(u * (s - u0) / (u0 * (s - u))) / (2.0 * s)
    ok = ((u0 <= u) & (u < s)) | ((s < u) & (u <= u0))
    return np.where(ok, t, np.inf)


def aligned_init(
    X: Any,
    Y: Any,
    init_scale: Any,
    *,
    depth: int = 2,
    hidden: int | None = None,
    rng: np.random.Generator | int | None = None,
) -> list[np.ndarray]:
    """Balanced init aligned with the data modes, on which :func:`saxe_modes` is exact (docs/theory.md 3.2).

    W_1 = R_1 diag(w) V^T, W_l = R_l diag(w) R_{l-1}^T, W_L = U diag(w) R_{L-1}^T with w = u0^{1/L}, (U, V) from
    :func:`io_modes` and R_l random orthonormal (hidden x r) frames, so W_L ... W_1 = U diag(u0) V^T.

    Args:
        X: Inputs (N, d).
        Y: Targets (N, c).
        init_scale: Initial product strength u0 > 0, scalar or (r,).
        depth: L >= 2.
        hidden: Hidden width (>= r = min(c, d)); default r.
        rng: numpy Generator or seed for the frames R_l.

    Returns:
        [W_1 (hidden, d), ..., W_L (c, hidden)], float64.
    """
    u_modes, s, vt = io_modes(X, Y)
    r = s.size
    hidden = r if hidden is None else hidden
    if hidden < r:
        raise ValueError(f"aligned_init needs hidden >= min(c, d) = {r}, got {hidden}")
    w = np.broadcast_to(as_f64(init_scale), (r,)) ** (1.0 / depth)
    rng = np.random.default_rng(rng)
    frames = [np.linalg.qr(rng.standard_normal((hidden, r)))[0] for _ in range(depth - 1)]
    left = frames + [u_modes]
    right = [vt.T] + frames
    return [(lf * w) @ rt.T for lf, rt in zip(left, right, strict=True)]


def simulate(weights: list[Any], X: Any, Y: Any, *, lr: float, steps: int, record_steps: Any = None) -> Trajectory:
    """Full-batch GD of a depth-L linear net f(x) = W_L ... W_1 x, in float64.

    dL/dW_l = (W_L...W_{l+1})^T (P Sxx - Syx) (W_{l-1}...W_1)^T with P = W_L...W_1, Sxx = X^T X / N, Syx = Y^T X / N.

    Args:
        weights: [W_1 (h_1, d), ..., W_L (c, h_{L-1})].
        X: Inputs (N, d), rows are samples.
        Y: Targets (N, c).
        lr: Learning rate.
        steps: Number of updates.
        record_steps: Steps to record: a list, an interval, or None (every step).

    Returns:
        Trajectory at t = lr * step with ``P`` (R, c, d), ``loss`` (R,) and ``u`` (R, r): the diagonal of
        U^T P V on the modes of :func:`io_modes` (the strengths :func:`saxe_modes` predicts).
    """
    ws = [as_f64(w).copy() for w in weights]
    x, y = as_f64(X), as_f64(Y)
    n = x.shape[0]
    sxx, syx, syy = x.T @ x / n, y.T @ x / n, np.sum(y * y) / n
    u_modes, _, vt = io_modes(x, y)
    rec = record_steps_array(record_steps, steps)
    prods = []
    j = 0
    for step in range(steps + 1):
        if step == rec[j]:
            prods.append(_chain(ws))
            j += 1
            if j == rec.size:
                break
        err = _chain(ws) @ sxx - syx
        grads = []
        for ell in range(len(ws)):
            above, below = _chain(ws[ell + 1 :]), _chain(ws[:ell])
            g = err if above is None else above.T @ err
            grads.append(g if below is None else g @ below.T)
        ws = [w - lr * g for w, g in zip(ws, grads, strict=True)]
    p = np.stack(prods)
    loss = 0.5 * np.einsum("rij,jk,rik->r", p, sxx, p) - np.sum(p * syx, axis=(1, 2)) + 0.5 * syy
    u = np.einsum("ca,rcd,ad->ra", u_modes, p, vt)
    return Trajectory(lr * rec.astype(np.float64), {"P": p, "loss": loss, "u": u}, step=rec)


def predictor(X: Any, Y: Any, init_scale: Any, *, depth: int = 2) -> Predictor:
    """Saxe mode prediction as a function of time, comparable with :func:`simulate` from :func:`aligned_init`.

    Args:
        X: Whitened inputs (N, d).
        Y: Targets (N, c).
        init_scale: Initial strength u0 per mode.
        depth: Number of weight matrices L >= 2.

    Returns:
        A function t (T,) -> Trajectory with ``u`` (T, r), ``P`` = U diag(u) V^T (T, c, d) and ``loss`` (T,).
    """
    u_modes, s, vt = io_modes(X, Y)
    y = as_f64(Y)
    rest = 0.5 * (np.sum(y * y) / y.shape[0] - np.sum(s * s))

    def predict(t: Any) -> Trajectory:
        t = times_array(t)
        u, _ = saxe_modes(X, Y, t, init_scale, depth=depth)
        p = np.einsum("ca,ta,ad->tcd", u_modes, u, vt)
        return Trajectory(t, {"u": u, "P": p, "loss": 0.5 * np.sum((s - u) ** 2, axis=-1) + rest})

    return predict


def _chain(ws: list[np.ndarray]) -> np.ndarray | None:
    """W_k ... W_1 for ws = [W_1, ..., W_k]; None for an empty list."""
    out = None
    for w in ws:
        out = w if out is None else w @ out
    return out
