import numpy as np
import pytest
from scipy.integrate import solve_ivp

from linear_models import diagonal as dg

LAMS = [0.0, 0.3, -2.0, 5.0]


def _ab_flow(t, a0, b0, S, v=1.0, wd=0.0):
    """Independent reference: integrate the layer flow da/dt, db/dt of docs/theory.md 1.2 for one mode."""

    def rhs(_, y):
        a, b = y
        r = v * (a * b - S)
        return [-r * b - wd * a, -r * a - wd * b]

    sol = solve_ivp(rhs, (0, t.max()), [a0, b0], t_eval=t, method="DOP853", rtol=1e-12, atol=1e-14)
    return sol.y[0], sol.y[1]


def _half_time(traj, key, level):
    """First time a recorded curve crosses ``level`` (linear interpolation between records)."""
    y = traj[key]
    i = int(np.argmax(y >= level))
    assert y[i] >= level > y[i - 1]
    return traj.t[i - 1] + (level - y[i - 1]) / (y[i] - y[i - 1]) * (traj.t[i] - traj.t[i - 1])


def test_balanced_solution_matches_ode_solver(tol):
    t = np.linspace(0.0, 6.0, 61)
    for S, s0, v in [(3.0, 1e-3, 1.0), (0.5, 0.1, 2.0), (1.0, 2.0, 0.7)]:
        ode = solve_ivp(lambda _, s, v=v, S=S: 2 * v * s * (S - s), (0, 6), [s0], t_eval=t, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dg.balanced_solution(t, S, s0, v), ode.y[0], atol=tol["closed_vs_ode"] * S)


def test_balanced_solution_initial_value_and_limit():
    S, s0 = np.array([1.0, 2.0, 0.5]), np.array([1e-3, 0.5, 0.9])
    np.testing.assert_array_equal(dg.balanced_solution(0.0, S, s0), s0)
    np.testing.assert_allclose(dg.balanced_solution(np.inf, S, s0), S, rtol=0)
    np.testing.assert_allclose(dg.balanced_solution(1e4, S, s0), S, rtol=1e-14)


def test_balanced_solution_rejects_other_signs():
    with pytest.raises(ValueError, match="s0 > 0"):
        dg.balanced_solution(1.0, S=1.0, s0=-0.1)


# (lambda, S, s0); lambda = 0 with s0 < 0 < S only approaches the saddle and has its own test below
FLOW_CASES = [
    (lam, S, s0)
    for lam in LAMS
    for S, s0 in [(2.0, 0.01), (2.0, -0.5), (-1.0, 0.3), (1.0, 1.8)]
    if not (lam == 0 and s0 < 0 < S)
]


@pytest.mark.parametrize(("lam", "S", "s0"), FLOW_CASES)
def test_solution_matches_layer_flow(lam, S, s0, tol):
    # build (a0, b0) with a0 b0 = s0 and a0^2 - b0^2 = lam
    k = np.sqrt(lam**2 + 4 * s0**2)
    a0 = np.sqrt((k + lam) / 2)
    b0 = np.sign(s0) * np.sqrt((k - lam) / 2)
    t = np.linspace(0, 5, 51)
    a, b = _ab_flow(t, a0, b0, S)
    np.testing.assert_allclose(dg.solution(t, S, s0, lam), a * b, atol=tol["closed_vs_ode"] * max(abs(S), abs(s0)))
    np.testing.assert_allclose(dg.ode_solution(t, S, s0, lam), a * b, atol=tol["closed_vs_ode"] * max(abs(S), abs(s0)))


def test_solution_balanced_negative_mode_decays_to_saddle(tol):
    t = np.linspace(0, 5, 51)
    a, b = _ab_flow(t, 0.5, -0.5, 2.0)  # lambda = 0, s0 = -0.25
    s = dg.solution(t, 2.0, -0.25, 0.0)
    np.testing.assert_allclose(s, a * b, atol=tol["closed_vs_ode"])
    assert np.all(s < 0) and abs(s[-1]) < 1e-8


