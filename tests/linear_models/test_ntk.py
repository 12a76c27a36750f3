import numpy as np
import pytest

from linear_models import ntk
from linear_models.deep_linear import whiten


def _jacobian(w1, w2, x):
    """Independent NTK: central differences of f(x) = W2 W1 x, exact for this bilinear map (up to rounding)."""
    c, n = w2.shape[0], x.shape[0]
    params = [w1, w2]
    cols = []
    for k, p in enumerate(params):
        for idx in np.ndindex(p.shape):
            plus = [q.copy() for q in params]
            minus = [q.copy() for q in params]
            plus[k][idx] += 1.0
            minus[k][idx] -= 1.0
            fp = (plus[1] @ plus[0] @ x.T).reshape(c * n)  # output-major: i * N + n
            fm = (minus[1] @ minus[0] @ x.T).reshape(c * n)
            cols.append((fp - fm) / 2.0)
    return np.stack(cols, axis=1)


def test_ntk_matches_jacobian_gram():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3))
    w1, w2 = rng.standard_normal((5, 3)), rng.standard_normal((2, 5))
    j = _jacobian(w1, w2, x)
    np.testing.assert_allclose(ntk.ntk_two_layer(w1, w2, x), j @ j.T, rtol=1e-10, atol=1e-10)


def test_ntk_batched_equals_loop():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3))
    w1, w2 = rng.standard_normal((6, 5, 3)), rng.standard_normal((6, 2, 5))
    k = ntk.ntk_two_layer(w1, w2, x)
    for b in range(6):
        np.testing.assert_allclose(k[b], ntk.ntk_two_layer(w1[b], w2[b], x), rtol=0, atol=1e-12)


def test_kernel_distance_properties():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((6, 6))
    k = a @ a.T
    assert ntk.kernel_distance(k, k) == pytest.approx(0.0, abs=1e-15)
    assert ntk.kernel_distance(k, 3.7 * k) == pytest.approx(0.0, abs=1e-15)
    e1, e2 = np.diag([1.0, 0, 0]), np.diag([0, 1.0, 0])
    assert ntk.kernel_distance(e1, e2) == 1.0  # orthogonal PSD kernels
    assert ntk.kernel_distance(np.eye(3), np.diag([1.0, 1.0, 0.0])) == pytest.approx(1 - 2 / np.sqrt(6), rel=1e-14)
    b = rng.standard_normal((6, 6))
    kd = ntk.kernel_distance(np.stack([k, k]), np.stack([k, b @ b.T]))
    assert kd.shape == (2,) and 0 <= kd[1] <= 1


@pytest.mark.parametrize("whitened", [True, False])
def test_ntk_distance_from_grams_equals_full_kernel(whitened):
    rng = np.random.default_rng(3)
    x = whiten(rng.standard_normal((12, 3))) if whitened else rng.standard_normal((12, 3))
    w1, w2 = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 2, 4))
    k = ntk.ntk_two_layer(w1, w2, x)
    full = ntk.kernel_distance(k[0], k[1])
    m, g = ntk.ntk_grams(w1, w2)
    assert ntk.ntk_distance(m[0], g[0], m[1], g[1], x.T @ x) == pytest.approx(full, rel=1e-10)
    fast = ntk.ntk_distance(m[0], g[0], m[1], g[1])  # assumes whitened X
    assert (fast == pytest.approx(full, rel=1e-10)) == whitened
