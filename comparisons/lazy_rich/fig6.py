"""The paper's Fig. 6 grids: KD maps of 2-layer linear nets over imbalance x weight-to-target ratio.

docs/theory.md 5.2 (Fig. 6a: lambda-balanced, in = hidden = out = 2, whitened X) and 5.3 (Fig. 6b: zero-output
unbalanced, in = hidden = 20, out = 2, raw Gaussian X with N = 10 < d). One draw of (X, Y) serves the whole grid,
each cell gets a fresh init and the target Y / scale. Two voices per cell:

- simulation ("twin:<cell>"): full-batch GD at ``optim.lr`` for ``train.steps`` steps, all cells at once as one
  batched torch model on the run's device (:func:`gd_two_layer`, the step of
  ``linear_models.two_layer.simulate_two_layer``), KD between the NTK at step 0 and the last step;
- theory ("theory:<cell>"): the gradient flow to t = lr * steps (``linear_models.two_layer.predictor``): the exact
  Riccati closed form for Fig. 6a, the ODE for Fig. 6b.

The simulated nets are layerwise linear networks trained for real, hence the member prefix "twin". For Fig. 6b the
theory integrates the flow in the span of the inputs (W1 V, X V with X = U S V^T thin): W1's component orthogonal
to the inputs never moves and never enters the NTK on X, so this is the same flow with half the state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from comparisons.engine.config import ConfigError
from comparisons.engine.phenomenon import Prediction
from comparisons.lazy_rich.grid import cell_label
from comparisons.lazy_rich.maps import log_kd
from linear_models import two_layer
from linear_models.deep_linear import whiten

log = logging.getLogger(__name__)

INITS = ("balanced", "zero_output")


@dataclass
class Fig6Grid:
    """One Fig. 6 grid at init.

    Attributes:
        lam: Imbalance axis (R,): suite-sign lambda (balanced) or the code's layer offset (zero_output).
        scale: Ratio axis (C,): the target is Y / scale.
        x: Inputs (N, d), rows are samples. y: Targets before scaling (N, c).
        w1: First layers (R, C, h, d). w2: Second layers (R, C, c, h).
    """

    lam: np.ndarray
    scale: np.ndarray
    x: np.ndarray
    y: np.ndarray
    w1: np.ndarray
    w2: np.ndarray

    @property
    def targets(self) -> np.ndarray:
        """Y / scale per cell, (R, C, N, c)."""
        return np.broadcast_to(self.y / self.scale[None, :, None, None], self.w1.shape[:2] + self.y.shape)

    def labels(self) -> list[str]:
        """Member suffixes, row-major over (lambda, scale)."""
        return [cell_label(a, b) for a in self.lam for b in self.scale]


def make_grid(spec: dict[str, Any], seed: int) -> Fig6Grid:
    """Draw the data and the per-cell inits of a Fig. 6 grid (docs/theory.md 5.2, 5.3).

    Args:
        spec: ``phenomenon.fig6``: ``init`` (balanced | zero_output), ``d``, ``h``, ``c``, ``n_samples``,
            ``whiten`` (bool), ``sigma`` (zero_output), ``lambda`` and ``scale`` as ``[start, stop, num]`` (linspace)
            or ``{values: [...]}``.
        seed: The run seed; data and inits come from one numpy stream spawned from it.

    Returns:
        The grid.
    """
    init = spec.get("init", "balanced")
    if init not in INITS:
        raise ConfigError(f"phenomenon.fig6.init={init!r}; choose one of {', '.join(INITS)}")
    try:
        d, h, c, n = (int(spec[k]) for k in ("d", "h", "c", "n_samples"))
    except KeyError as e:
        raise ConfigError(
            f"phenomenon.fig6.{e.args[0]} is missing (see conf/experiment/lazy_rich_fig6a.yaml)"
        ) from None
    lam, scale = _axis(spec, "lambda"), _axis(spec, "scale")
    if np.any(scale <= 0):
        raise ConfigError("phenomenon.fig6.scale must stay > 0 (the target is Y / scale)")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 6]))
    x = rng.standard_normal((n, d))
    x = whiten(x) if spec.get("whiten", init == "balanced") else x
    y = rng.standard_normal((n, c))
    lam_g, scale_g = np.meshgrid(lam, scale, indexing="ij")
    if init == "balanced":
        w1, w2 = two_layer.lambda_balanced_init(lam_g, scale_g, d, h, c, rng)
    else:
        w1, w2 = two_layer.zero_output_init(lam_g, d, h, c, rng, sigma=float(spec.get("sigma", 0.1)))
    return Fig6Grid(lam=lam, scale=scale, x=x, y=y, w1=w1, w2=w2)


def gd_two_layer(
    w1: np.ndarray,
    w2: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    lr: float,
    steps: int,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Full-batch GD of a whole batch of 2-layer linear nets as one batched torch model, in float64.

    The step of ``linear_models.two_layer.simulate_two_layer`` (E = W2 W1 Sxx - Syx, W1 -= lr W2^T E,
    W2 -= lr E W1^T; docs/theory.md 2.2), written with in-place batched matmuls so that it runs on ``device`` (CUDA
    when available) and about twice as fast as the numpy reference on one CPU core; tests check the two agree.

    Args:
        w1: First layers (*B, h, d). w2: Second layers (*B, c, h).
        x: Inputs (N, d), rows are samples. y: Targets (*B, N, c) or (N, c).
        lr: Learning rate. steps: Number of updates.
        device: Where to run.

    Returns:
        (W1, W2) after ``steps`` updates, float64 numpy, the input shapes.
    """
    batch, (h, d), c = w1.shape[:-2], w1.shape[-2:], w2.shape[-2]
    dev = torch.device(device)
    a = torch.tensor(w1.reshape(-1, h, d), dtype=torch.float64, device=dev)
    b = torch.tensor(w2.reshape(-1, c, h), dtype=torch.float64, device=dev)
    xt = torch.tensor(x, dtype=torch.float64, device=dev)
    yt = torch.tensor(
        np.broadcast_to(y, batch + y.shape[-2:]).reshape(-1, *y.shape[-2:]), dtype=torch.float64, device=dev
    )
    n = xt.shape[0]
    sxx = xt.T @ xt / n  # (d, d)
    syx = yt.transpose(1, 2) @ xt / n  # (K, c, d)
    k = a.shape[0]
    with torch.no_grad():
        for _ in range(steps):
            e = (torch.bmm(b, a).reshape(-1, d) @ sxx).reshape(k, c, d).sub_(syx)
            g2 = torch.bmm(e, a.transpose(1, 2))  # uses W1 before its update
            a.baddbmm_(b.transpose(1, 2), e, alpha=-lr)
            b.add_(g2, alpha=-lr)
    return a.cpu().numpy().reshape(w1.shape), b.cpu().numpy().reshape(w2.shape)