def test_solution_reduces_to_balanced_and_is_continuous_in_lambda():
    t = np.linspace(0, 8, 33)
    ref = dg.balanced_solution(t, 1.5, 1e-3)
    np.testing.assert_allclose(dg.solution(t, 1.5, 1e-3, 0.0), ref, rtol=1e-12)
    np.testing.assert_allclose(dg.solution(t, 1.5, 1e-3, 1e-9), ref, rtol=1e-6)


def test_solution_initial_value_and_limit():
    S, s0, lam = np.array([1.0, -2.0, 0.5]), np.array([0.1, 0.3, -1.0]), np.array([0.5, 3.0, 0.0])
    np.testing.assert_array_equal(dg.solution(0.0, S, s0, lam), s0)
    np.testing.assert_allclose(dg.solution(np.inf, S, s0, lam)[:2], S[:2], rtol=1e-14)
    assert dg.solution(np.inf, S, s0, lam)[2] == 0.0  # lambda = 0, s0 < 0 < S: the saddle


@pytest.mark.parametrize("lam", LAMS)
def test_time_to_reach_matches_ode_event(lam, tol):
    S, s0, v = 2.0, 0.01, 0.8
    k = np.sqrt(lam**2 + 4 * s0**2)
    a0, b0 = np.sqrt((k + lam) / 2), np.sqrt((k - lam) / 2)
    targets = [0.05, 0.5, 1.0, 1.9]
    for s in targets:

        def hit(_, y, s=s):
            return y[0] * y[1] - s

        hit.terminal = True
        sol = solve_ivp(
            lambda _, y: [-v * (y[0] * y[1] - S) * y[1], -v * (y[0] * y[1] - S) * y[0]],
            (0, 100),
            [a0, b0],
            events=hit,
            rtol=1e-12,
            atol=1e-14,
        )
        t_ode = sol.t_events[0][0]
        assert dg.time_to_reach(s, S, s0, lam, v) == pytest.approx(t_ode, rel=tol["time"])


def test_time_to_reach_inverts_solution(tol):
    t = np.linspace(0.1, 6, 30)
    for S, s0, lam in [(2.0, 0.01, 0.0), (2.0, -0.5, 0.3), (-1.0, 0.3, 2.0), (1.0, 1.8, 0.5)]:
        s = dg.solution(t, S, s0, lam)
        np.testing.assert_allclose(dg.time_to_reach(s, S, s0, lam), t, rtol=tol["time"])


def test_time_to_reach_edges():
    assert dg.time_to_reach(0.3, 1.0, 0.3, 2.0) == 0.0
    assert dg.time_to_reach(1.0, 1.0, 0.3, 2.0) == np.inf  # the target itself is never reached
    assert dg.time_to_reach(1.2, 1.0, 0.3, 2.0) == np.inf  # beyond the target
    assert dg.time_to_reach(0.2, 1.0, 0.3, 2.0) == np.inf  # behind the start
    assert dg.time_to_reach(0.5, 1.0, -0.3, 0.0) == np.inf  # lambda = 0 cannot cross the saddle
    assert np.isfinite(dg.time_to_reach(0.5, 1.0, -0.3, 0.1))  # any imbalance can


def test_time_to_reach_large_lambda_is_the_lazy_exponential():
    S, s0, s, v = 1.0, 0.0, 0.5, 1.0
    for lam in [50.0, 500.0]:
        lazy = np.log((S - s0) / (S - s)) / (v * lam)
        assert dg.time_to_reach(s, S, s0, lam, v) == pytest.approx(lazy, rel=2 * S / lam)


