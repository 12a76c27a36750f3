import numpy as np
import pytest

from linear_models import diagonal, skills

P5 = skills.skill_frequencies(5, 0.6)


def test_skill_frequencies_match_science_table():
    np.testing.assert_allclose(P5, [0.5927, 0.1955, 0.1022, 0.0645, 0.0451], atol=5e-5)  # docs/theory.md 4.1


def test_skill_strength_is_the_logistic_of_eq_4_3_1(tol):
    step = np.array([0, 100, 1000, 5000])
    S, R0, lr = 5.0, 1e-4, 0.02
    ref = S / (1 + (S / R0 - 1) * np.exp(-2 * P5 * S * lr * step[:, None]))
    r = skills.skill_strength(step, P5, S, R0, lr)
    assert r.shape == (4, 5)
    np.testing.assert_allclose(r, ref, rtol=1e-13)
    np.testing.assert_array_equal(r[0], R0)
    np.testing.assert_allclose(skills.skill_strength(1e9, P5, S, R0, lr), S, rtol=1e-14)
    assert skills.skill_strength(100, P5, S, R0, lr).shape == (5,)


def test_emergence_times_reproduce_the_published_time_panel():
    # docs/theory.md 4.3: S = 5, init 0.01 (R0 = init^2 / 3.6), lr 0.02, torch-MSE factor 2, fitted tau = 22
    t = skills.emergence_time(P5, 5.0, 0.01**2 / 3.6)
    steps = t * 22 / (2 * 0.02)
    np.testing.assert_allclose(steps, [1123, 3404, 6513, 10319, 14747], rtol=5e-4)


def test_emergence_time_slope_is_minus_one(tol):
    p = skills.skill_frequencies(12, 0.9)
    t = skills.emergence_time(p, 2.0, 1e-3)
    assert np.polyfit(np.log(p), np.log(t), 1)[0] == pytest.approx(-1.0, abs=1e-12)
    # an imbalance shifts the intercept per skill; equal imbalances keep the slope at -1 only when lam << S
    t_imb = skills.emergence_time(p, 2.0, 1e-3, lam=0.5)
    assert np.all(t_imb < t)


def test_predictor_matches_population_gd_and_sgd(tol):
    S, lr = 2.0, 2e-3
    a0 = b0 = np.full(5, 0.05)
    steps = 25000
    sim = skills.simulate(a0, b0, P5, S, lr=lr, steps=steps, record_steps=500)
    pred = skills.predictor(a0, b0, P5, S)(sim.t)
    err = pred.max_error(sim, keys=["R", "loss"], relative=True)
    assert max(err.values()) < tol["gd_per_lr"] * lr * P5.max() * S
    np.testing.assert_allclose(pred["R"], skills.skill_strength(sim.step, P5, S, 0.05**2, lr), rtol=1e-12)
    # SGD with batches of 4000 samples (the published setup): the same curves up to sampling noise
    sgd = skills.simulate(a0, b0, P5, S, lr=lr, steps=steps, record_steps=500, batch_size=4000, rng=0)
    assert np.abs(sgd["R"] - pred["R"]).max() / S < 0.05


def test_vectorised_step_equals_loop(tol):
    step = np.array([300, 0, 50, 7000])
    vec = skills.skill_strength(step, P5, 5.0, 1e-3, 0.02, lam=0.1)
    loop = np.stack([skills.skill_strength(s, P5, 5.0, 1e-3, 0.02, lam=0.1) for s in step])
    np.testing.assert_allclose(vec, loop, rtol=tol["batch_vs_loop"])


