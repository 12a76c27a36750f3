"""Pure observables and scores of the grokking comparison (docs/theory.md 6): timing, weights, ratio, fits.

Everything here is a pure function of arrays or of a model's weights (no I/O, no state), so the phenomenon module
``comparisons/grokking.py`` stays a thin layer and the tests can check each number on constructed input.

- Timing: t_fit, t_gen and the delay from accuracy curves, with right-censoring (a run that never generalises
  within its budget has no t_gen and no delay, only a lower bound on the delay).
- Weights: the weight matrices of a net in forward order and their norms (the relative weight change and the
  effective rank are :mod:`comparisons.engine.metrics`'s).
- The weight-to-target ratio Sigma_0/S of a deep net (docs/theory.md 2.3, 6.2), see :func:`sigma_weights`.
- Scores: the confusion table of predicted vs observed "delayed generalisation", and a least-squares slope with
  group-wise intercepts (observed delay against 1/(lr wd) or ln(init scale), docs/theory.md 6.3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from comparisons.engine.metrics import first_crossing


@dataclass(frozen=True)
class Timing:
    """Generalisation timing of one run (steps are optimizer steps at eval points).

    Attributes:
        t_fit: First eval step with train accuracy >= the fit threshold; None if never.
        t_gen: First eval step with test accuracy >= the generalisation threshold; None if never (censored).
        budget: The last eval step (the run's training budget).
        censored: True when the run fits but never generalises within its budget, or never fits at all.
        delay: t_gen - t_fit (steps) when both exist, else None (never a number for a censored run).
        delay_lower_bound: budget - t_fit for a fitted run that never generalised (the delay exceeds it), else None.
    """

    t_fit: float | None
    t_gen: float | None
    budget: float
    censored: bool
    delay: float | None
    delay_lower_bound: float | None


def grok_timing(
    steps: np.ndarray, train_acc: np.ndarray, test_acc: np.ndarray, fit: float = 0.99, gen: float = 0.95
) -> Timing:
    """t_fit, t_gen and the delay t_gen - t_fit of one run, with censoring (docs/theory.md 6.2).

    Args:
        steps: Eval steps, shape (T,), increasing; the last one is the budget.
        train_acc: Train accuracy at those steps, shape (T,), in [0, 1].
        test_acc: Test accuracy at those steps, shape (T,).
        fit: Train-accuracy threshold of t_fit (0.99).
        gen: Test-accuracy threshold of t_gen (0.95 by default; lower for MNIST with 1000 samples).

    Returns:
        The :class:`Timing`. A run that generalises before it fits gets a negative delay (no delay at all).
    """
    steps = np.asarray(steps, dtype=np.float64)
    t_fit, t_gen = (_or_none(first_crossing(steps, acc, level)) for acc, level in ((train_acc, fit), (test_acc, gen)))
    budget = float(steps[-1]) if steps.size else 0.0
    if t_fit is None:
        return Timing(None, t_gen, budget, True, None, None)
    if t_gen is None:
        return Timing(t_fit, None, budget, True, None, budget - t_fit)
    return Timing(t_fit, t_gen, budget, False, t_gen - t_fit, None)


def observed_delayed(
    timing: Timing, threshold: float, measure: str = "log_ratio", rate: float | None = None
) -> bool | None:
    """Whether a run shows delayed generalisation; None when its censoring leaves that open.

    Measures of the gap between fitting and generalising:

    - ``log_ratio``: log10(t_gen / max(t_fit, 1)) in decades (scale-free: one threshold serves every lr * wd).
    - ``steps``: t_gen - t_fit.
    - ``efolds``: (t_gen - t_fit) * rate with rate = 2 lr wd, the e-folds by which decoupled weight decay alone
      shrinks Sigma over the delay (docs/theory.md 6.3): the law predicts ln(Sigma_0/(c S)) of them.

    A censored run that fitted counts as delayed when its gap at the budget already exceeds the threshold; a run
    that never fits is None, and so is ``efolds`` without a rate (no decoupled weight decay).

    Args:
        timing: The run's timing.
        threshold: Threshold of the measure (decades, steps or e-folds).
        measure: ``log_ratio``, ``steps`` or ``efolds``.
        rate: 2 lr_eff wd per step, for ``efolds``.

    Returns:
        True, False or None (not classifiable).
    """
    if timing.t_fit is None:
        return None
    end = timing.budget if timing.censored else timing.t_gen
    if measure == "log_ratio":
        value = math.log10(max(end, 1.0) / max(timing.t_fit, 1.0))
    elif measure == "steps":
        value = end - timing.t_fit
    elif measure == "efolds":
        if not rate:
            return None
        value = (end - timing.t_fit) * rate
    else:
        raise ValueError(f"delay measure {measure!r} is not log_ratio, steps or efolds")
    if timing.censored:
        return True if value > threshold else None
    return bool(value > threshold)


# ---------------------------------------------------------------------------------------------------- weights


def weight_layers(model: nn.Module) -> list[tuple[str, torch.Tensor, int]]:
    """The weight matrices of a net in forward (registration) order, with their per-mode normaliser m_l.

    Linear, Embedding and Conv layers count; biases, positional embeddings and norms do not. m_l is the layer's
    input size (fan-in; an Embedding's vocabulary) except for the classifier (``model.get_classifier()``, else the
    last Linear), whose m_L is its output size: the input-side and output-side mode strengths of docs/theory.md 3.3.

    Args:
        model: Any net (the real one or its twin: same modules, same names).

    Returns:
        [(module name, weight tensor, m_l)], at least one entry.

    Raises:
        ValueError: The model has no Linear/Embedding/Conv layer.
    """
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    out: list[tuple[str, torch.Tensor, int]] = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Embedding):
            out.append((name, mod.weight, int(mod.num_embeddings)))
        elif isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            out.append((name, mod.weight, int(mod.weight[0].numel())))
    if not out:
        raise ValueError(f"{type(model).__name__} has no Linear/Embedding/Conv layer to measure")
    heads = [i for i, (_, w, _) in enumerate(out) if head is not None and w is head.weight]
    last = heads[0] if heads else max(i for i, (n, w, _) in enumerate(out) if w.ndim == 2)
    name, w, _ = out[last]
    out[last] = (name, w, int(w.shape[0]))
    return out


@torch.no_grad()
def sigma_weights(model: nn.Module) -> float:
    """Sigma of a deep net read as a balanced two-layer block, per mode (the default ratio numerator).

        Sigma = output_scale * (1/L) * sum_l ||W_l||_F^2 / m_l

    over the L weight matrices of :func:`weight_layers`. For f = W2 W1 x with W1 (h x d), W2 (c x h) this is
    (||W1||^2/d + ||W2||^2/c)/2, the mean over random input/output directions of the mode's (a^2 + b^2)/2, and for
    d = c = 1 exactly Sigma = sum_i (a_i^2 + b_i^2)/2 of the toy (docs/theory.md 2.3, 6.2, Z = 1). It is quadratic in
    the weights (so it shrinks as exp(-2 lr wd step) under decoupled weight decay, docs/theory.md 6.3) and linear in
    the output scale (Z -> Z/alpha, docs/theory.md 6.2 "four knobs").

    Args:
        model: The net at the step of interest.

    Returns:
        Sigma >= 0, float64, in units of output per unit input.
    """
    layers = weight_layers(model)
    total = sum(float(w.detach().double().pow(2).sum()) / m for _, w, m in layers)
    return float(getattr(model, "output_scale", 1.0)) * total / len(layers)


def sigma_ntk(model: nn.Module, x: torch.Tensor) -> float:
    """Sigma read from the empirical NTK: half the mean diagonal of the (cN x cN) kernel per unit input power.

        Sigma = tr(K) / (2 N c m2),   tr(K) = sum_{n,i} ||d f_i(x_n) / d theta||^2,   m2 = mean_n ||x_n||^2

    For the toy K(x, x) = 2 Sigma x^2 (Z = 1); for a two-layer linear net on whitened inputs this equals
    :func:`sigma_weights` (docs/theory.md 3.3). It mixes the clock with the ratio (an output scale alpha enters as
    alpha^2), hence not the default. Token inputs count as one-hot vectors (m2 = T).

    Args:
        model: The net.
        x: Probe inputs, (N, *input_shape).

    Returns:
        Sigma >= 0, float64.
    """
    params = {k: v.detach() for k, v in model.named_parameters()}

    def f_one(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(model, p, (xi.unsqueeze(0),))[0]  # (c,)

    trace, c = 0.0, 1
    for xi in x:  # one sample at a time: a (c, P) Jacobian fits for every model of the suite
        jac = torch.func.jacrev(f_one)(params, xi)
        c = next(iter(jac.values())).shape[0]
        trace += sum(float(j.detach().double().pow(2).sum()) for j in jac.values())
    m2 = float(x.shape[1]) if not x.is_floating_point() else float(x.double().flatten(1).pow(2).sum(1).mean())
    return trace / (2.0 * len(x) * c * m2)


@torch.no_grad()
def target_strength(x: torch.Tensor, y: torch.Tensor, vocab: int | None = None) -> float:
    """The target strength S relative to the input: rms target per output over rms input per coordinate.

        S = sqrt(mean_n ||y_n||^2 / c) / sqrt(mean_n ||x_n||^2 / d)

    For y = S x on whitened scalar input this is S; scaling the input by c gives S/c, the "input knob" of
    docs/theory.md 6.2; scaling the one-hot targets by m gives m S. Token inputs (long (N, T)) count as T one-hot
    vectors over ``vocab``, so the rms per coordinate is 1/sqrt(vocab).

    Args:
        x: Inputs, float (N, *input_shape) or long tokens (N, T).
        y: Targets, (N, c).
        vocab: Vocabulary size, needed for token inputs.

    Returns:
        S > 0, float64.
    """
    y = y.double()
    rms_y = math.sqrt(float(y.pow(2).sum(1).mean()) / y.shape[1])
    if not x.is_floating_point():
        if not vocab:
            raise ValueError("target_strength needs vocab for token inputs")
        return rms_y * math.sqrt(vocab)
    x = x.double().flatten(1)
    rms_x = math.sqrt(float(x.pow(2).sum(1).mean()) / x.shape[1])
    return rms_y / rms_x


@torch.no_grad()
def initial_output(f0: torch.Tensor, y: torch.Tensor, strength: float) -> float:
    """S_0, the initial output coefficient along the target (docs/theory.md 6.2): S * <F0c, Yc>_F / ||Yc||_F^2.

    F0c and Yc are centred over samples (per output), so a constant output offset, which projects onto the mean
    1/c of one-hot targets (large in a deep linear twin whose biases pass through big weights), does not count as
    the target already being fitted; S_0 / S is the fraction of the target's sample-varying part present at init.

    Args:
        f0: Outputs at init, (N, c).
        y: Targets, (N, c).
        strength: S of :func:`target_strength`.

    Returns:
        S_0, float64 (about 0 at a random init); 0 when the targets do not vary.
    """
    f0, y = f0.double(), y.double()
    f0, y = f0 - f0.mean(0), y - y.mean(0)
    norm = float(y.pow(2).sum())
    return strength * float((f0 * y).sum()) / norm if norm > 0 else 0.0


@torch.no_grad()
def weight_norms(layers: Sequence[tuple[str, torch.Tensor, int]]) -> tuple[float, list[float]]:
    """Total and per-layer Frobenius norms of the weight matrices.

    Args:
        layers: :func:`weight_layers` output.

    Returns:
        (sqrt(sum_l ||W_l||^2), [||W_l||_F]).
    """
    per = [float(w.detach().double().norm()) for _, w, _ in layers]
    return math.sqrt(sum(v * v for v in per)), per


# ---------------------------------------------------------------------------------------------------- scores


def confusion(predicted: Sequence[bool], observed: Sequence[bool | None]) -> dict[str, float]:
    """Confusion table and accuracy of predicted vs observed "delayed generalisation" (score (a)).

    Args:
        predicted: Per run, the theory's call (ratio above threshold).
        observed: Per run, :func:`observed_delayed` (None = not classifiable, skipped).

    Returns:
        ``{"n", "tp", "fp", "fn", "tn", "accuracy"}``; accuracy is NaN when no run is classifiable.
    """
    pairs = [(bool(p), bool(o)) for p, o in zip(predicted, observed, strict=True) if o is not None]
    tp = sum(p and o for p, o in pairs)
    tn = sum(not p and not o for p, o in pairs)
    fp = sum(p and not o for p, o in pairs)
    fn = sum(not p and o for p, o in pairs)
    n = len(pairs)
    return {"n": n, "tp": tp, "fp": fp, "fn": fn, "tn": tn, "accuracy": (tp + tn) / n if n else float("nan")}


def grouped_fit(x: Sequence[float], y: Sequence[float], groups: Sequence[str]) -> dict[str, float]:
    """Least-squares slope of y on x with one intercept per group, and its within-group R^2 (score (b)).

    slope = sum (x - xbar_g)(y - ybar_g) / sum (x - xbar_g)^2,  R^2 = 1 - SS_res / sum (y - ybar_g)^2.
    With one group this is the ordinary regression; groups hold the other sweep coordinates fixed (e.g. the init
    scale when x = 1/(lr wd)), so seeds are replicates inside a group.

    Args:
        x: Regressor per run.
        y: Response per run (observed or predicted delay, steps).
        groups: Group key per run.

    Returns:
        ``{"n", "groups", "slope", "r2"}``; slope and r2 are NaN when x does not vary within any group
        (r2 is NaN too when y does not vary).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keys = np.asarray(list(groups), dtype=object)
    xc, yc = np.empty_like(x), np.empty_like(y)
    used = 0
    for g in dict.fromkeys(keys.tolist()):
        sel = keys == g
        xc[sel], yc[sel] = x[sel] - x[sel].mean(), y[sel] - y[sel].mean()
        used += int(sel.sum() > 1 and np.ptp(x[sel]) > 0)
    sxx, syy = float(xc @ xc), float(yc @ yc)
    if used == 0 or sxx == 0.0:
        return {"n": int(x.size), "groups": used, "slope": float("nan"), "r2": float("nan")}
    slope = float(xc @ yc) / sxx
    r2 = 1.0 - float(((yc - slope * xc) ** 2).sum()) / syy if syy > 0 else float("nan")
    return {"n": int(x.size), "groups": used, "slope": slope, "r2": r2}


def _or_none(v: float) -> float | None:
    """The crossing step, or None when the level was never reached (a censored time)."""
    return None if math.isnan(v) else v
