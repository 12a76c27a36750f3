"""NTK of the two-layer linear network and the kernel distance, from weights or from their Grams.

f(x) = W2 W1 x with W1 (..., h, d), W2 (..., c, h) and probe inputs X (N, d) in rows (docs/theory.md 3.3); the kernel is
(cN x cN), output-major. Kernel distance of Fort et al. 2020 (docs/theory.md 2.6). Re-exported by
:mod:`linear_models.two_layer` and :mod:`linear_models.deep_linear`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from linear_models._types import as_f64

__all__ = ["ntk_two_layer", "ntk_grams", "kernel_distance", "ntk_distance"]


def ntk_two_layer(W1: Any, W2: Any, X: Any) -> np.ndarray:
    """Empirical NTK of f(x) = W2 W1 x on the rows of X, output-major (docs/theory.md 3.3).

    K((x, i), (x', j)) = delta_ij x^T W1^T W1 x' + (W2 W2^T)_ij x^T x', i.e. K = I_c (x) (X M X^T) + G (x) (X X^T)
    with M = W1^T W1, G = W2 W2^T; row index i * N + n (output i, sample n). Matches the paper's code get_ntk [C].

    Args:
        W1: First layers (*B, h, d).
        W2: Second layers (*B, c, h).
        X: Probe inputs (N, d), rows are samples.

    Returns:
        K, (*B, cN, cN), float64.
    """
    m, g = ntk_grams(W1, W2)
    x = as_f64(X)
    n, c = x.shape[0], g.shape[-1]
    a = x @ m @ x.T  # (*B, N, N)
    b = x @ x.T
    eye = np.eye(c)
    k = eye[:, None, :, None] * a[..., None, :, None, :] + g[..., :, None, :, None] * b[:, None, :]
    return k.reshape(k.shape[:-4] + (c * n, c * n))


def ntk_grams(W1: Any, W2: Any) -> tuple[np.ndarray, np.ndarray]:
    """The two Grams the NTK depends on: M = W1^T W1 (*B, d, d) and G = W2 W2^T (*B, c, c) (docs/theory.md 3.3)."""
    w1, w2 = as_f64(W1), as_f64(W2)
    return np.swapaxes(w1, -1, -2) @ w1, w2 @ np.swapaxes(w2, -1, -2)


def kernel_distance(K0: Any, K1: Any) -> np.ndarray | float:
    """Kernel distance of Fort et al. 2020 (arXiv:2010.15110): KD = 1 - <K0, K1>_F / (||K0||_F ||K1||_F).

    docs/theory.md 2.6: scale-free, in [0, 1] for PSD kernels (in [0, 2] in general); 0 means the same direction.

    Args:
        K0: Kernels (*B, n, n).
        K1: Kernels, broadcastable with K0.

    Returns:
        KD (*B), float64, clipped at 0 (rounding can make 1 - cos a hair negative); NaN where a kernel is zero. Each
        kernel is normalised before the inner product, so the small KD of two large, nearly equal kernels keeps its
        digits. A float when both are 2-D.
    """
    k0, k1 = np.broadcast_arrays(as_f64(K0), as_f64(K1))
    n0 = np.sqrt(np.sum(k0 * k0, axis=(-2, -1), keepdims=True))
    n1 = np.sqrt(np.sum(k1 * k1, axis=(-2, -1), keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.sum((k0 / n0) * (k1 / n1), axis=(-2, -1))
    kd = np.where(np.isfinite(cos), np.maximum(1.0 - cos, 0.0), np.nan)
    return float(kd) if np.ndim(kd) == 0 else kd


def ntk_distance(M0: Any, G0: Any, M1: Any, G1: Any, xtx: Any = None) -> np.ndarray:
    """KD between the NTKs of two weight settings of a two-layer linear net, from Grams only (docs/theory.md 3.3).

    <K, K'>_F = c tr(M S M' S) + tr(G') tr(M S^2) + tr(G) tr(M' S^2) + tr(G G') tr(S^2) with S = X^T X; for whitened X
    (S = N I_d) this is N^2 [c tr(M M') + tr(G') tr(M) + tr(G) tr(M') + d tr(G G')] [D*]. No (cN x cN) kernel is
    built, so KD costs O(d^3) per net.

    Args:
        M0: W1^T W1 at the reference time, (*B, d, d).
        G0: W2 W2^T at the reference time, (*B, c, c).
        M1: W1^T W1 at the later time(s), broadcastable with M0 (e.g. (T, *B, d, d)).
        G1: W2 W2^T at the later time(s), broadcastable with G0.
        xtx: X^T X (d, d) of the probe inputs; None means whitened (S proportional to I, which cancels in KD).

    Returns:
        KD, the broadcast batch shape, float64.
    """
    m0, g0, m1, g1 = (as_f64(x) for x in (M0, G0, M1, G1))
    s = np.eye(m0.shape[-1]) if xtx is None else as_f64(xtx)

    def inner(ma: np.ndarray, ga: np.ndarray, mb: np.ndarray, gb: np.ndarray) -> np.ndarray:
        c = ga.shape[-1]
        ms_a, ms_b = ma @ s, mb @ s
        t1 = c * np.einsum("...ij,...ji->...", ms_a, ms_b)
        t2 = _tr(gb) * np.einsum("...ij,ji->...", ms_a, s)
        t3 = _tr(ga) * np.einsum("...ij,ji->...", ms_b, s)
        t4 = np.einsum("...ij,...ji->...", ga, gb) * np.trace(s @ s)
        return t1 + t2 + t3 + t4

    return 1.0 - inner(m0, g0, m1, g1) / np.sqrt(inner(m0, g0, m0, g0) * inner(m1, g1, m1, g1))


def _tr(a: np.ndarray) -> np.ndarray:
    return np.trace(a, axis1=-2, axis2=-1)
