import numpy as np
import pytest

from linear_models import two_layer as tl
from linear_models.deep_linear import whiten


def _task(rng, n=10, d=2, c=2):
    """Fig. 6a-style data: whitened X (N, d), Gaussian Y (N, c)."""
    return whiten(rng.standard_normal((n, d))), rng.standard_normal((n, c))


def test_lambda_balanced_init_is_lambda_balanced_with_sqrt_scale_product():
    lam = np.linspace(-9, 9, 5)[:, None]
    scale = np.array([1.0, 7.0, 20.0])[None, :]
    w1, w2 = tl.lambda_balanced_init(lam, scale, 2, 2, 2, rng=0)
    assert w1.shape == (5, 3, 2, 2) and w2.shape == (5, 3, 2, 2)
    expected = np.broadcast_to(lam[..., None, None] * np.eye(2), w1.shape)
    np.testing.assert_allclose(tl.imbalance_matrix(w1, w2), expected, atol=1e-12)
    sv = np.linalg.svd(w2 @ w1, compute_uv=False)
    np.testing.assert_allclose(sv, np.sqrt(np.broadcast_to(scale, (5, 3)))[..., None] * np.ones(2), rtol=1e-12)
    assert not np.allclose(w1[0, 0], w1[0, 1] * 1.0)  # a fresh draw per net


def test_lambda_balanced_init_bottleneck_and_rejects_wide_hidden():
    w1, w2 = tl.lambda_balanced_init(1.5, 2.0, d=5, h=2, c=3, rng=1)
    np.testing.assert_allclose(tl.imbalance_matrix(w1, w2), 1.5 * np.eye(2), atol=1e-12)
    with pytest.raises(ValueError, match="h <= min"):
        tl.lambda_balanced_init(1.0, 1.0, d=2, h=3, c=2)


def test_zero_output_init_has_zero_output_and_offsets():
    lam = np.array([-0.5, 0.0, 0.5])
    w1, w2 = tl.zero_output_init(lam, d=20, h=20, c=2, rng=0)
    assert w1.shape == (3, 20, 20) and w2.shape == (3, 2, 20)
    assert np.abs(w2 @ w1).max() < 1e-13
    np.testing.assert_allclose(w1[..., :10, :], w1[..., 10:, :])
    np.testing.assert_allclose(w2[..., :10], -w2[..., 10:])
    ref1, ref2 = tl.zero_output_init(np.zeros(3), d=20, h=20, c=2, rng=0)  # same draws, base scale
    np.testing.assert_allclose(w1[2], ref1[2] * 6.0)  # (0.1 + 0.5) / 0.1
    np.testing.assert_allclose(w2[0], ref2[0] * 6.0)


def test_simulate_batched_equals_per_net_reference(tol):
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((7, 3)), rng.standard_normal((5, 7, 2))  # one target per net
    w1, w2 = 0.5 * rng.standard_normal((5, 4, 3)), 0.5 * rng.standard_normal((5, 2, 4))
    lr, steps = 0.05, 30
    tr = tl.simulate_two_layer(w1, w2, x, y, lr=lr, steps=steps, record_steps=[0, 10, 30])
    for b in range(5):
        a1, a2 = w1[b].copy(), w2[b].copy()
        for _ in range(steps):  # the paper's code: grad = (1/N) W2^T (W2 W1 X - Y) X^T, X columns are samples
            e = (a2 @ a1 @ x.T - y[b].T) / x.shape[0]
            a1, a2 = a1 - lr * a2.T @ e @ x, a2 - lr * e @ x @ a1.T
        np.testing.assert_allclose(tr["W1"][-1, b], a1, atol=tol["batch_vs_loop"])
        np.testing.assert_allclose(tr["W2"][-1, b], a2, atol=tol["batch_vs_loop"])
        loss = 0.5 * np.sum((a2 @ a1 @ x.T - y[b].T) ** 2) / x.shape[0]
        assert tr["loss"][-1, b] == pytest.approx(loss, rel=1e-12)
    assert tr["W1"].shape == (3, 5, 4, 3) and np.array_equal(tr.t, lr * np.array([0, 10, 30]))


def _fig6a_cells(rng):
    x, y = _task(rng)
    lam = np.array([-3.0, -0.23, 0.0, 0.69, 5.3])
    w1, w2 = tl.lambda_balanced_init(lam, 2.0, 2, 2, 2, rng)
    return x, y / 2.0, w1, w2


def test_riccati_closed_form_matches_ode_flow(tol):
    x, y, w1, w2 = _fig6a_cells(np.random.default_rng(5))
    t = np.array([0.0, 0.5, 3.0, 12.0, 40.0])
    ric = tl.predictor(w1, w2, x, y, method="riccati")(t)
    ode = tl.predictor(w1, w2, x, y, method="ode")(t)
    for key in ("M", "G", "P", "loss", "kd"):
        np.testing.assert_allclose(ric[key], ode[key], atol=1e3 * tol["closed_vs_ode"])  # ode runs at rtol 1e-9
    assert tl.predictor(w1, w2, x, y)(t)["kd"] == pytest.approx(ric["kd"], abs=1e-15)  # auto picks riccati