def test_time_to_reach_stable_for_small_lambda_and_negative_start(tol):
    # S s0 < 0 with q << |s0|: the direct numerator cancels; the stable form must match the ODE event time
    S, s0, lam = 1.0, -0.5, 1e-4
    # crossing s = 0 is the slow part (~ ln(1/lambda)); compare the time to reach 0.5 with an event solve
    ev = solve_ivp(
        lambda _, s: (S - s) * np.sqrt(lam**2 + 4 * s**2),
        (0, 60),
        [s0],
        events=lambda _, s: s[0] - 0.5,
        rtol=1e-12,
        atol=1e-16,
        method="DOP853",
    )
    assert dg.time_to_reach(0.5, S, s0, lam) == pytest.approx(ev.t_events[0][0], rel=tol["time"])


VECTORISED = {
    "balanced": (lambda t: dg.balanced_solution(t, 1.3, 0.01, 0.7), "batch_vs_loop"),
    "solution": (lambda t: dg.solution(t, 1.3, -0.2, 0.4, 0.7), "batch_vs_loop"),
    "time_to_reach": (lambda t: dg.time_to_reach(1.3 * t / 6.0, 1.3, 0.01, 0.4), "batch_vs_loop"),
    "linear": (lambda t: dg.linear_solution(t, 1.3, 0.2, 0.7), "batch_vs_loop"),
    "predictor": (lambda t: dg.predictor([0.1, 0.5], [0.1, -0.2], [1.0, 2.0])(t)["s"], "batch_vs_loop"),
    # an ODE solved on two different grids agrees to the solver's tolerance, not to rounding
    "predictor_wd": (lambda t: dg.predictor([0.1, 0.5], [0.1, -0.2], [1.0, 2.0], wd=0.05)(t)["s"], "closed_vs_ode"),
    "ode_solution": (lambda t: dg.ode_solution(t, 1.3, 0.01, 0.4), "closed_vs_ode"),
}


@pytest.mark.parametrize("name", VECTORISED)
def test_vectorised_time_equals_loop(name, tol):
    fn, key = VECTORISED[name]
    t = np.array([3.0, 0.0, 0.7, 5.5, 1.2, 0.7])  # unsorted, with a repeat
    vec = fn(t)
    loop = np.concatenate([fn(t[i : i + 1]) for i in range(t.size)])
    np.testing.assert_allclose(vec, loop, rtol=tol[key], atol=tol[key])


A0 = np.array([0.05, 0.3, 0.01, 1.0])
B0 = np.array([0.05, 0.01, 0.3, -0.2])
S_ = np.array([1.0, 2.0, 0.5, -1.0])
V_ = np.array([1.0, 0.5, 2.0, 1.5])


