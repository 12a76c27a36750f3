"""Grokking (docs/theory.md 6): delayed generalisation as a lazy-to-rich transition set by the weight-to-target ratio.

Claim under test (the paper, arXiv:2502.21009, section 7; Kumar et al. 2023, arXiv:2310.06110): a large Sigma_0/S
puts early training in the lazy regime, the net memorises with its initial features, and generalises only once
(decoupled) weight decay has shrunk Sigma to about S, after ln(Sigma_0/(c S)) / (2 lr wd) steps (docs/theory.md 6.3).

Voices (docs/design.md):

- real / twin, per sweep point: train/test accuracy (the trainer's), and from :func:`observe` the weight norms
  (``wnorm``, ``wnorm_<l>``), relative weight change (``rwc``, ``rwc_<l>``, docs/theory.md 2.7), Sigma(t) and Sigma(t)/S
  (``sigma``, ``ratio``), the effective rank of the first layer (``erank1``) and, on a subset of eval steps, the
  kernel distance to the step-0 empirical NTK on a fixed probe batch (``kd``, docs/theory.md 2.6, 5.5).
- theory, per point, from the members at init (:func:`predict`): Sigma_0, S, S_0 (definitions in
  :mod:`comparisons.grokking.metrics`; ``phenomenon.ratio_definition`` = ``weights`` | ``ntk``), the toy model's
  gamma_+ and its lazy/rich call, the predicted delay (``linear_models.grokking``), and the curve
  ratio(t) = (Sigma_0/S) exp(-2 lr wd step) of pure weight decay.

Points: ``sweep.grid`` (a product), or ``phenomenon.points`` (named override sets, e.g. the MNIST panels a-e, which
are not a product). :func:`train` also adds the negative control ``real:<first point>,control=shuffled_labels``
(training labels permuted: it must never generalise, and is reported as censored).

Scores: :mod:`comparisons.grokking.scores`. Figures: :mod:`comparisons.grokking.figures`.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from comparisons.engine.config import RunCfg
from comparisons.engine.loop import train_members
from comparisons.engine.members import Context, Member, eval_steps, streams
from comparisons.engine.metrics import effective_rank, relative_change
from comparisons.engine.ntk import empirical_ntk as full_ntk
from comparisons.engine.ntk import kernel_distance, summed_logit_ntk
from comparisons.engine.phenomenon import Phenomenon, Prediction
from comparisons.grokking.figures import figures
from comparisons.grokking.metrics import (
    initial_output,
    sigma_ntk,
    sigma_weights,
    target_strength,
    weight_layers,
    weight_norms,
)
from comparisons.grokking.scores import ceiling, knobs, score
from linear_models.grokking import delay, gamma_plus, relative_weight_change

__all__ = ["PHENOMENON", "observe", "predict", "train"]

log = logging.getLogger(__name__)

CONTROL = "shuffled_labels"


@torch.no_grad()
def observe(member: Member, step: int) -> dict[str, float]:
    """Weight statistics and Sigma(t)/S at every eval step; on the NTK steps the kernel distance and the first
    layer's effective rank.

    Step-0 quantities (weights, NTK, S) live in ``member.state["grok"]`` (set by :func:`predict`, else here at the
    first call), so a resumed run keeps them.
    """
    st = member.state.get("grok") or _init_state(member, knobs(None), [step])
    model = member.model
    layers = weight_layers(model)
    total, per = weight_norms(layers)
    out = {"wnorm": total, **{f"wnorm_{i + 1}": v for i, v in enumerate(per)}}
    out["rwc"] = relative_change(list(model.parameters()), st["theta0"])
    per_layer = zip(layers, st["w0"], strict=True)
    out.update({f"rwc_{i + 1}": relative_change(w, w0) for i, ((_, w, _), w0) in enumerate(per_layer)})
    sigma = sigma_weights(model) if st["definition"] == "weights" else None
    if st["definition"] == "ntk" and step in st["ntk_steps"]:
        with torch.enable_grad():
            sigma = sigma_ntk(model, st["probe"])
    if sigma is not None:
        out["sigma"], out["ratio"] = sigma, sigma / st["S"]
    if step in st["ntk_steps"] or not st["ntk_steps"]:  # representation metrics share the NTK steps (SVD cost)
        out["erank1"] = effective_rank(layers[0][1])
    if step in st["ntk_steps"]:
        with torch.enable_grad():
            out["kd"] = kernel_distance(st["K0"], _kernel(model, st["probe"], st["outputs"]))
    if st.get("t0") is not None:  # seconds since predict(), the whole run's clock (grokking_fast records it)
        out["wall_s"] = time.perf_counter() - st["t0"]
    return out


def predict(cfg: RunCfg, members: list[Member]) -> Prediction:
    """Ratio, gamma_+, lazy/rich call and predicted delay of every member at init (docs/theory.md 6.2, 6.3).

    Also fills ``member.state["grok"]`` (init weights, probe batch and its NTK, S) for :func:`observe`.

    Returns:
        Prediction: curves ``theory:<point>`` with metric ``ratio`` = (Sigma_0/S) exp(-2 lr_eff wd step) on the eval
        grid (decoupled weight decay only); numbers ``members`` (name -> everything :func:`_member_prediction`
        gives) and the knobs the scores use.
    """
    kn = knobs(cfg)
    grid = eval_steps(cfg.train.steps, cfg.train.eval_points, cfg.train.eval_grid)
    pick = np.unique(np.round(np.linspace(0, len(grid) - 1, max(2, int(kn["ntk_points"])))).astype(int))
    ntk_steps = [grid[i] for i in pick] if kn["ntk_points"] else []
    info, rows = {}, []
    t0 = time.perf_counter() if kn["wall_clock"] else None
    for m in members:
        st = _init_state(m, kn, ntk_steps)
        st["t0"] = t0
        info[m.name] = _member_prediction(m, st, kn, m.optim or cfg.optim, cfg)
        if m.role == "real" and "control" not in m.point and info[m.name]["decay_rate"] is not None:
            rate = info[m.name]["decay_rate"]
            label = m.name.partition(":")[2]
            rows += [
                {
                    "member": f"theory:{label}" if label else "theory",
                    "step": s,
                    "time": info[m.name]["lr"] * s,
                    "metric": "ratio",
                    "value": info[m.name]["ratio"] * math.exp(-rate * s),
                }
                for s in grid
            ]
    numbers = {
        "members": info,
        "definition": kn["ratio_definition"],
        "ratio_threshold": kn["ratio_threshold"],
        "c": kn["c"],
        "gamma_threshold": _gamma_threshold(kn["ratio_threshold"]),
    }
    curves = pd.DataFrame(rows, columns=["member", "step", "time", "metric", "value"])
    return Prediction(curves=curves, numbers=numbers)


def train(cfg: RunCfg, ctx: Context) -> tuple[pd.DataFrame, Prediction]:
    """Build the pairs of every point (``sweep.grid`` or ``phenomenon.points``) plus the shuffled-label control,
    predict once at init, then train every member together on one data order."""
    kn = knobs(cfg)
    members = build_points(cfg, ctx, kn)
    if kn["controls"]:
        members.append(_shuffled_control(members, cfg))
    prediction = predict(cfg, members)
    rows = train_members(members, ctx, observe, checkpoint=ctx.run_dir / "checkpoint.pt")
    return pd.DataFrame(rows, columns=["member", "step", "time", "metric", "value"]), prediction


def build_points(cfg: RunCfg, ctx: Context, kn: dict[str, Any]) -> list[Member]:
    """Members of ``sweep.grid`` (the runner's own builder) or of the named ``phenomenon.points``.

    A named point ``label: {dotted.key: value, ...}`` becomes members ``real:point=<label>`` / ``twin:point=<label>``
    whose ``point`` holds the overrides plus ``point: <label>``.
    """
    from comparisons.engine.sweep import apply_point, build_members

    if not kn["points"]:
        return build_members(cfg, ctx)
    members = []
    for label, overrides in kn["points"].items():
        pcfg = apply_point(cfg, dict(overrides))
        for m in build_members(pcfg, dataclasses.replace(ctx, cfg=pcfg, streams=streams(cfg.seed))):
            grid_label = m.name.partition(":")[2]
            m.point = {"point": label, **dict(overrides), **m.point}
            m.name = f"{m.role}:point={label}" + (f",{grid_label}" if grid_label else "")
            m.optim = m.optim or pcfg.optim
            members.append(m)
    return members


def _member_prediction(m: Member, st: dict[str, Any], kn: dict[str, Any], optim: Any, cfg: RunCfg) -> dict[str, Any]:
    """Everything the theory says about one member at init (stored in summary.json under prediction.members)."""
    sigma0, s, s0 = st["Sigma0"], st["S"], st["S0"]
    s0c = max(-sigma0, min(sigma0, s0))  # the toy has |S_0| <= Sigma_0; a deep net need not
    ratio = sigma0 / s
    gamma = float(gamma_plus(sigma0, s0c, s))
    lr, wd = float(optim.lr), float(optim.weight_decay)
    decoupled = optim.name == "adamw" or (optim.name == "sgd" and not optim.nesterov)
    lr_eff = lr / (1.0 - optim.momentum) if optim.name == "sgd" else lr  # heavy ball: lr/(1-beta) (docs/theory.md 6.3)
    if not decoupled:
        pred_delay = None  # Adam with coupled L2: the law does not apply (docs/theory.md 6.3)
    elif wd == 0.0:
        pred_delay = math.inf if ratio > kn["c"] else 0.0
    else:
        pred_delay = float(delay(ratio, lr_eff, wd, kn["c"]))
    init = getattr(m.model, "init_scale", None)
    return {
        "role": m.role,
        "point": m.name.partition(":")[2],
        "control": m.point.get("control"),
        "values": {k: v for k, v in m.point.items() if k != "control"},
        "Sigma0": sigma0,
        "S": s,
        "S0": s0,
        "ratio": ratio,
        "gamma_plus": gamma,
        "call": "lazy" if gamma < _gamma_threshold(kn["ratio_threshold"]) else "rich",
        "predicted_delayed": bool(ratio > kn["ratio_threshold"]),
        "predicted_delay": pred_delay,
        "rwc_toy": float(relative_weight_change(sigma0, s0c, s)),
        "lr": lr,
        "lr_eff": lr_eff,
        "wd": wd,
        "optimizer": optim.name,
        "decoupled": decoupled,
        "decay_rate": 2.0 * lr_eff * wd if decoupled else None,
        "init_scale": init,
        "steps": int(cfg.train.steps),
    }


@torch.no_grad()
def _init_state(member: Member, kn: dict[str, Any], ntk_steps: list[int]) -> dict[str, Any]:
    """Step-0 quantities of one member: init weights, probe batch and its kernel, S, Sigma_0, S_0."""
    model, task = member.model, member.task
    probe = task.x_train[: int(kn["ntk_probe"])]
    n = int(kn["n_ratio"])
    x, y = task.x_train[:n], task.y_train[:n]
    vocab = task.meta.get("vocab_size") if not x.is_floating_point() else None
    s = target_strength(x, y, vocab)
    with torch.enable_grad():
        sigma0 = sigma_weights(model) if kn["ratio_definition"] == "weights" else sigma_ntk(model, probe)
        k0 = _kernel(model, probe, kn["ntk_outputs"]) if ntk_steps else None
    was = model.training
    model.eval()
    f0 = torch.cat([model(x[i : i + 4096]) for i in range(0, len(x), 4096)])
    model.train(was)
    st = {
        "theta0": [p.detach().clone() for p in model.parameters()],
        "w0": [w.detach().clone() for _, w, _ in weight_layers(model)],
        "probe": probe,
        "K0": k0,
        "outputs": kn["ntk_outputs"],
        "ntk_steps": set(ntk_steps),
        "definition": kn["ratio_definition"],
        "S": s,
        "Sigma0": sigma0,
        "S0": initial_output(f0, y, s),
    }
    member.state["grok"] = st
    return st


def _kernel(model: torch.nn.Module, x: torch.Tensor, outputs: str) -> torch.Tensor:
    """The probe-batch NTK: full (cN x cN, output-major) or the summed-logit (N x N) variant (docs/theory.md 5.5)."""
    return full_ntk(model, x) if outputs == "full" else summed_logit_ntk(model, x)


def _gamma_threshold(ratio_threshold: float) -> float:
    """gamma_+ at Sigma_0/S = ratio_threshold and S_0 = 0: the lazy/rich boundary of the call (2.414 at ratio 1)."""
    return float(gamma_plus(ratio_threshold, 0.0, 1.0))


def _shuffled_control(members: list[Member], cfg: RunCfg) -> Member:
    """Negative control: the first point's real net on permuted training labels (test set untouched)."""
    real = next(m for m in members if m.role == "real")
    task = real.task
    gen = streams(cfg.seed)["noise"]
    perm = torch.randperm(len(task.labels_train), generator=gen).to(task.labels_train.device)
    shuffled = dataclasses.replace(
        task, labels_train=task.labels_train[perm], y_train=task.y_train[perm], meta={**task.meta, "control": CONTROL}
    )
    point = {**real.point, "control": CONTROL}
    name = f"{real.name},control={CONTROL}" if ":" in real.name else f"real:control={CONTROL}"
    return Member(name=name, role="real", model=copy.deepcopy(real.model), task=shuffled, point=point, optim=real.optim)


PHENOMENON = Phenomenon(
    name="grokking", observe=observe, predict=predict, score=score, figures=figures, train=train, ceiling=ceiling
)
