import numpy as np
import pytest

from linear_models import diagonal, ufm

C, N_PER, P = 4, 5, 8
LABELS = np.repeat(np.arange(C), N_PER)
Y = ufm.one_hot(LABELS, C)
N = C * N_PER


def _random_init(scale, seed=0, labels=LABELS):
    rng = np.random.default_rng(seed)
    return scale * rng.standard_normal((P, labels.size)), scale * rng.standard_normal((int(labels.max()) + 1, P))


def _simplex(c):
    """A constructed simplex ETF: c unit vectors with pairwise cosine -1/(c - 1), rotated into R^(c + 2)."""
    m = np.eye(c) - 1.0 / c
    rot = np.linalg.qr(np.random.default_rng(0).standard_normal((c + 2, c)))[0]
    return 3.0 * rot @ m


def test_etf_error_is_zero_exactly_for_a_simplex():
    assert ufm.etf_error(_simplex(5)) < 1e-14
    assert ufm.etf_error(np.eye(5)) > 0.1  # an orthogonal frame is not a simplex


def test_target_modes_balanced_are_equal_and_collapse_scale_matches():
    _, s, _ = ufm.target_modes(Y)
    np.testing.assert_allclose(s[:3], np.sqrt(N_PER), rtol=1e-14)  # C - 1 equal modes
    assert s[3] < 1e-12
    _, s_nb, _ = ufm.target_modes(Y, bias=False)
    np.testing.assert_allclose(s_nb, np.sqrt(N_PER), rtol=1e-14)  # C modes without bias
    wd_w, wd_h = 0.02, 0.08
    lim = ufm.predicted_limit(Y, wd_w, wd_h)
    rho = ufm.collapse_scale(C, N_PER, wd_w, wd_h)
    hbar = lim.product.reshape(C, C, N_PER)[..., 0]  # columns are repeated within a class
    np.testing.assert_allclose(hbar, rho * (np.eye(C) - 1.0 / C), atol=1e-14)
    assert lim.rank == C - 1 and ufm.predicted_limit(Y, wd_w, wd_h, bias=False).rank == C
    assert ufm.predicted_limit(Y, 1.0, 1.0).rank == 0 and ufm.collapse_scale(C, N_PER, 1.0, 1.0) == 0.0


@pytest.mark.parametrize("bias", [True, False])
def test_gd_with_weight_decay_reaches_the_predicted_limit(bias, tol):
    wd_w, wd_h = 0.02, 0.08
    h0, w0 = _random_init(0.1)
    sim = ufm.simulate(h0, w0, Y, lr=0.5, steps=1500, record_steps=[0, 1500], wd_W=wd_w, wd_H=wd_h, bias=bias)
    lim = ufm.predicted_limit(Y, wd_w, wd_h, bias=bias)
    h, w = sim["H"][-1], sim["W"][-1]
    np.testing.assert_allclose(w @ h, lim.product, atol=tol["limit"])
    np.testing.assert_allclose(h.T @ h, lim.feature_gram, atol=tol["limit"])
    np.testing.assert_allclose(w @ w.T, lim.classifier_gram, atol=tol["limit"])
    assert np.sum(w**2) / np.sum(h**2) == pytest.approx(lim.norm_ratio, rel=tol["limit"])
    assert sim["within"][-1] < tol["limit"] ** 2  # NC1: within-class variability gone
    means = ufm.class_means(h, LABELS)
    if bias:  # centred class means on a simplex ETF, self-dual with the classifier
        assert ufm.etf_error(means - means.mean(axis=1, keepdims=True)) < tol["limit"]
        np.testing.assert_allclose(
            w.T / np.linalg.norm(w), (means - means.mean(1, keepdims=True)) / np.linalg.norm(means), atol=1e-5
        )
    else:  # no bias: an orthogonal frame of rank C
        g = means.T @ means
        np.testing.assert_allclose(g / g[0, 0], np.eye(C), atol=tol["limit"])


def test_within_class_residual_decays_at_twice_the_feature_weight_decay(tol):
    wd_w, wd_h, lr = 0.02, 0.05, 0.2
    h0, w0 = _random_init(0.3, seed=1)
    sim = ufm.simulate(h0, w0, Y, lr=lr, steps=2000, record_steps=20, wd_W=wd_w, wd_H=wd_h)
    late = (sim.t > 200) & (sim["within"] > 1e-25)
    slope = np.polyfit(sim.t[late], np.log(sim["within"][late]), 1)[0]
    assert -slope == pytest.approx(ufm.residual_decay_rate(wd_h), rel=tol["rate"])
    assert -slope != pytest.approx(2 * wd_w, rel=tol["control_miss"])  # the classifier's decay is not the rate


