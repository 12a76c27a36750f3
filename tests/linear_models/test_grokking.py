import numpy as np
import pytest
from scipy.integrate import solve_ivp

from linear_models import grokking as gk

N_UNITS, S, V, Z = 50, 2.0, 1.3, 4.0


def _weights(seed=0, scale=0.3):
    rng = np.random.default_rng(seed)
    return scale * rng.standard_normal(N_UNITS), scale * rng.standard_normal(N_UNITS)


def _weights_with_ratio(ratio, seed, target=1.0):
    """Weights with S_0 = 0 exactly (a orthogonal to b) and Sigma_0 = ratio * target (Z = 1)."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(N_UNITS), rng.standard_normal(N_UNITS)
    a -= (a @ b) / (b @ b) * b
    scale = np.sqrt(2 * ratio * target / np.sum(a * a + b * b))
    return scale * a, scale * b


def _neuron_flow(a, b, t):
    """Independent reference: the per-neuron gradient flow of docs/theory.md 6.2, by solve_ivp."""

    def rhs(_, y):
        x, w = y[:N_UNITS], y[N_UNITS:]
        r = V / Z * (x @ w / Z - S)
        return np.concatenate([-r * w, -r * x])

    sol = solve_ivp(rhs, (0, t.max()), np.concatenate([a, b]), t_eval=t, rtol=1e-12, atol=1e-14, method="DOP853")
    return sol.y[:N_UNITS].T, sol.y[N_UNITS:].T


def test_riccati_gamma_plus_and_per_neuron_factors_match_the_neuron_flow(tol):
    a, b = _weights()
    sigma0, s0 = gk.weight_ratio(a, b, Z)
    t = np.linspace(0, 60, 13)
    aa, bb = _neuron_flow(a, b, t)
    sig, beta = gk.weight_ratio(aa, bb, Z)
    pred = gk.predictor(sigma0, s0, S, V, Z)(t)
    np.testing.assert_allclose(pred["beta"], beta, atol=tol["closed_vs_ode"])
    np.testing.assert_allclose(pred["Sigma"], sig, atol=tol["closed_vs_ode"])
    g = gk.gamma_plus(sigma0, s0, S)
    assert sig[-1] == pytest.approx(gk.sigma_inf(sigma0, s0, S), rel=1e-9)
    # every pair stretched by sqrt(gamma_+) along (1, 1), shrunk by 1/sqrt(gamma_+) along (1, -1)
    np.testing.assert_allclose((aa[-1] + bb[-1]) / (a + b), np.sqrt(g), rtol=1e-8)
    np.testing.assert_allclose((aa[-1] - bb[-1]) / (a - b), 1 / np.sqrt(g), rtol=1e-8)
    rwc = np.sqrt(np.sum((aa - a) ** 2 + (bb - b) ** 2, axis=1) / np.sum(a**2 + b**2))
    np.testing.assert_allclose(pred["rwc"], rwc, atol=tol["closed_vs_ode"])
    assert gk.relative_weight_change(sigma0, s0, S) == pytest.approx(rwc[-1], rel=1e-8)


def test_gamma_plus_formula_and_limits():
    assert gk.gamma_plus(3.0, 1.0, 2.0) == pytest.approx((2 + np.sqrt(9 - 1 + 4)) / 4, rel=1e-15)
    big = np.array([1e3, 1e4])
    np.testing.assert_allclose(gk.gamma_plus(big, 0.0, 1.0), 1 + 1 / big, rtol=1e-6)  # lazy: ~ 1 + S / Sigma_0
    small = np.array([1e-3, 1e-4])
    np.testing.assert_allclose(gk.gamma_plus(small, 0.0, 1.0), 2 / small, rtol=1e-3)  # rich: ~ 2 S / Sigma_0
    # RWC, S_0 = 0: [(sqrt(g) - 1)^2 + (1/sqrt(g) - 1)^2] / 2
    g = gk.gamma_plus(2.0, 0.0, 1.0)
    expected = np.sqrt(((np.sqrt(g) - 1) ** 2 + (1 / np.sqrt(g) - 1) ** 2) / 2)
    assert gk.relative_weight_change(2.0, 0.0, 1.0) == pytest.approx(expected, rel=1e-14)
    assert gk.relative_weight_change(1e4, 0.0, 1.0) < 1e-3 < gk.relative_weight_change(1e-2, 0.0, 1.0)


def test_riccati_initial_value_limit_and_vectorised(tol):
    sigma0, s0 = 1.5, -0.4
    beta, sig = gk.riccati(np.array([0.0, np.inf, 1e4]), sigma0, s0, S, V, Z)
    assert beta[0] == s0 and sig[0] == sigma0
    np.testing.assert_allclose(beta[1:], S, rtol=1e-14)
    np.testing.assert_allclose(sig[1:], gk.sigma_inf(sigma0, s0, S), rtol=1e-14)
    t = np.array([3.0, 0.0, 0.4, 20.0, 0.4])
    for wd in (0.0, 0.02):
        pred = gk.predictor(sigma0, s0, S, V, Z, wd=wd)
        loop = np.concatenate([pred(t[i : i + 1])["beta"] for i in range(t.size)])
        key = "batch_vs_loop" if wd == 0 else "closed_vs_ode"
        np.testing.assert_allclose(pred(t)["beta"], loop, rtol=tol[key], atol=tol[key])


@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_predictor_matches_simulate_at_small_lr(wd, tol):
    a, b = _weights(seed=1)
    sigma0, s0 = gk.weight_ratio(a, b, Z)
    errs = []
    for lr in (2e-2, 1e-2):
        steps = int(round(40 / lr))
        sim = gk.simulate(a, b, S, V, Z, lr=lr, steps=steps, record_steps=steps // 40, wd=wd)
        pred = gk.predictor(sigma0, s0, S, V, Z, wd=wd)(sim.t)
        errs.append(max(pred.max_error(sim, keys=["beta", "Sigma", "gamma", "rwc", "loss"], relative=True).values()))
    kappa = 2 * V / Z * gk.sigma_inf(sigma0, s0, S)  # the fastest rate of the flow
    assert errs[1] < tol["gd_per_lr"] * 1e-2 * kappa
    assert tol["first_order"][0] < errs[0] / errs[1] < tol["first_order"][1]


def test_time_reversed_prediction_fails(tol):
    a, b = _weights(seed=1)
    sigma0, s0 = gk.weight_ratio(a, b, Z)
    sim = gk.simulate(a, b, S, V, Z, lr=1e-2, steps=4000, record_steps=100)
    pred = gk.predictor(sigma0, s0, S, V, Z)(sim.t)
    err = np.abs(pred["beta"][::-1] - sim["beta"]).max() / S
    assert err > 100 * tol["gd_per_lr"] * 1e-2


def test_weight_decay_shrinks_sigma_squared_minus_beta_squared_exactly(tol):
    sigma0, s0, wd = 3.0, 0.5, 0.04
    t = np.linspace(0, 50, 11)
    tr = gk.predictor(sigma0, s0, S, V, Z, wd=wd)(t)
    c = tr["Sigma"] ** 2 - tr["beta"] ** 2
    np.testing.assert_allclose(c, (sigma0**2 - s0**2) * np.exp(-4 * wd * t), rtol=1e-8)
    late = t > 10  # once fitted, beta ~ S and Sigma follows decayed_sigma
    np.testing.assert_allclose(
        gk.decayed_sigma(t[late], sigma0, s0, tr["beta"][late], wd), tr["Sigma"][late], rtol=1e-8
    )


def test_delay_formula():
    assert gk.delay(np.e**3, 0.1, 0.01) == pytest.approx(3 / (2 * 0.1 * 0.01), rel=1e-14)
    np.testing.assert_array_equal(gk.delay(np.array([0.5, 1.0]), 0.1, 0.01), [0.0, 0.0])  # clipped at 0
    assert gk.delay(100.0, 0.05, 0.01) == pytest.approx(gk.delay(100.0, 0.1, 0.01) * 2, rel=1e-14)  # 1/lr
    assert gk.delay(100.0, 0.1, 0.005) == pytest.approx(gk.delay(100.0, 0.1, 0.01) * 2, rel=1e-14)  # 1/wd
    assert gk.delay(100.0, 0.1, 0.01, c=10.0) == pytest.approx(gk.delay(100.0, 0.1, 0.01) / 2, rel=1e-14)


def test_delay_law_in_simulation(tol):
    # lazy start (Sigma_0 >> S), decoupled weight decay; "grok" = Sigma falls below 2 S, i.e. c = sqrt(3) exactly
    # in the flow (Sigma^2 = S^2 + C_0 e^{-4 wd t}); the slope in ln(Sigma_0) must be 1 / (2 lr wd)
    lr, wd, target = 0.005, 0.05, 1.0
    ratios = np.array([10.0, 30.0, 100.0])
    crossing = []
    for seed, ratio in enumerate(ratios):
        a, b = _weights_with_ratio(ratio, seed, target)
        predicted = gk.delay(ratio, lr, wd, c=np.sqrt(3))
        sim = gk.simulate(a, b, target, lr=lr, steps=int(1.1 * predicted), record_steps=1, wd=wd)
        assert np.any(sim["Sigma"] < 2 * target)
        crossing.append(sim.step[np.argmax(sim["Sigma"] < 2 * target)])
        assert crossing[-1] == pytest.approx(predicted, rel=tol["rate"])
    slope = np.polyfit(np.log(ratios), crossing, 1)[0]
    assert slope == pytest.approx(1 / (2 * lr * wd), rel=tol["rate"])


def test_without_weight_decay_there_is_no_delayed_transition():
    a, b = _weights_with_ratio(30.0, seed=5)
    sim = gk.simulate(a, b, 1.0, lr=0.005, steps=6000, record_steps=[0, 3000, 6000])
    assert np.all(sim["Sigma"] > 29.0)  # negative control: Sigma stays at Sigma_inf, never reaches ~ S
    assert sim["Sigma"][-1] == pytest.approx(gk.sigma_inf(30.0, 0.0, 1.0), rel=1e-3)
