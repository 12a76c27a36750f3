"""Theory voice of the lazy/rich real side: a lambda-balanced 2-layer linear net at the measured lambda and ratio.

For a real network (MLP or small ResNet) at one sweep point, the reduced model keeps two numbers of its init and
the task, in the coordinates the linear twin trains in (docs/theory.md 2.3, 2.4, 3.2, 5.1):

- the imbalance lambda = tr(W1 W1^T - W2^T W2) / h = (A - B) / h, A = ||W_first||_F^2, B = ||output_scale W_last||_F^2,
  h = the first layer's output width (for 2 layers the mean eigenvalue of the conserved matrix, docs/theory.md 2.4);
- the initial end-to-end map P (c x r) of the twin on whitened inputs: the twin is linear, so centring its outputs
  F on the twin's inputs gives P = F_c^T X_w / N, with X_w = sqrt(N) U_r from the thin SVD of the centred inputs;
  u0^2 = the mean of its top-c squared singular values (the Fig. 6a "scale": product singular values sqrt(scale));
- Sigma_yx = Y^T X_w / N (c x r) of the task; whitening within the span of the training inputs needs no N >= d.

The reduced net is the Fig. 6a model at these values: lambda-balanced (``linear_models.two_layer.lambda_balanced_init``)
r -> c -> c with imbalance lambda and product singular values u0. Its gradient flow on (X_w, Y) is the exact Riccati
solution of Dominé et al. 2024 (arXiv:2409.14623; ``linear_models.two_layer.predictor(method="riccati")``,
overflow-free for any t), and its KD(K(0), K(t)) on the training inputs is the theory's KD at the real net's times
t = lr * step (docs/theory.md 2.1). Matching the norms A, B instead would put all of the weight norm into the product
(u0 = sqrt(A B) / c), far above the product of a random init with h >> c, and predict rich "unlearning" where the
real nets are lazy.
"""

from __future__ import annotations

import numpy as np

from linear_models import deep_linear, two_layer


def whitened_task(x: np.ndarray, y: np.ndarray, tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """Whiten the training inputs within their span (docs/theory.md 2.5): X_w = sqrt(N) U_r.

    Args:
        x: Inputs (N, *shape), any float array (flattened to (N, d)).
        y: Targets (N, c).
        tol: Relative singular-value cut-off for the rank r.

    Returns:
        (X_w (N, r) with X_w^T X_w / N = I_r, Y (N, c)), float64.
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return deep_linear.whiten(x, tol=tol), np.asarray(y, dtype=np.float64)


def product_map(f: np.ndarray, xw: np.ndarray) -> np.ndarray:
    """End-to-end map P (c x r) of a linear network in whitened coordinates, from its outputs on the inputs.

    Args:
        f: Outputs of the (linear) network on the training inputs, (N, c).
        xw: Those inputs whitened within their span (``whitened_task``), (N, r).

    Returns:
        P = F_c^T X_w / N, float64 (exact for an affine network: F_c = X_w P^T).
    """
    f = np.asarray(f, dtype=np.float64)
    return (f - f.mean(axis=0)).T @ xw / len(xw)


def reduced_kd(
    t: np.ndarray, lam: float, u0: float, xw: np.ndarray, y: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Theory KD(K(0), K(t)) of the lambda-balanced r -> c -> c net (module docstring) on the whitened training set.

    Args:
        t: Times (T,), t = lr * step.
        lam: Imbalance (suite sign), the real net's (A - B) / h.
        u0: Product singular value of the init, > 0 (the Fig. 6a scale is u0^2).
        xw: Whitened inputs (N, r), r >= c. y: Targets (N, c).
        rng: numpy Generator for the reduced net's random directions.

    Returns:
        KD at each time, (T,), float64 in [0, 1].
    """
    r, c = xw.shape[1], y.shape[1]
    if r < c:
        raise ValueError(f"the whitened task has rank {r} < c = {c}; use more training samples")
    w1, w2 = two_layer.lambda_balanced_init(lam, max(u0, 1e-12) ** 2, r, c, c, rng)
    kd = two_layer.predictor(w1, w2, xw, y, method="riccati")(np.asarray(t, dtype=np.float64))["kd"]
    return np.clip(kd, 0.0, None)
