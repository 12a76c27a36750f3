"""Unconstrained features model (UFM) with MSE and weight decay: GD, predicted limits, mode dynamics.

L = 1/(2N) ||W H + b 1^T - Y||_F^2 + (wd_W/2) ||W||_F^2 + (wd_H/2) ||H||_F^2, b unregularized (docs/theory.md 7.2).
Paper convention here: H (p, N) holds the free features of the N samples in columns, W (C, p), b (C,), Y (C, N)
(typically target_scale * one-hot). The UFM is a two-layer linear net whose input is the one-hot sample index
(docs/theory.md 7.3): with the bias at the target mean and centred H, WH follows the modes of the centred target
Y_c = Y (I - 11^T/N) = U diag(sigma) V^T, each with the Saxe sigmoid on the clock t/N (Mixon et al. 2020,
arXiv:2011.11619; Han et al. 2022, arXiv:2106.02073; derivation [D*]). Time t = lr * step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from linear_models._ode import integrate
from linear_models._types import Predictor, Trajectory, as_f64, record_steps_array, times_array

__all__ = [
    "UFMLimit",
    "one_hot",
    "target_modes",
    "predicted_limit",
    "collapse_scale",
    "residual_decay_rate",
    "aligned_init",
    "simulate",
    "predictor",
    "class_means",
    "within_class_energy",
    "etf_error",
]


@dataclass(frozen=True)
class UFMLimit:
    """The global minimizer of the UFM with weight decay (docs/theory.md 7.2), predicted from the targets.

    Attributes:
        s: Singular values of the (centred, with bias) target, shape (r,), descending.
        u: Limit strengths of W H on those modes, max(0, s - N sqrt(wd_W wd_H)), shape (r,).
        product: Predicted W H, (C, N); for balanced classes with bias, W Hbar = rho (I - J).
        feature_gram: Predicted H^T H = sqrt(wd_W/wd_H) V diag(u) V^T, (N, N): class means on a simplex ETF for
            balanced classes with bias, an orthogonal frame without bias.
        classifier_gram: Predicted W W^T = sqrt(wd_H/wd_W) U diag(u) U^T, (C, C).
        rank: Number of surviving modes (C - 1 for balanced classes with bias, C without, 0 when collapsed to 0).
        norm_ratio: ||W||_F^2 / ||H||_F^2 = wd_H / wd_W (= n wd_H / wd_W against the class-mean matrix).
        residual_decay_rate: 2 wd_H, the rate of ||H - Hbar||_F^2 (within-class residual) per unit t.
    """

    s: np.ndarray
    u: np.ndarray
    product: np.ndarray
    feature_gram: np.ndarray
    classifier_gram: np.ndarray
    rank: int
    norm_ratio: float
    residual_decay_rate: float


def one_hot(labels: Any, num_classes: int, target_scale: float = 1.0) -> np.ndarray:
    """Targets Y = target_scale * one-hot, shape (C, N) (columns are samples), float64."""
    lab = np.asarray(labels, dtype=np.int64)
    return target_scale * (np.arange(num_classes)[:, None] == lab[None, :]).astype(np.float64)


def target_modes(Y: Any, bias: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Modes of the UFM target: thin SVD of Y_c = Y (I - 11^T/N) (bias) or of Y (no bias).

    For one-hot targets the singular values are target_scale * sqrt(n_c)-like: all equal for balanced classes (one
    shared sigmoid, docs/theory.md 7.3); unequal class sizes give unequal modes, learned in order of size.

    Args:
        Y: (C, N) targets, columns are samples.
        bias: Whether the model has the (unregularized) bias, which absorbs the target mean.

    Returns:
        (U (C, C), sigma (C,) descending, Vt (C, N)); with bias the last sigma is 0 for one-hot targets.
    """
    y = as_f64(Y)
    if bias:
        y = y - y.mean(axis=1, keepdims=True)
    return np.linalg.svd(y, full_matrices=False)