def test_data_variant_expectation_and_draws():
    D = np.array([0, 10, 100, 1000])
    exp = skills.data_strength(D, P5)
    np.testing.assert_allclose(exp, 1 - (1 - P5) ** D[:, None])
    assert np.all(exp[0] == 0)
    draws = np.mean([skills.data_strength(10, P5, rng=s) for s in range(2000)], axis=0)
    np.testing.assert_allclose(draws, exp[1], atol=0.03)
    np.testing.assert_allclose(skills.loss_data(D, P5, 5.0, 0.0), 0.5 * 25 * np.sum(P5 * (1 - exp), axis=1), atol=1e-15)
    cal = skills.data_strength_calibrated(np.array([0.0, 800.0, 2000.0, 1e6]), P5)  # D_c = 800
    np.testing.assert_allclose(cal[1], 1 - np.sqrt(1 - P5), rtol=1e-14)
    assert np.all(cal[0] == 0) and cal[2, 0] == 1.0 > cal[2, 1] and np.all(cal[3] == 1.0)


def test_parameter_variant():
    np.testing.assert_array_equal(skills.parameter_strength(2, 5), [1, 1, 0, 0, 0])
    np.testing.assert_allclose(skills.parameter_strength_calibrated(6.0, 5), [1.0, 0.5, 0, 0, 0])
    np.testing.assert_allclose(skills.loss_params(np.array([0, 2, 5]), P5, 2.0), [2.0, 2 * P5[2:].sum(), 0.0])


# alpha = 0.9: the rare-skill tail cut at n_s = 1e5 then changes these sums by < 0.5 % (at alpha = 0.6 by ~5 %)
ALPHA, S_, R0_ = 0.9, 1.0, 1e-3
P_INF = skills.skill_frequencies(100_000, ALPHA)


SCALING = {  # name: (resource grid, exact finite-n_s loss, asymptotic law of docs/theory.md 4.6)
    "time": (
        np.logspace(2, 3.5, 6),
        lambda x: skills.loss_time(x, P_INF, S_, R0_),
        lambda x: skills.loss_time_asymptotic(x, ALPHA, S_, R0_),
    ),
    "data": (
        np.logspace(3, 4.5, 6),
        lambda x: skills.loss_data(x, P_INF, S_, R0_),
        lambda x: skills.loss_data_asymptotic(x, ALPHA, S_, R0_),
    ),
    "params": (
        np.logspace(1.5, 2.5, 6),
        lambda x: skills.loss_params(x, P_INF, S_),
        lambda x: skills.loss_params_asymptotic(x, ALPHA, S_),
    ),
}


@pytest.mark.parametrize("name", SCALING)
def test_scaling_laws_match_the_exact_sums(name, tol):
    x, exact, law = SCALING[name]
    ex = exact(x)
    slope = np.polyfit(np.log(x), np.log(ex), 1)[0]
    assert slope == pytest.approx(skills.scaling_exponents(ALPHA)[name], rel=tol["rate"])
    np.testing.assert_allclose(ex / law(x), 1.0, atol=tol["asymptotic"])  # the prefactor, not only the exponent


def test_compute_optimal_exponents(tol):
    ns = 2000
    p = skills.skill_frequencies(ns, ALPHA)
    k = np.arange(1, ns + 1)
    widths = np.unique(np.logspace(0, np.log10(ns), 150).astype(int))
    budgets = np.logspace(4, 6, 5)
    best_n, best_l = [], []
    for c in budgets:  # a width-N model learns the N most frequent skills for T = C / N
        r = diagonal.solution((c / widths)[:, None], S_, R0_, 0.0, p)
        loss = 0.5 * np.sum(np.where(k <= widths[:, None], p * (S_ - r) ** 2, p * S_**2), axis=1)
        best_n.append(widths[np.argmin(loss)])
        best_l.append(loss.min())
    opt = skills.compute_optimal(budgets, ALPHA, S_, R0_)
    assert np.polyfit(np.log(budgets), np.log(best_n), 1)[0] == pytest.approx(1 / (ALPHA + 2), rel=tol["rate"])
    np.testing.assert_allclose(opt["N"], best_n, rtol=0.1)  # N_opt is set up to an O(1) factor in T ~ t_N
    # the loss exponent converges slowly (log corrections from ln c): 2 % here, 10 % at alpha = 0.6
    loss_slope = np.polyfit(np.log(budgets), np.log(best_l), 1)[0]
    assert loss_slope == pytest.approx(skills.scaling_exponents(ALPHA)["compute"], rel=0.05)