def simulate_kd(grid: Fig6Grid, lr: float, steps: int, device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """GD of every cell at once (:func:`gd_two_layer`); KD(K_0, K_steps) on the train inputs (docs/theory.md 2.6, 3.3).

    Returns:
        ``kd`` (R, C), ``loss0`` and ``loss`` (R, C): the training loss (target Y / scale) at step 0 and the end.
    """
    w1, w2 = gd_two_layer(grid.w1, grid.w2, grid.x, grid.targets, lr, steps, device)
    m0, g0 = two_layer.ntk_grams(grid.w1, grid.w2)
    m1, g1 = two_layer.ntk_grams(w1, w2)
    kd = two_layer.ntk_distance(m0, g0, m1, g1, grid.x.T @ grid.x)
    return {"kd": kd, "loss0": _loss(grid.w1, grid.w2, grid), "loss": _loss(w1, w2, grid)}


def theory_kd(grid: Fig6Grid, t: float, method: str) -> dict[str, np.ndarray]:
    """Gradient-flow KD(K(0), K(t)) of every cell from ``linear_models.two_layer.predictor``.

    Args:
        grid: The grid at init.
        t: Continuous time lr * steps.
        method: "riccati" (exact, needs a lambda-balanced init on whitened X), "ode" or "auto".

    Returns:
        ``kd`` (R, C) and ``loss`` (R, C) at time t.
    """
    w1, x = grid.w1, grid.x
    if method != "riccati":  # the flow never leaves the span of the inputs: integrate there (exact, half the state)
        _, s, vt = np.linalg.svd(x, full_matrices=False)
        v = vt[s > s[0] * 1e-12].T  # (d, r)
        w1, x = w1 @ v, x @ v
    traj = two_layer.predictor(w1, grid.w2, x, grid.targets, method=method)(np.array([t]))
    return {"kd": traj["kd"][0], "loss": traj["loss"][0]}


def train_fig6(
    spec: dict[str, Any], seed: int, lr: float, steps: int, device: torch.device | str = "cpu"
) -> tuple[pd.DataFrame, Prediction]:
    """Simulate and predict one Fig. 6 grid; the Phenomenon.train override's work for ``mode: fig6``.

    Args:
        spec: ``phenomenon.fig6`` (see :func:`make_grid`, plus ``theory``: riccati | ode | auto).
        seed: Run seed.
        lr: GD learning rate (``optim.lr``; the paper: 0.01).
        steps: GD steps (``train.steps``; the paper: 4000, so t = 40).
        device: Where the batched GD runs (the theory runs in numpy).

    Returns:
        Observed curves (members "twin:<cell>") and the Prediction (curves "theory:<cell>"; numbers hold the axes).
    """
    grid = make_grid(spec, seed)
    t_end = lr * steps
    log.info(
        "fig6 grid %dx%d: simulating %d nets for %d steps",
        len(grid.lam),
        len(grid.scale),
        grid.lam.size * grid.scale.size,
        steps,
    )
    sim = simulate_kd(grid, lr, steps, device)
    method = spec.get("theory", "auto")
    theo = theory_kd(grid, t_end, method)
    labels = grid.labels()
    observed = _rows(
        "twin", labels, steps, t_end, {"kd": sim["kd"], "log10_kd": log_kd(sim["kd"]), "train_loss": sim["loss"]}
    )
    observed = pd.concat([_rows("twin", labels, 0, 0.0, {"train_loss": sim["loss0"]}), observed], ignore_index=True)
    predicted = _rows(
        "theory", labels, steps, t_end, {"kd": theo["kd"], "log10_kd": log_kd(theo["kd"]), "train_loss": theo["loss"]}
    )
    numbers = {
        "grid": "fig6",
        "init": spec.get("init", "balanced"),
        "theory_method": method,
        "lambda": grid.lam.tolist(),
        "scale": grid.scale.tolist(),
        "t_end": t_end,
        "steps": steps,
        # cells whose GD blew up (NaN/inf loss or KD at the end; the batched simulation keeps no step of its own)
        "diverged": {
            f"twin:{lab}": steps
            for lab, loss, kd in zip(labels, np.ravel(sim["loss"]), np.ravel(sim["kd"]), strict=True)
            if not (np.isfinite(loss) and np.isfinite(kd))
        },
    }
    return observed, Prediction(curves=predicted, numbers=numbers)


def _loss(w1: np.ndarray, w2: np.ndarray, grid: Fig6Grid) -> np.ndarray:
    """L = 1/(2N) sum_n ||W2 W1 x_n - y_n||^2 per cell (docs/theory.md 2.2), (R, C)."""
    f = np.einsum("...ch,...hd,nd->...nc", w2, w1, grid.x)
    return 0.5 * np.sum((f - grid.targets) ** 2, axis=(-2, -1)) / grid.x.shape[0]


def _rows(prefix: str, labels: list[str], step: int, t: float, metrics: dict[str, np.ndarray]) -> pd.DataFrame:
    members = [f"{prefix}:{lab}" for lab in labels]
    frames = [
        pd.DataFrame(
            {"member": members, "step": step, "time": t, "metric": k, "value": np.asarray(v, dtype=np.float64).ravel()}
        )
        for k, v in metrics.items()
    ]
    return pd.concat(frames, ignore_index=True)


def _axis(spec: dict[str, Any], key: str) -> np.ndarray:
    val = spec.get(key)
    if isinstance(val, dict) and "values" in val:
        return np.asarray(val["values"], dtype=np.float64)
    try:
        start, stop, num = val
        return np.linspace(float(start), float(stop), int(num))
    except (TypeError, ValueError):
        raise ConfigError(
            f"phenomenon.fig6.{key} must be [start, stop, num] or {{values: [...]}}, not {val!r}"
        ) from None
