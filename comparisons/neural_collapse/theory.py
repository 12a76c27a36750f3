"""The theory voice of the neural-collapse comparison (docs/theory.md 3.2, 7.2, 7.3), built on :mod:`linear_models`.

- :func:`deep_linear_modes`: the class-space modes of the twin's Sigma_yx (``deep_linear.io_modes``) and when the
  class means grow along each (the depth-L mode flow of ``deep_linear.mode_strength``; :func:`half_rise_time`).
- :func:`ufm_flow` / :func:`ufm_curves`: gradient flow of the unconstrained features model (``ufm.simulate``) from
  a network's own features and classifier at init, and its NC metrics over time.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from scipy import integrate

from comparisons.neural_collapse.metrics import nc_metrics
from linear_models import deep_linear, ufm

if TYPE_CHECKING:
    from comparisons.engine.members import Member

__all__ = ["deep_linear_modes", "half_rise_time", "model_depth", "ufm_curves", "ufm_flow"]

log = logging.getLogger(__name__)


def half_rise_time(s: float, u0: float, depth: int) -> float:
    """Time for u^{(L-1)/L} to get halfway from u0^{(L-1)/L} to s^{(L-1)/L} under du/dt = L u^{2-2/L} (s - u).

    The depth-L balanced mode flow of docs/theory.md 3.2; u^{(L-1)/L} is the per-layer strength of the L - 1 layers
    below the head, i.e. the growth of ||M u_a|| (docs/theory.md 7.3). t(u) = int_{u0}^{u} du' / (L u'^{2-2/L} (s - u'))
    by quadrature: exact and cheap, where integrating the ODE to late times is slow (its relaxation rate grows with L).

    Args:
        s: Singular value > 0; u0: initial strength > 0; depth: L >= 2.

    Returns:
        The half-rise time (tau units); nan when u0 >= s (the mode decays instead of rising).
    """
    if not 0 < u0 < s:
        return math.nan
    p = (depth - 1) / depth
    u_half = ((u0**p + s**p) / 2.0) ** (1.0 / p)

    def dt_dlogu(log_u: float) -> float:  # dt = du / (L u^{2-2/L} (s - u)) = dlog u / (L u^{1-2/L} (s - u))
        u = math.exp(log_u)
        return 1.0 / (depth * u ** (1.0 - 2.0 / depth) * (s - u))

    return float(integrate.quad(dt_dlogu, math.log(u0), math.log(u_half), limit=200)[0])


def model_depth(model: torch.nn.Module) -> int:
    """Layers on the main path: Linear modules plus Conv2d modules that are not 1x1 shortcuts."""
    n = sum(
        isinstance(m, torch.nn.Linear) or (isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1))
        for m in model.modules()
    )
    return max(2, int(n))


# ----------------------------------------------------------------------------------------------------------------


def deep_linear_modes(member: Member, tau_grid: np.ndarray, kn: dict[str, Any]) -> dict[str, Any]:
    """Class-space modes of the member's Sigma_yx and their predicted rise (docs/theory.md 3.2, 7.3).

    For balanced centred targets Sigma_yx = (S/C) M_x^T, so M(t) u_a = (C/S) s_a W_{<L}(t) v_a, whose norm grows
    like u_a(t)^{(L-1)/L} with u_a the depth-L Saxe strength (``deep_linear.mode_strength``) from u0, the RMS
    initial strength u_a^T P(0) v_a of the member's end-to-end map on the modes.

    Returns:
        ``u_modes`` (C, r), ``s``, ``u0``, ``depth``, ``half_rise_tau`` (per mode, nan if it never rises) and
        ``curve`` (T, r): the predicted normalised rise (q - q(0)) / (q(inf) - q(0)) on ``tau_grid``.
    """
    task, model = member.task, member.model
    x = task.x_train.reshape(len(task.x_train), -1).double().cpu().numpy()
    u_modes, s, vt = deep_linear.io_modes(x, task.y_train.double().cpu().numpy())  # (C, r), (r,), (r, d)
    keep = s > 1e-6 * s.max()  # centred targets have rank C - 1; float32 data leaves a ~1e-8 residual
    u_modes, s, vt = u_modes[:, keep], s[keep], vt[keep]
    depth = int(kn["depth"] or model_depth(model))
    was = model.training
    model.eval()
    with torch.no_grad():  # the twin is affine in eval mode: P v = f(v) - f(0)
        probe = torch.as_tensor(
            np.vstack([np.zeros(vt.shape[1]), vt]), dtype=task.x_train.dtype, device=task.x_train.device
        ).reshape(-1, *task.x_train.shape[1:])
        f = model(probe).double().cpu().numpy()
    model.train(was)
    u0 = float(np.sqrt(np.mean(np.einsum("ca,ac->a", u_modes, f[1:] - f[0]) ** 2)))
    u0 = max(u0, 1e-8 * float(s.min()))
    q_inf, q0 = s ** ((depth - 1) / depth), u0 ** ((depth - 1) / depth)
    with np.errstate(over="ignore", invalid="ignore"):
        q = deep_linear.mode_strength(tau_grid, s, u0, depth=depth) ** ((depth - 1) / depth)  # (T, r)
    curve = (q - q0) / np.where(q_inf > q0, q_inf - q0, np.nan)
    half = [half_rise_time(sa, u0, depth) for sa in s]
    return {"u_modes": u_modes, "s": s.tolist(), "u0": u0, "depth": depth, "half_rise_tau": half, "curve": curve}


def ufm_flow(
    h0: np.ndarray,
    w0: np.ndarray,
    b0: np.ndarray | None,
    y: np.ndarray,
    tau: np.ndarray,
    wd: float,
    rho: float = 1.0,
    max_steps: int = 20000,
) -> dict[str, Any]:
    """Gradient flow of the UFM (docs/theory.md 7.2) at the times ``tau``, by ``linear_models.ufm.simulate``.

    Solves, with R = W H + b 1^T - Y and Euler steps dt <= 0.5 / curvature at init,
    dW/dt = -(1/N) R H^T - wd W,  dH/dt = -(rho/N) W^T R - wd H,  db/dt = -sqrt(rho) (1/N) R 1.
    rho = 1 is the UFM objective of docs/theory.md 7.2 with wd on W and H; rho = N moves each h_n like a free per-sample
    layer. The change of variables H = k H_s, W = W_s / k, t = t_s / sqrt(rho), k = rho^(1/4), wd_s = wd / sqrt(rho)
    maps it exactly onto ``simulate``'s single learning rate (the unregularised bias runs sqrt(rho) times faster; it
    only tracks the mean residual). The stationary points are those of wd_W = wd, wd_H = wd / rho.

    Args:
        h0: Features (p, N); w0: classifier (C, p); b0: bias (C,) or None (no bias); y: targets (C, N).
        tau: Increasing times (T,), tau[0] = 0.
        wd: Weight decay.
        rho: Feature rate (above).
        max_steps: Cap on Euler steps.

    Returns:
        ``H`` (T, p, N), ``W`` (T, C, p), ``b`` (T, C), ``loss`` (T,) (the MSE part), ``steps``, ``dt``.
    """
    n = h0.shape[1]
    k, sq = rho**0.25, np.sqrt(rho)
    curv = max(
        np.linalg.eigvalsh(h0 @ h0.T / n)[-1],
        rho / n * np.linalg.eigvalsh(w0.T @ w0)[-1],
        sq if b0 is not None else 0.0,
        1e-3,
    )
    n_steps = int(min(max(math.ceil(tau[-1] * curv / 0.5), 1), max_steps))
    dt = tau[-1] / n_steps if tau[-1] > 0 else 1.0
    at = np.round(tau / dt).astype(np.int64).clip(0, n_steps)  # Euler step of each tau
    rec = np.unique(at)
    traj = ufm.simulate(
        h0 / k,
        w0 * k,
        y,
        lr=dt * sq,
        steps=n_steps,
        record_steps=rec,
        wd_W=wd / sq,
        wd_H=wd / sq,
        b0=b0,
        bias=b0 is not None,
    )
    r = np.searchsorted(rec, at)
    return {
        "H": traj["H"][r] * k,
        "W": traj["W"][r] / k,
        "b": traj["b"][r],
        "loss": traj["loss"][r],
        "steps": n_steps,
        "dt": dt,
    }


def ufm_curves(real: Member, tau: np.ndarray, wd: float, kn: dict[str, Any], modes: torch.Tensor):
    """The UFM voice: :func:`ufm_flow` from the real net's init features and classifier, NC metrics at each tau.

    Features are the real net's on ``ufm_per_class`` training samples per class, at init (eval mode); the classifier
    and bias are its last layer times ``output_scale``. Rows carry ``grid`` (the index into ``tau``).
    """
    task, model = real.task, real.model
    labels = task.labels_train
    per = int(kn["ufm_per_class"])
    c = int(task.meta["num_classes"])
    idx = torch.cat([torch.nonzero(labels == k).flatten()[:per] for k in range(c)])
    clf = model.get_classifier()
    was = model.training
    model.eval()
    with torch.no_grad():
        h0 = model.forward_features(task.x_train[idx]).double().cpu().numpy().T  # (p, N)
    model.train(was)
    scale = float(getattr(model, "output_scale", 1.0))
    w0 = scale * clf.weight.detach().double().cpu().numpy()  # (C, p)
    b0 = None if clf.bias is None else scale * clf.bias.detach().double().cpu().numpy()
    y = task.y_train[idx].double().cpu().numpy().T  # (C, N)
    n = h0.shape[1]
    rho = float(n if kn["ufm_feature_rate"] == "n" else kn["ufm_feature_rate"])
    flow = ufm_flow(h0, w0, b0, y, tau, wd, rho, int(kn["ufm_max_steps"]))
    lab = labels[idx].cpu()
    rows = []
    for j in range(len(tau)):
        hh, ww, bb = flow["H"][j], flow["W"][j], flow["b"][j]
        if not (np.all(np.isfinite(hh)) and np.all(np.isfinite(ww))):
            log.warning("UFM diverged at tau=%.3g (dt=%.3g); its curves stop there", tau[j], flow["dt"])
            break
        met = nc_metrics(torch.as_tensor(hh.T), lab, torch.as_tensor(ww), torch.as_tensor(bb), modes=modes)
        met = {f"train_{key}": v for key, v in met.items() if key != "n_samples"}
        met["train_loss"] = float(flow["loss"][j])
        rows += [{"grid": j, "metric": key, "value": v} for key, v in met.items()]
    rho_lim = ufm.collapse_scale(c, per, wd, wd / rho, float(task.meta.get("target_scale", 1.0)))
    info = {
        "ufm_n": n,
        "ufm_feature_rate": rho,
        "ufm_steps": flow["steps"],
        "ufm_dt": flow["dt"],
        "ufm_terminal_rate": ufm.residual_decay_rate(wd),
        "ufm_limit_rho": rho_lim,
    }
    return pd.DataFrame(rows), info