def collapse_scale(num_classes: int, n: int, wd_W: float, wd_H: float, target_scale: float = 1.0) -> float:
    """Scale rho = max(0, target_scale - C sqrt(n wd_W wd_H)): W Hbar = rho (I - J) at the optimum (docs/theory.md 7.2).

    Balanced classes (n per class) with bias; without bias the same rho multiplies I. rho = 0 means the features
    collapse to 0 (the non-collapsed solution exists iff C sqrt(n wd_W wd_H) < target_scale).
    """
    return max(0.0, target_scale - num_classes * float(np.sqrt(n * wd_W * wd_H)))


def residual_decay_rate(wd_H: float) -> float:
    """Terminal rate of the within-class residual ||H - Hbar||_F^2: 2 wd_H per unit t (docs/theory.md 7.2) [D*].

    dE/dt = -(1/N) W^T W E - wd_H E for E = H - Hbar, so the part of E in the null space of W decays exactly at this
    rate; NC1 (proportional to ||E||^2) follows. With wd_H = 0 the null-space part never decays (incomplete collapse).
    """
    return 2.0 * float(wd_H)


def predicted_limit(Y: Any, wd_W: float, wd_H: float, bias: bool = True) -> UFMLimit:
    """Predicted limit of UFM gradient descent with weight decay (docs/theory.md 7.2), for any class sizes.

    The minimum of the two penalties for a fixed product P = W H is sqrt(wd_W wd_H) ||P||_*, so P soft-thresholds
    the target's singular values: u_a = max(0, sigma_a - N sqrt(wd_W wd_H)) [D*]. For balanced one-hot targets with
    bias this is W Hbar = rho (I - J), a simplex ETF of rank C - 1 (:func:`collapse_scale`); small modes of unequal
    classes vanish first (minority collapse, Fang et al. 2021, arXiv:2101.12699).

    Args:
        Y: (C, N) targets, columns are samples.
        wd_W: Weight decay on W, > 0.
        wd_H: Weight decay on H, > 0.
        bias: Whether the model has the unregularized bias.

    Returns:
        UFMLimit.
    """
    if wd_W <= 0 or wd_H <= 0:
        raise ValueError(
            "predicted_limit needs wd_W > 0 and wd_H > 0 (without weight decay the limit depends on the init)"
        )
    u_modes, s, vt = target_modes(Y, bias)
    n_total = vt.shape[1]
    tol = 1e-12 * max(float(s.max(initial=0.0)), 1.0)
    u = np.where(s > tol, np.maximum(0.0, s - n_total * np.sqrt(wd_W * wd_H)), 0.0)
    return UFMLimit(
        s=s,
        u=u,
        product=(u_modes * u) @ vt,
        feature_gram=np.sqrt(wd_W / wd_H) * (vt.T * u) @ vt,
        classifier_gram=np.sqrt(wd_H / wd_W) * (u_modes * u) @ u_modes.T,
        rank=int(np.sum(u > tol)),
        norm_ratio=wd_H / wd_W,
        residual_decay_rate=residual_decay_rate(wd_H),
    )


