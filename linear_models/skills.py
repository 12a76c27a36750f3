"""Multilinear skill model of multitask sparse parity: emergence, data/parameter variants, scaling laws.

Nam, Fonseca, Lee, Mingard & Louis 2024 (arXiv:2404.17563); docs/theory.md 4. Skill k has frequency p_k and basis
function e_k with E[e_k e_k'] = p_k delta_kk'; f = sum_k a_k b_k e_k, target y = S sum_k e_k, loss
L = 1/2 E[(f - y)^2] = 1/2 sum_k p_k (a_k b_k - S)^2: the diagonal net of docs/theory.md 3.1 with v_k = p_k, S_k = S.
The skill strength is R_k = a_k b_k. Time is t = lr * step (for torch's mean MSE with one output, t = 2 lr step,
docs/theory.md 2.2). Skills are indexed k = 1..n_s in order of decreasing frequency.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.integrate import quad
from scipy.special import expit, zeta
from scipy.special import gamma as gamma_fn

from linear_models import diagonal
from linear_models._types import Predictor, Trajectory, as_f64, record_steps_array

__all__ = [
    "skill_frequencies",
    "skill_strength",
    "emergence_time",
    "simulate",
    "predictor",
    "data_strength",
    "data_strength_calibrated",
    "parameter_strength",
    "parameter_strength_calibrated",
    "loss_time",
    "loss_data",
    "loss_params",
    "scaling_exponents",
    "loss_time_asymptotic",
    "loss_data_asymptotic",
    "loss_params_asymptotic",
    "compute_optimal",
]


def skill_frequencies(n_skills: int, alpha: float) -> np.ndarray:
    """p_k = k^{-(alpha+1)} / sum_j j^{-(alpha+1)}, k = 1..n_s (docs/theory.md 4.1; code-alpha = alpha + 1).

    Example:
        >>> np.round(skill_frequencies(5, 0.6), 4).tolist()
        [0.5927, 0.1955, 0.1022, 0.0645, 0.0451]
    """
    w = np.arange(1, n_skills + 1, dtype=np.float64) ** (-(alpha + 1.0))
    return w / w.sum()


def skill_strength(step: Any, p: Any, S: float, R0: Any, lr: float, lam: Any = 0.0) -> np.ndarray:
    """Skill strengths R_k after ``step`` SGD steps of size lr, in the continuous-time limit (docs/theory.md eq. 4.3.1).

    R_k(t) = S / (1 + (S/R_k(0) - 1) exp(-2 p_k S t)), t = lr * step, for balanced skills (a_k = b_k); an imbalance
    lambda_k = a_k^2 - b_k^2 uses the closed form of :func:`linear_models.diagonal.solution` with v = p_k. Divide by S
    for the plotted R_k/S.

    Args:
        step: SGD steps, scalar or (T,).
        p: Skill frequencies, (n_s,).
        S: Target scale (the code's y_scale), > 0.
        R0: Initial strengths a_k(0) b_k(0), > 0 at lambda = 0; scalar or (n_s,).
        lr: Learning rate.
        lam: Imbalances, scalar or (n_s,).

    Returns:
        R, shape (n_s,) for a scalar step, (T, n_s) otherwise, float64.
    """
    step, p = as_f64(step), as_f64(p)
    t = lr * step[..., None]
    return diagonal.solution(t, S, R0, lam, p)


def emergence_time(p: Any, S: float, R0: Any, frac: float = 0.5, lam: Any = 0.0) -> np.ndarray:
    """Continuous time t_k at which R_k reaches frac * S (docs/theory.md 4.4); divide by lr for steps.

    Balanced: t_k = ln((S/R0 - 1) frac/(1 - frac)) / (2 p_k S); for frac = 1/2, log t_k = -log p_k + const, the
    slope -1 law. Imbalanced skills use eq. (3.1.3) (:func:`linear_models.diagonal.time_to_reach`).

    Args:
        p: Frequencies (n_s,).
        S: Target scale.
        R0: Initial strengths.
        frac: Level in (R0/S, 1).
        lam: Imbalances.

    Returns:
        t_k, shape (n_s,), float64.
    """
    return diagonal.time_to_reach(frac * S, S, R0, lam, as_f64(p))


def simulate(
    a0: Any,
    b0: Any,
    p: Any,
    S: float,
    *,
    lr: float,
    steps: int,
    record_steps: Any = None,
    batch_size: int | None = None,
    rng: np.random.Generator | int | None = None,
) -> Trajectory:
    """SGD on the multilinear model, in float64.

    For a sample of task i, e_k(i, x)^2 = 1[i = k] and y e_k = S 1[i = k], so a minibatch gradient only needs the
    count m_k of each task in the batch: a_k <- a_k - lr (m_k/B) b_k (a_k b_k - S) (the parity bits cancel). With
    batch_size None the population gradient (m_k/B = p_k) is used, i.e. :func:`linear_models.diagonal.simulate`.

    Args:
        a0: Initial first-layer weights (n_s,).
        b0: Initial second-layer weights (n_s,).
        p: Frequencies (n_s,).
        S: Target scale.
        lr: Learning rate.
        steps: SGD steps.
        record_steps: Steps to record: a list, an interval, or None.
        batch_size: Samples per step, or None for full population gradient.
        rng: Generator or seed for the task counts (used when batch_size is set).

    Returns:
        Trajectory with ``R`` (R, n_s) and ``loss`` (R,) = 1/2 sum_k p_k (R_k - S)^2 (population loss).
    """
    p = as_f64(p)
    if batch_size is None:
        tr = diagonal.simulate(a0, b0, S, p, lr=lr, steps=steps, record_steps=record_steps)
        return Trajectory(tr.t, {"R": tr["s"], "loss": tr["loss"]}, step=tr.step)
    rng = np.random.default_rng(rng)
    a, b = (np.array(np.broadcast_to(as_f64(x), p.shape), dtype=np.float64) for x in (a0, b0))
    rec = record_steps_array(record_steps, steps)
    out = []
    j = 0
    for step in range(steps + 1):
        if step == rec[j]:
            out.append(a * b)
            j += 1
            if j == rec.size:
                break
        v = rng.multinomial(batch_size, p) / batch_size
        r = v * (a * b - S)
        a, b = a - lr * r * b, b - lr * r * a
    rk = np.stack(out)
    return Trajectory(lr * rec.astype(np.float64), {"R": rk, "loss": 0.5 * np.sum(p * (rk - S) ** 2, axis=1)}, step=rec)


def predictor(a0: Any, b0: Any, p: Any, S: float) -> Predictor:
    """Gradient-flow prediction of :func:`simulate`: ``R`` (T, n_s) and ``loss`` (T,) at continuous times t.

    The closed form of :func:`linear_models.diagonal.predictor` with v = p, any imbalance.
    """
    inner = diagonal.predictor(a0, b0, S, as_f64(p))

    def predict(t: Any) -> Trajectory:
        tr = inner(t)
        return Trajectory(tr.t, {"R": tr["s"], "loss": tr["loss"]})

    return predict


def data_strength(D: Any, p: Any, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Final R_k/S with D training samples (docs/theory.md 4.5, data variant) [D].

    A skill is learned iff it has at least one sample: expected value 1 - (1 - p_k)^D, or with rng one draw of
    d ~ Multinomial(D, p) giving 1[d_k >= 1].

    Args:
        D: Sample counts, scalar or (M,) ints.
        p: Frequencies (n_s,).
        rng: None for the expectation, else a Generator or seed.

    Returns:
        R_inf/S, shape (n_s,) or (M, n_s), float64.
    """
    d, p = as_f64(D), as_f64(p)
    if rng is None:
        return 1.0 - (1.0 - p) ** d[..., None]
    rng = np.random.default_rng(rng)
    counts = np.array([rng.multinomial(int(x), p) for x in np.atleast_1d(d)])
    out = (counts >= 1).astype(np.float64)
    return out[0] if np.ndim(d) == 0 else out


def data_strength_calibrated(D: Any, p: Any, D_c: float = 800.0) -> np.ndarray:
    """The authors' calibrated MLP curve R_k/S = 1 - sqrt(max(0, 1 - D p_k / D_c)), D_c = 800 fitted [C, ?].

    docs/theory.md 4.5; its derivation was not seen (open point 8.3.3). Shapes as :func:`data_strength`.
    """
    d, p = as_f64(D), as_f64(p)
    return 1.0 - np.sqrt(np.maximum(0.0, 1.0 - d[..., None] * p / D_c))


def parameter_strength(N: Any, n_skills: int) -> np.ndarray:
    """Final R_k/S with capacity for N skills: the N most frequent are learned, 1[k <= N] (docs/theory.md 4.5) [D].

    Args:
        N: Capacity, scalar or (M,).
        n_skills: Number of skills n_s.

    Returns:
        (n_s,) or (M, n_s), float64.
    """
    n = as_f64(N)
    k = np.arange(1, n_skills + 1, dtype=np.float64)
    return (k <= n[..., None]).astype(np.float64)


def parameter_strength_calibrated(N: Any, n_skills: int, N_c: float = 4.0) -> np.ndarray:
    """The authors' calibrated MLP curve R_k/S = clip(N/N_c - (k - 1), 0, 1), N neurons, N_c = 4 fitted [C]."""
    n = as_f64(N)
    k = np.arange(1, n_skills + 1, dtype=np.float64)
    return np.clip(n[..., None] / N_c - (k - 1.0), 0.0, 1.0)


def loss_time(T: Any, p: Any, S: float, R0: Any) -> np.ndarray:
    """Exact loss of the balanced model at continuous time T: 1/2 sum_k p_k (S - R_k(T))^2 (docs/theory.md 4.6).

    Args:
        T: Continuous times, scalar or (M,).
        p: Frequencies (n_s,).
        S: Target scale.
        R0: Initial strengths.

    Returns:
        L, shape of T, float64.
    """
    t, p = as_f64(T), as_f64(p)
    r = diagonal.solution(t[..., None], S, R0, 0.0, p)
    return 0.5 * np.sum(p * (S - r) ** 2, axis=-1)


def loss_data(D: Any, p: Any, S: float, R0: float) -> np.ndarray:
    """Expected final loss with D samples: 1/2 sum_k p_k (S - R0)^2 (1 - p_k)^D (docs/theory.md 4.5)."""
    d, p = as_f64(D), as_f64(p)
    return 0.5 * (S - R0) ** 2 * np.sum(p * (1.0 - p) ** d[..., None], axis=-1)


def loss_params(N: Any, p: Any, S: float) -> np.ndarray:
    """Final loss with capacity N: 1/2 S^2 sum_{k > N} p_k (docs/theory.md 4.5)."""
    n, p = as_f64(N), as_f64(p)
    k = np.arange(1, p.size + 1, dtype=np.float64)
    return 0.5 * S * S * np.sum(np.where(k > n[..., None], p, 0.0), axis=-1)


def scaling_exponents(alpha: float) -> dict[str, float]:
    """Power-law exponents of docs/theory.md 4.6: L ~ T^a_time, D^a_data, N^a_params, C_opt^a_compute.

    Returns:
        {"time": -alpha/(alpha+1), "data": -alpha/(alpha+1), "params": -alpha, "compute": -alpha/(alpha+2)}.
    """
    return {
        "time": -alpha / (alpha + 1.0),
        "data": -alpha / (alpha + 1.0),
        "params": -alpha,
        "compute": -alpha / (alpha + 2.0),
    }


def loss_time_asymptotic(T: Any, alpha: float, S: float, R0: float) -> np.ndarray:
    """L(T) ~ (S^2/2) zeta^{-1/(alpha+1)}/(alpha+1) (2 S T)^{-alpha/(alpha+1)} I(alpha, c) (docs/theory.md 4.6) [D].

    zeta = zeta(alpha + 1) (n_s = infinity), c = S/R0 - 1, I = int_0^inf x^{-1/(alpha+1)} (1 + e^x/c)^{-2} dx
    (scipy quad with the algebraic weight). Valid for T well past the first skill and before the last.

    Args:
        T: Continuous times.
        alpha: Exponent, > 0.
        S: Target scale.
        R0: Initial strength, 0 < R0 < S.

    Returns:
        L, shape of T, float64.
    """
    beta = 1.0 / (alpha + 1.0)
    c = S / R0 - 1.0
    split = max(np.log(c), 1.0)
    # (1 + e^x / c)^-1 = expit(ln c - x), without overflow for large x
    head = quad(lambda x: expit(np.log(c) - x) ** 2, 0.0, split, weight="alg", wvar=(-beta, 0.0))[0]
    tail = quad(lambda x: x**-beta * expit(np.log(c) - x) ** 2, split, np.inf)[0]
    z = zeta(alpha + 1.0)
    t = as_f64(T)
    return 0.5 * S * S * z**-beta / (alpha + 1.0) * (2.0 * S * t) ** (-alpha * beta) * (head + tail)


def loss_data_asymptotic(D: Any, alpha: float, S: float, R0: float) -> np.ndarray:
    """L(D) ~ (S - R0)^2/2 Gamma(alpha/(alpha+1)) / ((alpha+1) zeta^{1/(alpha+1)}) D^{-alpha/(alpha+1)} (4.6)."""
    beta = 1.0 / (alpha + 1.0)
    d = as_f64(D)
    return 0.5 * (S - R0) ** 2 * gamma_fn(alpha * beta) * beta * zeta(alpha + 1.0) ** -beta * d ** (-alpha * beta)


def loss_params_asymptotic(N: Any, alpha: float, S: float) -> np.ndarray:
    """L(N) ~ S^2 / (2 alpha zeta) N^{-alpha} (docs/theory.md 4.6)."""
    return S * S / (2.0 * alpha * zeta(alpha + 1.0)) * as_f64(N) ** -alpha


def compute_optimal(C: Any, alpha: float, S: float, R0: float) -> dict[str, np.ndarray]:
    """Compute-optimal split of C = N T (docs/theory.md 4.6): train N skills for T = t_N = zeta ln(c) N^{alpha+1}/(2S).

    Then N_opt = (2 S C / (zeta ln c))^{1/(alpha+2)} and L(C_opt) ~ L(N_opt) ~ C^{-alpha/(alpha+2)}.

    Args:
        C: Compute budgets (units of N * t).
        alpha: Exponent, > 0.
        S: Target scale.
        R0: Initial strength, 0 < R0 < S.

    Returns:
        {"N": N_opt, "T": T_opt, "loss": L(N_opt)}, each of the shape of C.
    """
    z, lnc = zeta(alpha + 1.0), np.log(S / R0 - 1.0)
    n_opt = (2.0 * S * as_f64(C) / (z * lnc)) ** (1.0 / (alpha + 2.0))
    return {
        "N": n_opt,
        "T": z * lnc * n_opt ** (alpha + 1.0) / (2.0 * S),
        "loss": loss_params_asymptotic(n_opt, alpha, S),
    }
