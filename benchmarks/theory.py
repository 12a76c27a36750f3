"""Cost of the theory predictors against float64 gradient descent on the same horizon.

Run: ``OMP_NUM_THREADS=1 python -m benchmarks.theory [--repeats 7]``. Each case is timed after one warm-up call,
``repeats`` times; the table gives the median and the min-max in milliseconds, and the speed-up simulate / predictor.

Cases (same horizon for both sides):
- diagonal: 16 modes, lr 0.01, 4000 steps (t = 40), 401 recorded times; closed form (docs/theory.md 3.1) vs GD.
  Both costs grow with what they produce: the closed form with the recorded times (401 x 16 values, ~40 numpy
  passes), GD with the steps, so the speed-up is ~ steps / recorded times and no rewrite of the formula moves it.
- diagonal_emergence: the same 16 modes, the step at which each mode reaches half its target: eq. (3.1.3) in closed
  form (one evaluation per mode) vs GD recorded at every step and searched for the crossing (what the emergence
  comparison asks of the theory).
- fig6a_kd: the paper's Fig. 6a grid (40 x 40 lambda-balanced 2-2-2 nets, N = 10 whitened samples, lr 0.01, 4000
  steps): KD(K_0, K_t) at t = 40 from the Riccati closed form vs batched GD plus the Gram-based KD (docs/theory.md 3.3).
- fig6a_kd_ode: the same grid with the scipy ODE predictor (the route for inits that are not lambda-balanced).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

from linear_models import diagonal, two_layer
from linear_models.deep_linear import whiten


def _time(fn: Callable[[], object], repeats: int) -> np.ndarray:
    fn()  # warm-up: imports, caches, first-call allocation
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return 1e3 * np.array(out)


def _diagonal_case() -> tuple[Callable[[], object], Callable[[], object], str]:
    rng = np.random.default_rng(0)
    n, lr, steps = 16, 0.01, 4000
    a0, b0 = 0.1 * rng.random(n) + 1e-3, 0.1 * rng.random(n) + 1e-3
    target, v = rng.uniform(0.5, 2.0, n), rng.uniform(0.2, 1.0, n)
    rec = np.arange(0, steps + 1, 10)

    def sim() -> object:
        return diagonal.simulate(a0, b0, target, v, lr=lr, steps=steps, record_steps=rec)

    pred = diagonal.predictor(a0, b0, target, v)
    t = lr * rec

    def theory() -> object:
        return pred(t)

    sim_tr, pred_tr = sim(), theory()
    err = pred_tr.max_error(sim_tr, keys=["s"], relative=True)["s"]
    return sim, theory, f"max rel |s_sim - s_pred| = {err:.1e} (first order in lr)"


def _emergence_case() -> tuple[Callable[[], object], Callable[[], object], str]:
    rng = np.random.default_rng(0)
    n, lr, steps = 16, 0.01, 4000
    a0 = b0 = 0.01 * rng.random(n) + 1e-3  # small balanced init: each mode emerges after a delay
    target, v = rng.uniform(0.5, 2.0, n), rng.uniform(0.2, 1.0, n)

    def sim() -> np.ndarray:
        s = diagonal.simulate(a0, b0, target, v, lr=lr, steps=steps)["s"]  # (steps + 1, n)
        reached = s >= 0.5 * target
        return np.where(reached.any(0), reached.argmax(0), -1)

    def theory() -> np.ndarray:
        return diagonal.time_to_reach(0.5 * target, target, a0 * b0, a0 * a0 - b0 * b0, v) / lr

    step_sim, step_pred = sim(), theory()
    assert (step_sim >= 0).all(), "every mode must emerge within the horizon"
    gap = np.abs(step_sim - step_pred).max()
    return sim, theory, f"max |step_GD - step_theory| = {gap:.1f} steps (latest emergence step {step_sim.max()})"


def _fig6a_case(method: str) -> tuple[Callable[[], object], Callable[[], object], str]:
    rng = np.random.default_rng(0)
    x, y = whiten(rng.standard_normal((10, 2))), rng.standard_normal((10, 2))
    lam = np.linspace(-9, 9, 40)[:, None]  # suite sign; the grid is symmetric
    scale = np.linspace(1, 20, 40)[None, :]
    w1, w2 = two_layer.lambda_balanced_init(lam, scale, 2, 2, 2, rng)
    targets = np.broadcast_to(y / scale[..., None, None], (40, 40, 10, 2))  # Y / scale per cell
    lr, steps = 0.01, 4000

    def sim() -> np.ndarray:
        tr = two_layer.simulate_two_layer(w1, w2, x, targets, lr=lr, steps=steps, record_steps=[0, steps])
        m, g = two_layer.ntk_grams(tr["W1"], tr["W2"])
        return two_layer.ntk_distance(m[0], g[0], m[-1], g[-1])

    def theory() -> np.ndarray:
        return two_layer.predict_kd(w1, w2, x, targets, np.array([lr * steps]), method=method)[0]

    kd_sim, kd_pred = sim(), theory()
    floor = 1e-6  # the figure's colour floor, log10(KD + 1e-6)
    gap = np.abs(np.log10(kd_sim + floor) - np.log10(kd_pred + floor)).max()
    return sim, theory, f"max |log10(KD+1e-6)| gap GD vs theory = {gap:.1e} decades"


def main() -> None:
    """Time every case and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("note: set OMP_NUM_THREADS=1 for comparable numbers")
    cases = {
        "diagonal (16 modes, 4000 steps)": _diagonal_case,
        "diagonal_emergence (16 modes, 4000 steps)": _emergence_case,
        "fig6a_kd (1600 nets, 4000 steps, riccati)": lambda: _fig6a_case("riccati"),
        "fig6a_kd (1600 nets, 4000 steps, ode)": lambda: _fig6a_case("ode"),
    }
    print(f"{'case':45s} {'simulate ms (min-max)':>26s} {'predictor ms (min-max)':>26s} {'speed-up':>9s}")
    for name, build in cases.items():
        sim, theory, note = build()
        ts, tp = _time(sim, args.repeats), _time(theory, args.repeats)
        s_txt = f"{np.median(ts):8.2f} ({ts.min():.2f}-{ts.max():.2f})"
        p_txt = f"{np.median(tp):8.2f} ({tp.min():.2f}-{tp.max():.2f})"
        print(f"{name:45s} {s_txt:>26s} {p_txt:>26s} {np.median(ts) / np.median(tp):8.0f}x")
        print(f"{'':45s} {note}")
    threads = os.environ.get("OMP_NUM_THREADS")
    print(f"repeats={args.repeats} after one warm-up; numpy {np.__version__}, OMP_NUM_THREADS={threads}")


if __name__ == "__main__":
    main()
