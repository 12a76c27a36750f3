"""The two-layer linear network f(x) = W2 W1 x as a batch of nets: lazy/rich inits, GD, NTK, kernel distance.

Shapes: X (N, d) and Y (N, c) hold samples in rows; W1 (..., h, d), W2 (..., c, h) carry any leading batch shape
(e.g. the 40 x 40 grid of the paper's Fig. 6a). Loss L = 1/(2N) sum_n ||W2 W1 x_n - y_n||^2 (docs/theory.md 2.2), time
t = lr * step. The imbalance is lambda I = W1 W1^T - W2^T W2 (suite sign, docs/theory.md 2.4; Dominé et al. and the
paper's code use lambda_D = -lambda).

Theory of the KD map: :func:`predictor` with ``method="riccati"`` is the exact gradient flow for a lambda-balanced
init on whitened X, in closed form (Q = [W1^T; W2] obeys a matrix Riccati equation; Braun et al. 2022,
arXiv:2209.14163 at lambda = 0, Dominé et al. 2024, arXiv:2409.14623 for any lambda; derived and checked here [D*]).
It needs neither an aligned init nor small weights. ``method="ode"`` integrates the same matrix flow with scipy for any
init and any X (e.g. Fig. 6b's zero-output init on unwhitened X).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from linear_models._ode import integrate
from linear_models._types import Predictor, Trajectory, as_f64, record_steps_array, times_array
from linear_models.ntk import kernel_distance, ntk_distance, ntk_grams, ntk_two_layer

__all__ = [
    "lambda_balanced_init",
    "zero_output_init",
    "simulate",
    "simulate_two_layer",
    "predictor",
    "predict_kd",
    "ntk_two_layer",
    "ntk_grams",
    "kernel_distance",
    "ntk_distance",
    "imbalance_matrix",
]


def lambda_balanced_init(
    lam: Any, scale: Any, d: int, h: int, c: int, rng: np.random.Generator | int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Lambda-balanced init of the paper's Fig. 6a (utils.get_lambda_balanced; docs/theory.md 3.2, 5.2).

    Random directions U (c x h), V (d x h) from the SVD of a Gaussian product, a Haar-random R (h x h), and
    W1 = R S1 V^T, W2 = U S2 R^T with S1^2 = (sqrt(lambda^2 + 4 scale) + lambda)/2, S2^2 = (sqrt(lambda^2 + 4 scale)
    - lambda)/2. Then W1 W1^T - W2^T W2 = lambda I_h exactly and W2 W1 has all h singular values sqrt(scale): the
    released code's "4 * sigma" (not 4 sigma^2) convention [C]. Not aligned with any task.

    Args:
        lam: Imbalance lambda in suite sign (= -lambda_D of the code), any shape; broadcast with ``scale``.
        scale: The code's sigma (Fig. 6a's weight-target-ratio axis), > 0, broadcastable with lam.
        d: Input width (Fig. 6a: 2).
        h: Hidden width, h <= min(d, c) (Fig. 6a: 2).
        c: Output width (Fig. 6a: 2).
        rng: numpy Generator or seed.

    Returns:
        (W1 (*B, h, d), W2 (*B, c, h)), float64, B the broadcast shape of (lam, scale); a fresh draw per net.
    """
    if h > min(d, c):
        raise ValueError(
            f"lambda_balanced_init needs h <= min(d, c) for W1 W1^T - W2^T W2 = lambda I_h, got {d=} {h=} {c=}"
        )
    lam, scale = np.broadcast_arrays(as_f64(lam), as_f64(scale))
    if np.any(scale <= 0):
        raise ValueError("lambda_balanced_init needs scale > 0")
    rng = np.random.default_rng(rng)
    batch = lam.shape
    prod = rng.standard_normal(batch + (c, h)) @ rng.standard_normal(batch + (h, d))  # (*B, c, d)
    u, _, vt = np.linalg.svd(prod)
    u, vt = u[..., :, :h], vt[..., :h, :]
    r = _haar_orthogonal(rng, batch, h)
    root = np.sqrt(lam * lam + 4.0 * scale)
    s1 = np.sqrt(0.5 * (root + lam))[..., None]  # (*B, 1)
    s2 = np.sqrt(np.maximum(0.5 * (root - lam), 0.0))[..., None]
    w1 = r * s1[..., None, :] @ vt  # R diag(s1) V^T
    w2 = (u * s2[..., None, :]) @ np.swapaxes(r, -1, -2)  # U diag(s2) R^T
    return w1, w2