def test_predictor_initial_value_limit_and_vectorised(tol):
    x, y, w1, w2 = _fig6a_cells(np.random.default_rng(6))
    pred = tl.predictor(w1, w2, x, y, method="riccati")
    m0, g0 = tl.ntk_grams(w1, w2)
    at0 = pred(np.array([0.0]))
    np.testing.assert_allclose(at0["M"][0], m0, atol=1e-13)
    np.testing.assert_allclose(at0["P"][0], w2 @ w1, atol=1e-13)
    assert np.all(at0["kd"] == 0)
    # full rank h = c = d and lambda != 0: converges to the least-squares map Syx. At lambda = 0 a mode that starts
    # anti-aligned sits on the saddle (as s0 < 0 in the diagonal unit), so that cell (index 2) is left out
    late = pred(np.array([200.0]))["P"][0]
    syx = y.T @ x / x.shape[0]
    np.testing.assert_allclose(late[[0, 1, 3, 4]], np.broadcast_to(syx, (4, 2, 2)), atol=1e-9)
    with pytest.raises(ValueError, match="too large for the closed form"):
        pred(np.array([1e4]))  # leaves float64 range: refuses rather than returning nan
    auto = tl.predictor(w1[1], w2[1], x, y)(np.array([3e3]))["P"][0]  # "auto" falls back to the ODE there
    np.testing.assert_allclose(auto, syx, atol=1e-7)
    t = np.array([7.0, 0.3, 30.0])
    vec = pred(t)["kd"]
    loop = np.concatenate([pred(t[i : i + 1])["kd"] for i in range(3)])
    np.testing.assert_allclose(vec, loop, rtol=tol["batch_vs_loop"], atol=tol["batch_vs_loop"])


def _kd_agreement(lr, reverse=False):
    x, y, w1, w2 = _fig6a_cells(np.random.default_rng(7))
    steps = int(round(4.0 / lr))
    sim = tl.simulate_two_layer(w1, w2, x, y, lr=lr, steps=steps, record_steps=steps // 20)
    m, g = tl.ntk_grams(sim["W1"], sim["W2"])
    kd_sim = tl.ntk_distance(m[0], g[0], m, g)
    pred = tl.predictor(w1, w2, x, y)(sim.t)
    kd_pred = pred["kd"][::-1] if reverse else pred["kd"]
    err_loss = np.abs(pred["loss"] - sim["loss"]).max() / np.abs(sim["loss"]).max()
    return np.abs(kd_pred - kd_sim).max() / np.abs(kd_sim).max(), err_loss


def test_predictor_matches_simulate_at_small_lr(tol):
    lr = 2e-3
    err_kd, err_loss = _kd_agreement(lr)
    assert err_kd < tol["gd_per_lr"] * lr and err_loss < tol["gd_per_lr"] * lr
    ratio = _kd_agreement(2 * lr)[0] / err_kd
    assert tol["first_order"][0] < ratio < tol["first_order"][1]


def test_time_reversed_kd_prediction_fails(tol):
    assert _kd_agreement(2e-3, reverse=True)[0] > 100 * tol["gd_per_lr"] * 2e-3


def test_riccati_refuses_unbalanced_or_unwhitened():
    rng = np.random.default_rng(8)
    x, y = _task(rng, n=10, d=4, c=2)
    w1, w2 = tl.zero_output_init(0.2, d=4, h=4, c=2, rng=rng)
    with pytest.raises(ValueError, match="lambda-balanced"):
        tl.predictor(w1, w2, x, y, method="riccati")
    b1, b2 = tl.lambda_balanced_init(0.5, 1.0, d=2, h=2, c=2, rng=rng)
    with pytest.raises(ValueError, match="whitened"):
        tl.predictor(b1, b2, rng.standard_normal((10, 2)), y, method="riccati")
    kd = tl.predict_kd(w1, w2, x, y, np.array([0.0, 1.0]))  # auto falls back to the ODE
    assert kd.shape == (2,) and kd[0] == 0 and 0 < kd[1] < 1


def test_imbalance_is_conserved_to_first_order_in_lr(tol):
    x, y, w1, w2 = _fig6a_cells(np.random.default_rng(9))
    drift = {}
    for lr in (4e-3, 2e-3):
        tr = tl.simulate_two_layer(w1, w2, x, y, lr=lr, steps=int(round(4 / lr)), record_steps=[0, int(round(4 / lr))])
        q = tl.imbalance_matrix(tr["W1"], tr["W2"])
        drift[lr] = np.abs(q[-1] - q[0]).max() / np.abs(q[0]).max()
    assert drift[2e-3] < tol["gd_per_lr"] * 2e-3
    assert tol["first_order"][0] < drift[4e-3] / drift[2e-3] < tol["first_order"][1]


def test_predicted_kd_map_has_the_rich_wedge():
    # docs/theory.md 5.4: rich (KD >~ 1e-2) near lambda = 0 at scale 1, lazy (KD < 1e-6) at |lambda| = 9, scale 20
    rng = np.random.default_rng(10)
    x, y = _task(rng)
    lam = np.array([0.23, 0.23, 9.0, -9.0])[:, None]
    scale = np.array([1.0, 20.0])[None, :]
    w1, w2 = tl.lambda_balanced_init(lam, scale, 2, 2, 2, rng)
    targets = np.broadcast_to(y / scale[..., None, None], (4, 2) + y.shape)
    kd = tl.predict_kd(w1, w2, x, targets, np.array([40.0]))[0]
    assert kd[0, 0] > 1e-2 and kd[0, 0] > 10 * kd[0, 1]
    assert np.all(kd[2:, 1] < 1e-6)