def test_without_weight_decay_collapse_is_incomplete_and_grows_with_init():
    plateaus = []
    for scale in (0.1, 1.0):
        h0, w0 = _random_init(scale, seed=2)
        sim = ufm.simulate(h0, w0, Y, lr=0.5, steps=3000, record_steps=[0, 1500, 3000])
        assert sim["loss"][-1] < 1e-5 * sim["loss"][0]  # fits the targets...
        assert sim["within"][-1] == pytest.approx(sim["within"][1], rel=0.02)  # ...but the residual stays put
        assert sim["within"][-1] > 0.3 * sim["within"][0]
        plateaus.append(sim["within"][-1])
    assert plateaus[1] > 30 * plateaus[0]  # ~ init^2


@pytest.mark.parametrize(("wd_w", "wd_h"), [(0.0, 0.0), (0.02, 0.05), (0.03, 0.03)])
def test_predictor_matches_simulate_from_aligned_init(wd_w, wd_h, tol):
    errs = []
    for lr in (0.1, 0.05):
        h0, w0, b0 = ufm.aligned_init(Y, P, 0.05, rng=0)
        steps = int(round(60 / lr))
        sim = ufm.simulate(h0, w0, Y, lr=lr, steps=steps, record_steps=steps // 30, wd_W=wd_w, wd_H=wd_h, b0=b0)
        pred = ufm.predictor(Y, 0.05, wd_W=wd_w, wd_H=wd_h)(sim.t)
        errs.append(max(pred.max_error(sim, keys=["u", "loss", "objective"], relative=True).values()))
    assert errs[1] < tol["gd_per_lr"] * 0.05
    assert tol["first_order"][0] < errs[0] / errs[1] < tol["first_order"][1]


def test_predictor_initial_value_limits_and_equal_decay_closed_form(tol):
    _, s, _ = ufm.target_modes(Y)
    pred = ufm.predictor(Y, 0.05, 0.1)
    tr = pred(np.array([0.0, 5e3]))
    np.testing.assert_allclose(tr["u"][0], 0.005, rtol=1e-15)
    np.testing.assert_allclose(tr["u"][1, :3], s[:3], rtol=1e-8)  # no weight decay: fits every mode
    # wd_W = wd_H = wd, balanced: the Saxe sigmoid on the clock t/N toward sigma - N wd
    wd = 0.03
    t = np.linspace(0, 200, 21)
    u = ufm.predictor(Y, 0.05, wd_W=wd, wd_H=wd)(t)["u"][:, :3]
    np.testing.assert_allclose(u, diagonal.solution(t[:, None], s[:3] - N * wd, 0.05**2, 0.0, 1.0 / N), atol=1e-8)
    late = ufm.predictor(Y, 0.05, wd_W=wd, wd_H=wd)(np.array([5e3]))["u"][0]
    np.testing.assert_allclose(late, ufm.predicted_limit(Y, wd, wd).u, atol=1e-7)


def test_predictor_vectorised_time_equals_loop(tol):
    pred = ufm.predictor(Y, 0.05, wd_W=0.01, wd_H=0.02)
    t = np.array([30.0, 0.0, 5.0, 80.0, 5.0])
    loop = np.concatenate([pred(t[i : i + 1])["u"] for i in range(t.size)])
    np.testing.assert_allclose(pred(t)["u"], loop, atol=tol["closed_vs_ode"])


def test_mode_order_follows_singular_values_with_unequal_classes():
    counts = [12, 6, 3, 2]
    labels = np.repeat(np.arange(4), counts)
    y = ufm.one_hot(labels, 4)
    _, s, _ = ufm.target_modes(y)
    assert np.all(np.diff(s[:3]) < 0)
    h0, w0 = _random_init(1e-3, seed=3, labels=labels)
    sim = ufm.simulate(h0, w0, y, lr=0.5, steps=3000, record_steps=5)
    frac = sim["u"][:, :3] / s[:3]
    t_half = [sim.t[np.argmax(frac[:, a] >= 0.5)] for a in range(3)]
    assert t_half[0] < t_half[1] < t_half[2]
    # minority collapse: with weight decay the smallest mode is thresholded first
    lim = ufm.predicted_limit(y, 0.075, 0.075)
    assert lim.rank == 2 and lim.u[2] == 0.0 and lim.u[0] > lim.u[1] > 0
    sim_wd = ufm.simulate(h0, w0, y, lr=0.5, steps=3000, record_steps=[3000], wd_W=0.075, wd_H=0.075)
    np.testing.assert_allclose(np.abs(sim_wd["u"][-1, :3]), lim.u[:3], atol=1e-6)