def zero_output_init(
    lam: Any, d: int, h: int, c: int, rng: np.random.Generator | int | None = None, sigma: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Zero-output unbalanced init of the paper's Fig. 6b (utils.get_lambda_unbalanced; docs/theory.md 3.2, 5.3).

    A ~ N(0,1)^{(h/2) x d}, B ~ N(0,1)^{c x (h/2)}, W1 = (sigma + max(lam, 0)) [A; A], W2 = (sigma + max(-lam, 0))
    [B, -B], so W2 W1 = 0 exactly. lam > 0 enlarges the first layer (suite sense). lam here is the code's additive
    offset, not a conserved value: W1 W1^T - W2^T W2 is not proportional to I.

    Args:
        lam: Layer offset, any shape B.
        d: Input width (Fig. 6b: 20).
        h: Hidden width, even (Fig. 6b: 20).
        c: Output width (Fig. 6b: 2).
        rng: numpy Generator or seed.
        sigma: Base entry scale (the code's ``scale`` = 0.1).

    Returns:
        (W1 (*B, h, d), W2 (*B, c, h)), float64, a fresh draw per net.
    """
    if h % 2:
        raise ValueError(f"zero_output_init needs an even hidden width, got h={h}")
    lam = as_f64(lam)
    rng = np.random.default_rng(rng)
    a = rng.standard_normal(lam.shape + (h // 2, d))
    b = rng.standard_normal(lam.shape + (c, h // 2))
    w1 = (sigma + np.maximum(lam, 0.0))[..., None, None] * np.concatenate([a, a], axis=-2)
    w2 = (sigma + np.maximum(-lam, 0.0))[..., None, None] * np.concatenate([b, -b], axis=-1)
    return w1, w2


def simulate_two_layer(
    W1: Any, W2: Any, X: Any, Y: Any, lr: float, steps: int, record_steps: Any = None, wd: float = 0.0
) -> Trajectory:
    """Full-batch GD of a whole batch of two-layer linear nets at once, in float64 (Fig. 6a/6b training).

    With Sxx = X^T X / N and Syx = Y^T X / N, each step is W1 <- W1 - lr (W2^T E + wd W1), W2 <- W2 - lr (E W1^T +
    wd W2), E = W2 W1 Sxx - Syx: GD on the loss of docs/theory.md 2.2 (plus (wd/2)||W||^2), equal to the code's
    (1/N) W2^T (W2 W1 X - Y) X^T [C]. The cost per step does not depend on N.

    Args:
        W1: First layers, (*B, h, d).
        W2: Second layers, (*B, c, h).
        X: Inputs, (N, d), rows are samples.
        Y: Targets, (N, c) shared by all nets, or (*B, N, c) one per net (e.g. Fig. 6a's Y / scale).
        lr: Learning rate.
        steps: Number of updates.
        record_steps: Steps to record: a list, an interval, or None (every step).
        wd: L2 weight decay.

    Returns:
        Trajectory at t = lr * step with ``W1`` (R, *B, h, d), ``W2`` (R, *B, c, h), ``loss`` (R, *B).
    """
    w1, w2 = as_f64(W1).copy(), as_f64(W2).copy()
    sxx, syx, syy = _moments(X, Y)
    rec = record_steps_array(record_steps, steps)
    out_w1, out_w2 = [], []
    j = 0
    w2t = np.swapaxes
    for step in range(steps + 1):
        if step == rec[j]:
            out_w1.append(w1.copy())
            out_w2.append(w2.copy())
            j += 1
            if j == rec.size:
                break
        err = (w2 @ w1) @ sxx - syx  # dL/dP, (*B, c, d)
        g1 = w2t(w2, -1, -2) @ err
        g2 = err @ w2t(w1, -1, -2)
        if wd:
            g1, g2 = g1 + wd * w1, g2 + wd * w2
        w1, w2 = w1 - lr * g1, w2 - lr * g2
    w1s, w2s = np.stack(out_w1), np.stack(out_w2)
    loss = _loss(w2s @ w1s, sxx, syx, syy)
    return Trajectory(lr * rec.astype(np.float64), {"W1": w1s, "W2": w2s, "loss": loss}, step=rec)


simulate = simulate_two_layer


def predictor(W1: Any, W2: Any, X: Any, Y: Any, method: str = "auto", wd: float = 0.0) -> Predictor:
    """Gradient-flow prediction of a batch of two-layer nets: weights' Grams, product, loss and KD to t = 0.

    ``method="riccati"`` (exact closed form; assumptions: X whitened, Sxx = I, and every net lambda-balanced,
    W1 W1^T - W2^T W2 = lambda I_h, no weight decay). With Q = [W1^T; W2] ((d + c) x h) and
    F = [[lambda/2 I_d, Syx^T], [Syx, -lambda/2 I_c]], gradient flow gives Q' = F Q - Q Q^T Q / 2, so
    QQ^T(t) = e^{Ft} Q0 (I_h + Q0^T (int_0^t e^{2Fs} ds) Q0)^{-1} Q0^T e^{Ft} [D*; Dominé et al. 2024,
    arXiv:2409.14623], evaluated in the eigenbasis of F with each net rescaled against overflow. The blocks
    are M = W1^T W1, P = W2 W1, G = W2 W2^T (docs/theory.md 3.3).

    Beyond t ~ 700 / (f_max - f_min) the closed form leaves float64 range: "riccati" raises, "auto" falls back to
    the ODE.

    ``method="ode"`` integrates dW1/dt = -W2^T (P Sxx - Syx) - wd W1, dW2/dt = -(P Sxx - Syx) W1^T - wd W2 for all nets
    at once (scipy DOP853, rtol 1e-9): any init, any X. ``"auto"`` picks riccati when its assumptions hold to 1e-9.

    Args:
        W1: Initial first layers (*B, h, d).
        W2: Initial second layers (*B, c, h).
        X: Inputs (N, d), rows are samples; also the NTK probe set.
        Y: Targets (N, c) or (*B, N, c).
        method: "auto", "riccati" or "ode".
        wd: L2 weight decay (ode only).

    Returns:
        A function t (T,) -> Trajectory with ``M`` (T, *B, d, d), ``G`` (T, *B, c, c), ``P`` (T, *B, c, d),
        ``loss`` (T, *B) and ``kd`` (T, *B) = KD(K(0), K(t)) of the NTK on X (docs/theory.md 2.6, 3.3).

    Raises:
        ValueError: If method="riccati" and its assumptions fail.
    """
    w1, w2 = as_f64(W1), as_f64(W2)
    x = as_f64(X)
    sxx, syx, syy = _moments(x, Y)
    xtx = x.T @ x
    m0, g0 = ntk_grams(w1, w2)
    riccati_ok, why = _riccati_applies(w1, w2, sxx, wd)
    auto = method == "auto"
    if auto:
        method = "riccati" if riccati_ok else "ode"
    if method == "riccati" and not riccati_ok:
        raise ValueError(f"two_layer.predictor(method='riccati'): {why}; use method='ode'")
    if method not in ("riccati", "ode"):
        raise ValueError(f"unknown method {method!r}; known: auto, riccati, ode")

    def finish(t: np.ndarray, m: np.ndarray, g: np.ndarray, p: np.ndarray) -> Trajectory:
        kd = ntk_distance(m0, g0, m, g, xtx)
        return Trajectory(t, {"M": m, "G": g, "P": p, "loss": _loss(p, sxx, syx, syy), "kd": kd})

    def riccati(t: Any) -> Trajectory:
        t = times_array(t)
        lam = np.trace(imbalance_matrix(w1, w2), axis1=-2, axis2=-1) / w1.shape[-2]
        q = _riccati_qqt(t, w1, w2, syx, lam)  # (T, *B, d + c, d + c)
        if not np.all(np.isfinite(q)):
            # float64 range: rows of Q growing at rates f_i differ by e^{(f_max - f_i) t} > 1e308 at such t
            if auto:
                return ode(t)
            raise ValueError(
                "two_layer.predictor: t * spread of eig(F) too large for the closed form; use method='ode'"
            )
        d = w1.shape[-1]
        return finish(t, q[..., :d, :d], q[..., d:, d:], q[..., d:, :d])

    def ode(t: Any) -> Trajectory:
        t = times_array(t)
        shape1, shape2 = w1.shape, w2.shape
        size1 = w1.size

        def rhs(_: float, y: np.ndarray) -> np.ndarray:
            a, b = y[:size1].reshape(shape1), y[size1:].reshape(shape2)
            err = (b @ a) @ sxx - syx
            da = -np.swapaxes(b, -1, -2) @ err - wd * a
            db = -err @ np.swapaxes(a, -1, -2) - wd * b
            return np.concatenate([da.ravel(), db.ravel()])

        y0 = np.concatenate([w1.ravel(), w2.ravel()])
        y = integrate(rhs, y0, t, rtol=1e-9, atol=1e-12, where="two_layer.predictor")
        a, b = y[:, :size1].reshape((-1,) + shape1), y[:, size1:].reshape((-1,) + shape2)
        m, g = ntk_grams(a, b)
        return finish(t, m, g, b @ a)

    return riccati if method == "riccati" else ode


def predict_kd(W1: Any, W2: Any, X: Any, Y: Any, t: Any, method: str = "auto") -> np.ndarray:
    """Predicted kernel distance KD(K(0), K(t)) of each net (the theory of the Fig. 6a/6b maps).

    Shorthand for ``predictor(W1, W2, X, Y, method)(t)["kd"]``; see :func:`predictor` for the methods and their
    assumptions. For Fig. 6a (lambda-balanced, whitened X) "auto" uses the exact Riccati closed form.

    Args:
        W1: Initial first layers (*B, h, d).
        W2: Initial second layers (*B, c, h).
        X: Inputs (N, d).
        Y: Targets (N, c) or (*B, N, c).
        t: Continuous times (T,).
        method: "auto", "riccati" or "ode".

    Returns:
        KD, shape (T, *B), float64, in [0, 1] for these PSD kernels.
    """
    return predictor(W1, W2, X, Y, method=method)(t)["kd"]


def imbalance_matrix(W1: Any, W2: Any) -> np.ndarray:
    """The conserved matrix W1 W1^T - W2^T W2 (*B, h, h) (suite sign; lambda I for a lambda-balanced net)."""
    w1, w2 = as_f64(W1), as_f64(W2)
    return w1 @ np.swapaxes(w1, -1, -2) - np.swapaxes(w2, -1, -2) @ w2


def _moments(X: Any, Y: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sxx = X^T X / N (d, d), Syx = Y^T X / N (*B, c, d) and tr Syy = sum ||y||^2 / N (*B)."""
    x, y = as_f64(X), as_f64(Y)
    n = x.shape[0]
    if y.shape[-2] != n:
        raise ValueError(f"X has {n} samples but Y has shape {y.shape}; rows are samples")
    return x.T @ x / n, np.swapaxes(y, -1, -2) @ x / n, np.sum(y * y, axis=(-2, -1)) / n


def _loss(p: np.ndarray, sxx: np.ndarray, syx: np.ndarray, syy: np.ndarray) -> np.ndarray:
    """L = 1/2 tr(P Sxx P^T) - tr(P Syx^T) + 1/2 tr Syy for products P (..., c, d)."""
    return 0.5 * np.einsum("...ij,jk,...ik->...", p, sxx, p) - np.sum(p * syx, axis=(-2, -1)) + 0.5 * syy


def _tr(a: np.ndarray) -> np.ndarray:
    return np.trace(a, axis1=-2, axis2=-1)


def _riccati_applies(w1: np.ndarray, w2: np.ndarray, sxx: np.ndarray, wd: float) -> tuple[bool, str]:
    """Whether the Riccati closed form is exact here: no wd, Sxx = I and W1 W1^T - W2^T W2 = lambda I."""
    if wd:
        return False, "weight decay is not covered"
    if not np.allclose(sxx, np.eye(sxx.shape[0]), rtol=0, atol=1e-9):
        return False, "X is not whitened (X^T X / N != I)"
    q = imbalance_matrix(w1, w2)
    h = q.shape[-1]
    lam = _tr(q) / h
    dev = np.abs(q - lam[..., None, None] * np.eye(h)).max(initial=0.0)
    size = max(float(np.abs(w1).max(initial=0.0)), float(np.abs(w2).max(initial=0.0)), 1.0) ** 2
    if dev > 1e-9 * size:
        return False, f"the init is not lambda-balanced (W1 W1^T - W2^T W2 deviates from lambda I by {dev:.2e})"
    return True, ""


def _riccati_qqt(t: np.ndarray, w1: np.ndarray, w2: np.ndarray, syx: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """QQ^T(t) for Q = [W1^T; W2] under the lambda-balanced whitened flow, shape (T, *B, d + c, d + c)."""
    h, d = w1.shape[-2:]
    c = w2.shape[-2]
    batch = np.broadcast_shapes(w1.shape[:-2], w2.shape[:-2], syx.shape[:-2], lam.shape)
    f = np.zeros(batch + (d + c, d + c))
    f[..., :d, :d] = 0.5 * lam[..., None, None] * np.eye(d)
    f[..., d:, d:] = -0.5 * lam[..., None, None] * np.eye(c)
    f[..., d:, :d] = syx
    f[..., :d, d:] = np.swapaxes(syx, -1, -2)
    ev, o = np.linalg.eigh(f)  # F = O diag(ev) O^T
    q0 = np.concatenate([np.swapaxes(w1, -1, -2), w2], axis=-2)  # (*B, d + c, h)
    qt = np.swapaxes(o, -1, -2) @ np.broadcast_to(q0, batch + q0.shape[-2:])  # O^T Q0
    tt = t.reshape((-1,) + (1,) * (len(batch) + 1))
    ft = ev * tt  # (T, *B, d + c)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore", under="ignore"):
        # Z = diag(sqrt(g)) O^T Q0, g = int_0^t e^{2fs} ds = e^{2 max(f,0) t} (1 - e^{-2|f|t}) / (2|f|) (t at f = 0);
        # each (t, net) is scaled by e^{-e_max}, e_max = max(f, 0) t over its rows, so nothing overflows for any t
        expo = np.maximum(ft, 0.0)
        e_max = expo.max(axis=-1, keepdims=True)
        flat = np.abs(ft) < 1e-12
        c_part = np.where(
            flat, np.sqrt(tt), np.sqrt(-np.expm1(-2.0 * np.abs(ft)) / (2.0 * np.abs(np.where(flat, 1.0, ev))))
        )
        z = (np.exp(expo - e_max) * c_part)[..., None] * qt  # (T, *B, d + c, h)
        # D^2 = e^{2ft} / g = 2f / (1 - e^{-2ft}) (1/t at f = 0): bounded for f > 0, -> 0 for f < 0
        d2 = np.where(flat, 1.0 / tt, 2.0 * ev / -np.expm1(-2.0 * np.where(flat, 1.0, ft)))
        uz, sz, _ = np.linalg.svd(z, full_matrices=False)
        # Z (I + Z^T Z)^{-1} Z^T = U diag(sigma^2 / (1 + sigma^2)) U^T with sigma = e^{e_max} sz
        frac = 1.0 / (1.0 + np.exp(-2.0 * e_max) / (sz * sz))
        dd = np.sqrt(d2)[..., None] * uz  # D U_z (inf at t = 0, replaced below)
        inner = (dd * frac[..., None, :]) @ np.swapaxes(dd, -1, -2)
        qqt = o @ inner @ np.swapaxes(o, -1, -2)
    qqt0 = q0 @ np.swapaxes(q0, -1, -2)
    return np.where((tt == 0)[..., None], qqt0, qqt)


def _haar_orthogonal(rng: np.random.Generator, batch: tuple[int, ...], n: int) -> np.ndarray:
    """Haar-random orthogonal matrices (*batch, n, n): QR of a Gaussian with the signs of diag(R) fixed."""
    q, r = np.linalg.qr(rng.standard_normal(batch + (n, n)))
    return q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[..., None, :]
