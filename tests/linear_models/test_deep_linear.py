import numpy as np
import pytest
from scipy.integrate import quad

from linear_models import deep_linear as dl

S_TRUE = np.array([3.0, 2.0, 1.0, 0.5])


def _task(seed=0, n=40, d=5, c=4, noise=0.0):
    """Whitened X and Y = X B^T with Sigma_yx = B = U diag(S_TRUE) V^T built by hand (constructed ground truth).

    With noise > 0, Y gets a component orthogonal to the columns of X: Sigma_yx is unchanged, the loss floor is not.
    """
    rng = np.random.default_rng(seed)
    x = dl.whiten(rng.standard_normal((n, d)))
    u = np.linalg.qr(rng.standard_normal((c, c)))[0]
    v = np.linalg.qr(rng.standard_normal((d, c)))[0]
    b = (u * S_TRUE) @ v.T
    eps = rng.standard_normal((n, c))
    eps -= x @ np.linalg.lstsq(x, eps, rcond=None)[0]
    return x, x @ b.T + noise * eps


def _crossing(t, y, level):
    i = int(np.argmax(y >= level))
    return t[i - 1] + (level - y[i - 1]) / (y[i] - y[i - 1]) * (t[i] - t[i - 1])


def test_whiten_and_io_modes_recover_the_construction():
    x, y = _task()
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-14)
    np.testing.assert_allclose(x.T @ x / x.shape[0], np.eye(5), atol=1e-13)
    _, s, _ = dl.io_modes(x, y)
    np.testing.assert_allclose(s, S_TRUE, rtol=1e-12)


def test_saxe_modes_initial_value_limit_and_shape():
    x, y = _task()
    u, s = dl.saxe_modes(x, y, np.array([0.0, 1e4]), 1e-3)
    assert u.shape == (2, 4) and s.shape == (4,)
    np.testing.assert_allclose(u[0], 1e-3, rtol=1e-15)
    np.testing.assert_allclose(u[1], S_TRUE, rtol=1e-12)


def test_saxe_modes_require_whitened_inputs():
    x, y = _task()
    with pytest.raises(ValueError, match="whiten"):
        dl.saxe_modes(2.0 * x, y, np.array([1.0]), 1e-3)