def aligned_init(
    Y: Any, p: int, w0: Any, h0: Any | None = None, *, bias: bool = True, rng: np.random.Generator | int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Init aligned with the target modes, on which :func:`predictor` is exact.

    W = U diag(w0) R^T, H = R diag(h0) V^T with R a random orthonormal (p x r) frame and (U, V) from
    :func:`target_modes`; b = the target mean (bias) or 0. Then H 1 = 0 and b stays put under gradient flow.

    Args:
        Y: Targets (C, N).
        p: Feature width, >= C.
        w0: Per-mode classifier strengths, scalar or (C,).
        h0: Per-mode feature strengths; default w0 (the balanced case).
        bias: As in :func:`simulate`.
        rng: Generator or seed for R.

    Returns:
        (H0 (p, N), W0 (C, p), b0 (C,)), float64.
    """
    u_modes, s, vt = target_modes(Y, bias)
    r = s.size
    if p < r:
        raise ValueError(f"aligned_init needs p >= C = {r}, got p={p}")
    w0 = np.broadcast_to(as_f64(w0), (r,))
    h0 = w0 if h0 is None else np.broadcast_to(as_f64(h0), (r,))
    frame = np.linalg.qr(np.random.default_rng(rng).standard_normal((p, r)))[0]
    y = as_f64(Y)
    b0 = y.mean(axis=1) if bias else np.zeros(y.shape[0])
    return (frame * h0) @ vt, (u_modes * w0) @ frame.T, b0


def simulate(
    H0: Any,
    W0: Any,
    Y: Any,
    *,
    lr: float,
    steps: int,
    record_steps: Any = None,
    wd_W: float = 0.0,
    wd_H: float = 0.0,
    b0: Any = None,
    bias: bool = True,
) -> Trajectory:
    """Full-batch GD on the UFM objective of docs/theory.md 7.2, in float64.

    With E = (W H + b 1^T - Y)/N: W <- W - lr (E H^T + wd_W W), H <- H - lr (W^T E + wd_H H), b <- b - lr E 1.

    Args:
        H0: Initial features (p, N).
        W0: Initial classifier (C, p).
        Y: Targets (C, N) (a scaled one-hot for ``within``).
        lr: Learning rate.
        steps: Number of updates.
        record_steps: Steps to record: a list, an interval, or None.
        wd_W: Weight decay on W.
        wd_H: Weight decay on H.
        b0: Initial bias (C,), default 0.
        bias: Train the bias (else it stays at b0).

    Returns:
        Trajectory at t = lr * step with ``H`` (R, p, N), ``W`` (R, C, p), ``b`` (R, C), ``loss`` (R,) (the MSE
        part), ``objective`` (R,) (with penalties), ``u`` (R, r) (diag of U^T W H V on :func:`target_modes`) and
        ``within`` (R,) = ||H - Hbar||_F^2 / N = tr(Sigma_W), classes from argmax of each column of Y.
    """
    h, w, y = as_f64(H0).copy(), as_f64(W0).copy(), as_f64(Y)
    b = np.zeros(y.shape[0]) if b0 is None else as_f64(b0).copy()
    n = y.shape[1]
    rec = record_steps_array(record_steps, steps)
    hs, ws, bs = [], [], []
    j = 0
    for step in range(steps + 1):
        if step == rec[j]:
            hs.append(h.copy())
            ws.append(w.copy())
            bs.append(b.copy())
            j += 1
            if j == rec.size:
                break
        e = (w @ h + b[:, None] - y) / n
        gw, gh = e @ h.T + wd_W * w, w.T @ e + wd_H * h
        if bias:
            b = b - lr * e.sum(axis=1)
        w, h = w - lr * gw, h - lr * gh
    hs_, ws_, bs_ = np.stack(hs), np.stack(ws), np.stack(bs)
    resid = ws_ @ hs_ + bs_[:, :, None] - y
    loss = 0.5 * np.sum(resid**2, axis=(1, 2)) / n
    objective = loss + 0.5 * wd_W * np.sum(ws_**2, axis=(1, 2)) + 0.5 * wd_H * np.sum(hs_**2, axis=(1, 2))
    u_modes, _, vt = target_modes(y, bias)
    u = np.einsum("ca,rcn,an->ra", u_modes, ws_ @ hs_, vt)
    labels = np.argmax(y, axis=0)
    within = np.array([within_class_energy(hh, labels) for hh in hs_])
    values = {"H": hs_, "W": ws_, "b": bs_, "loss": loss, "objective": objective, "u": u, "within": within}
    return Trajectory(lr * rec.astype(np.float64), values, step=rec)


def predictor(
    Y: Any, w0: Any, h0: Any | None = None, *, wd_W: float = 0.0, wd_H: float = 0.0, bias: bool = True
) -> Predictor:
    """Mode dynamics of the UFM from an aligned init (:func:`aligned_init`), comparable with :func:`simulate`.

    Each target mode (sigma_a, from :func:`target_modes`) has a classifier strength w and a feature strength h with
    dw/dt = (sigma - w h) h / N - wd_W w, dh/dt = (sigma - w h) w / N - wd_H h (docs/theory.md 7.3 [D]); u = w h.
    Without weight decay and with w0 = h0 this is Saxe's sigmoid u(t) = mode_strength(t/N, sigma, u0); with
    wd_W = wd_H = wd it is the sigmoid toward sigma - N wd. Integrated with scipy (DOP853, rtol 1e-11).

    Args:
        Y: Targets (C, N).
        w0: Initial per-mode classifier strengths.
        h0: Initial per-mode feature strengths; default w0.
        wd_W: Weight decay on W.
        wd_H: Weight decay on H.
        bias: As in :func:`simulate`.

    Returns:
        A function t (T,) -> Trajectory with ``u`` (T, r), ``w`` (T, r), ``h`` (T, r), ``loss`` (T,) (MSE part)
        and ``objective`` (T,).
    """
    _, s, vt = target_modes(Y, bias)
    r, n = s.size, vt.shape[1]
    w_init = np.broadcast_to(as_f64(w0), (r,)).astype(np.float64)
    h_init = w_init if h0 is None else np.broadcast_to(as_f64(h0), (r,)).astype(np.float64)
    y = as_f64(Y)
    yc = y - y.mean(axis=1, keepdims=True) if bias else y
    rest = 0.5 * (np.sum(yc * yc) - np.sum(s * s)) / n  # energy of Y_c outside the modes (0 up to rounding)

    def rhs(_: float, z: np.ndarray) -> np.ndarray:
        w, h = z[:r], z[r:]
        res = (s - w * h) / n
        return np.concatenate([res * h - wd_W * w, res * w - wd_H * h])

    def predict(t: Any) -> Trajectory:
        t = times_array(t)
        z = integrate(rhs, np.concatenate([w_init, h_init]), t, rtol=1e-11, where="ufm.predictor")
        w, h = z[:, :r], z[:, r:]
        loss = 0.5 * np.sum((s - w * h) ** 2, axis=1) / n + rest
        objective = loss + 0.5 * wd_W * np.sum(w * w, axis=1) + 0.5 * wd_H * np.sum(h * h, axis=1)
        return Trajectory(t, {"u": w * h, "w": w, "h": h, "loss": loss, "objective": objective})

    return predict


def class_means(H: Any, labels: Any, num_classes: int | None = None) -> np.ndarray:
    """Class means of features H (p, N) with labels (N,): shape (p, C)."""
    h, lab = as_f64(H), np.asarray(labels, dtype=np.int64)
    num_classes = int(lab.max()) + 1 if num_classes is None else num_classes
    counts = np.bincount(lab, minlength=num_classes).astype(np.float64)
    sums = np.zeros((h.shape[0], num_classes))
    np.add.at(sums.T, lab, h.T)
    return sums / np.maximum(counts, 1.0)


def within_class_energy(H: Any, labels: Any) -> float:
    """tr(Sigma_W) = ||H - Hbar||_F^2 / N, the within-class variability of features H (p, N) (docs/theory.md 7.1)."""
    h = as_f64(H)
    means = class_means(h, labels)
    return float(np.sum((h - means[:, np.asarray(labels)]) ** 2) / h.shape[1])


def etf_error(M: Any) -> float:
    """||M^T M / ||M^T M||_F - (I - J) / sqrt(C - 1)||_F for centred class means M (p, C) (docs/theory.md 7.1).

    0 exactly for a scaled, rotated simplex ETF (Kothapalli 2023, arXiv:2206.04041).
    """
    m = as_f64(M)
    c = m.shape[1]
    gram = m.T @ m
    target = (np.eye(c) - np.full((c, c), 1.0 / c)) / np.sqrt(c - 1.0)
    return float(np.linalg.norm(gram / np.linalg.norm(gram) - target))