def _agreement(lr, horizon=10.0, wd=0.0, reverse=False):
    steps = int(round(horizon / lr))
    sim = dg.simulate(A0, B0, S_, V_, lr=lr, steps=steps, record_steps=steps // 50, wd=wd)
    pred = dg.predictor(A0, B0, S_, V_, wd=wd)(sim.t)
    if reverse:
        pred = type(pred)(pred.t, {k: v[::-1] for k, v in pred.values.items()})
    return pred.max_error(sim, keys=["s", "a", "b", "loss"], relative=True)


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_predictor_matches_simulate_at_small_lr(wd, tol):
    lr = 1e-3
    err = _agreement(lr, wd=wd)
    assert max(err.values()) < tol["gd_per_lr"] * lr * np.max(V_ * np.abs(S_)), err
    # first order in lr: halving lr halves the discrepancy (the prediction is the lr -> 0 limit)
    ratio = max(_agreement(2 * lr, wd=wd).values()) / max(err.values())
    assert tol["first_order"][0] < ratio < tol["first_order"][1]


def test_time_reversed_prediction_fails_agreement(tol):
    lr = 1e-3
    assert max(_agreement(lr, reverse=True).values()) > 100 * tol["gd_per_lr"] * lr


def test_wrong_lambda_gives_a_measurably_wrong_time(tol):
    S, v, lam, s0 = 1.0, 1.0, 1.0, 0.01
    k = np.sqrt(lam**2 + 4 * s0**2)
    a0, b0 = np.sqrt((k + lam) / 2), np.sqrt((k - lam) / 2)
    lr = 1e-3
    sim = dg.simulate(a0, b0, S, v, lr=lr, steps=6000)
    t_sim = _half_time(type(sim)(sim.t, {"s": sim["s"][:, 0]}), "s", S / 2)
    right = dg.time_to_reach(S / 2, S, s0, lam, v)
    assert right == pytest.approx(t_sim, rel=tol["gd_per_lr"] * lr * 10)
    for wrong in [0.0, 0.5, 2.0]:
        assert abs(dg.time_to_reach(S / 2, S, s0, wrong, v) - t_sim) / t_sim > tol["control_miss"]


def test_balanced_modes_are_learned_in_order_of_vS():
    S = np.array([0.5, 1.0, 2.0, 4.0])
    v = np.array([2.0, 1.5, 0.3, 0.2])  # v S = 1, 1.5, 0.6, 0.8
    t_half = dg.time_to_reach(S / 2, S, 1e-3, 0.0, v)
    assert np.array_equal(np.argsort(t_half), np.argsort(-v * S))


def test_linear_model_shows_no_target_dependent_order(tol):
    S = np.array([0.5, 1.0, 2.0, 4.0])
    lr = 1e-3
    sim = dg.simulate_linear(np.zeros(4), S, 1.0, lr=lr, steps=2000)
    t_half = np.array([_half_time(type(sim)(sim.t, {"s": sim["s"][:, i] / S[i]}), "s", 0.5) for i in range(4)])
    np.testing.assert_allclose(t_half, np.log(2), rtol=2 * lr)  # ln 2 / v for every target
    np.testing.assert_allclose(dg.linear_time_to_reach(S / 2, S, 0.0), np.log(2), rtol=1e-14)
    # the diagonal network, same targets: half-times spread by far more than the control's spread
    diag = dg.time_to_reach(S / 2, S, 1e-3, 0.0)
    assert np.ptp(diag) / diag.mean() > tol["control_miss"] > np.ptp(t_half) / t_half.mean()


def test_conserved_quantity_per_step(tol):
    lr = 1e-2
    sim = dg.simulate(A0, B0, S_, V_, lr=lr, steps=400)
    lam, s = sim["lam"], sim["s"]
    # exact discrete identity lambda_+ = lambda [(1 - lr wd)^2 - lr^2 r^2] (docs/theory.md 3.1)
    factor = dg.imbalance_step_factor(V_ * (s[:-1] - S_), lr)
    np.testing.assert_allclose(lam[1:], lam[:-1] * factor, rtol=1e-10, atol=1e-15)
    # so the change per step is O(lr^2), and the drift over a fixed time horizon is O(lr)
    drift = {}
    for eta in (lr, lr / 2):
        tr = dg.simulate(A0, B0, S_, V_, lr=eta, steps=int(round(4 / eta)))
        drift[eta] = np.abs(tr["lam"][-1] - tr["lam"][0]).max()
    assert tol["first_order"][0] < drift[lr] / drift[lr / 2] < tol["first_order"][1]


def test_weight_decay_shrinks_the_imbalance(tol):
    wd, lr = 0.2, 1e-3
    sim = dg.simulate(A0, B0, S_, V_, lr=lr, steps=3000, record_steps=100, wd=wd)
    pred = dg.predictor(A0, B0, S_, V_, wd=wd)(sim.t)
    expected = dg.imbalance_decay(sim.t[:, None], A0**2 - B0**2, wd)
    np.testing.assert_allclose(pred["lam"], expected, rtol=1e-8, atol=1e-12)  # exact under gradient flow
    np.testing.assert_allclose(sim["lam"], expected, atol=tol["gd_per_lr"] * lr)