@pytest.mark.parametrize("depth", [2, 3])
def test_predictor_matches_simulate_from_aligned_init(depth, tol):
    x, y = _task()
    u0 = 1e-2 if depth == 2 else 0.05
    ws = dl.aligned_init(x, y, u0, depth=depth, hidden=6, rng=1)
    np.testing.assert_allclose(
        dl.io_modes(x, y)[0].T @ _prod(ws) @ dl.io_modes(x, y)[2].T, np.diag([u0] * 4), atol=1e-14
    )
    errs = []
    for lr in (2e-3, 1e-3):
        steps = int(round(6.0 / lr))
        sim = dl.simulate(ws, x, y, lr=lr, steps=steps, record_steps=steps // 60)
        pred = dl.predictor(x, y, u0, depth=depth)(sim.t)
        errs.append(max(pred.max_error(sim, keys=["u", "P", "loss"], relative=True).values()))
    assert errs[1] < tol["gd_per_lr"] * 1e-3 * S_TRUE.max()
    assert tol["first_order"][0] < errs[0] / errs[1] < tol["first_order"][1]


def test_time_reversed_prediction_fails(tol):
    x, y = _task()
    ws = dl.aligned_init(x, y, 1e-2, rng=1)
    sim = dl.simulate(ws, x, y, lr=2e-3, steps=3000, record_steps=50)
    pred = dl.predictor(x, y, 1e-2)(sim.t[::-1])
    assert np.abs(pred["u"] - sim["u"]).max() / S_TRUE.max() > 100 * tol["gd_per_lr"] * 2e-3


def test_mode_order_follows_singular_values_and_loss_has_plateaus():
    x, y = _task()
    u0 = 1e-8  # small enough that mode 2 has finished before mode 3 starts: a clean plateau
    ws = dl.aligned_init(x, y, u0, rng=2)
    sim = dl.simulate(ws, x, y, lr=5e-3, steps=4200, record_steps=4)
    t_half = np.array([_crossing(sim.t, sim["u"][:, a] / S_TRUE[a], 0.5) for a in range(4)])
    assert np.all(np.diff(t_half) > 0)  # s = 3, 2, 1, 0.5 rise in that order
    np.testing.assert_allclose(t_half, dl.mode_time_to_reach(S_TRUE / 2, S_TRUE, u0), rtol=0.02)
    # between the drops of modes 2 and 3 the loss sits on a plateau at 1/2 the sum of the unlearned s^2
    t_mid = 0.5 * (t_half[1] + t_half[2])
    plateau = dl.saxe_loss(x, y, np.array([t_mid]), u0)[0]
    assert plateau == pytest.approx(0.5 * np.sum(S_TRUE[2:] ** 2), rel=0.05)
    assert np.interp(t_mid, sim.t, sim["loss"]) == pytest.approx(plateau, rel=0.02)
    assert np.all(np.diff(dl.saxe_loss(x, y, sim.t, u0)) <= 1e-15)


def test_random_small_init_follows_the_staircase_in_order():
    # unaligned small init: an alignment phase, then the same order of learning (docs/theory.md 3.2, [R])
    x, y = _task(seed=3)
    rng = np.random.default_rng(4)
    ws = [1e-3 * rng.standard_normal((8, 5)), 1e-3 * rng.standard_normal((4, 8))]
    sim = dl.simulate(ws, x, y, lr=5e-3, steps=3000, record_steps=5)
    t_half = [_crossing(sim.t, sim["u"][:, a] / S_TRUE[a], 0.5) for a in range(4)]
    assert np.all(np.diff(t_half) > 0)


def test_depth_two_closed_form_matches_ode_and_depth_l_matches_quadrature(tol):
    t = np.linspace(0, 8, 41)
    s, u0 = np.array([2.0, 0.7, 0.0]), np.array([1e-3, 1e-2, 0.3])
    from scipy.integrate import solve_ivp

    ode = solve_ivp(lambda _, u: 2 * u * (s - u), (0, 8), u0, t_eval=t, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dl.mode_strength(t, s, u0), ode.y.T, atol=tol["closed_vs_ode"])
    # depth 3: the time to reach u from the exact integral t(u) = int du / (L u^{2-2/L} (s - u))
    s3, u03, depth = 1.5, 0.02, 3
    for frac in (0.1, 0.5, 0.9):
        target = frac * s3
        t_quad = quad(lambda u: 1 / (depth * u ** (2 - 2 / depth) * (s3 - u)), u03, target, epsabs=0, epsrel=1e-12)[0]
        u_at = dl.mode_strength(np.array([t_quad]), s3, u03, depth=depth)[0, 0]
        assert u_at == pytest.approx(target, rel=tol["time"])


def test_deeper_nets_have_sharper_longer_plateaus():
    s, u0 = 1.0, 1e-2
    t = np.linspace(0, 200, 4001)
    t_half = {}
    for depth in (2, 3, 4):
        u = dl.mode_strength(t, s, u0, depth=depth)[:, 0]
        t_half[depth] = _crossing(t, u, 0.5)
    assert t_half[2] < t_half[3] < t_half[4]
    # plateau of depth L >= 3 ~ u0^{-(L-2)/L} / ((L - 2) s) (docs/theory.md 3.2): polynomial in 1/u0
    assert t_half[3] == pytest.approx(u0 ** (-1 / 3) / s, rel=0.3)


@pytest.mark.parametrize("depth", [2, 3])
def test_vectorised_time_equals_loop(depth, tol):
    t = np.array([2.0, 0.0, 0.5, 7.0, 0.5])
    vec = dl.mode_strength(t, S_TRUE, 0.01, depth=depth)
    loop = np.concatenate([dl.mode_strength(t[i : i + 1], S_TRUE, 0.01, depth=depth) for i in range(t.size)])
    key = "batch_vs_loop" if depth == 2 else "closed_vs_ode"
    np.testing.assert_allclose(vec, loop, rtol=tol[key], atol=tol[key])


def test_reexports_for_lazy_rich():
    for name in ("ntk_two_layer", "kernel_distance", "lambda_balanced_init", "zero_output_init", "ntk_distance"):
        assert callable(getattr(dl, name))


def _prod(ws):
    out = ws[0]
    for w in ws[1:]:
        out = w @ out
    return out


def test_loss_curve_includes_the_irreducible_floor(tol):
    x, y = _task(noise=0.7)
    np.testing.assert_allclose(dl.io_modes(x, y)[1], S_TRUE, rtol=1e-12)  # the noise is orthogonal to X
    floor = 0.5 * np.sum((y - x @ np.linalg.lstsq(x, y, rcond=None)[0]) ** 2) / x.shape[0]
    assert dl.saxe_loss(x, y, np.array([1e4]), 1e-2)[0] == pytest.approx(floor, rel=1e-10)
    ws = dl.aligned_init(x, y, 1e-2, rng=0)
    sim = dl.simulate(ws, x, y, lr=1e-3, steps=6000, record_steps=200)
    np.testing.assert_allclose(
        dl.saxe_loss(x, y, sim.t, 1e-2), sim["loss"], rtol=tol["gd_per_lr"] * 1e-3 * S_TRUE.max()
    )
    np.testing.assert_allclose(dl.predictor(x, y, 1e-2)(sim.t)["loss"], dl.saxe_loss(x, y, sim.t, 1e-2), rtol=1e-14)
