"""Shared tolerances for the linear_models tests: the one table every test reads (via the ``tol`` fixture)."""

import pytest

TOL = {
    # closed form vs scipy solve_ivp at rtol 1e-10..1e-12 (absolute, in units of the target)
    "closed_vs_ode": 1e-8,
    # an event time or inverse map vs its closed form (relative); docs/theory.md 3.1 reports 6 digits
    "time": 1e-6,
    # a batched or vectorised evaluation vs a loop over the same inputs (absolute)
    "batch_vs_loop": 1e-12,
    # discrete GD at lr vs gradient flow: max |sim - pred| / (scale of the quantity) <= gd_per_lr * lr * kappa, where
    # kappa is the problem's fastest rate (e.g. max v S, or the top singular value); the error is first order in lr
    "gd_per_lr": 1.0,
    # halving lr must shrink the GD-vs-flow error by a factor within this range (first-order method)
    "first_order": (1.8, 2.2),
    # a negative control must miss by at least this relative error
    "control_miss": 0.1,
    # a limit reached after a long simulation (relative)
    "limit": 1e-6,
    # a fitted rate or slope vs theory (relative)
    "rate": 0.02,
    # an asymptotic law (sums replaced by integrals) vs the exact finite sum it approximates (relative)
    "asymptotic": 0.01,
}


@pytest.fixture
def tol() -> dict:
    """The tolerance table."""
    return TOL
