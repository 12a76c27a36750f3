"""Emergence (docs/theory.md 4): skills of multitask sparse parity appear one by one, as the multilinear model predicts.

Claim under test (the paper, arXiv:2502.21009, section 4; Nam et al. 2024, arXiv:2404.17563): a 2-layer ReLU MLP
learns skill k as a sigmoid in time whose half-time is proportional to 1/p_k, exactly as the diagonal (multilinear)
model R_k/S = 1/(1 + (S/R_0 - 1) exp(-2 p_k S t / tau)) of docs/theory.md 4.3, up to one time constant tau fitted on
skill 1 only. Variants (``phenomenon.variant``): ``time`` (online SGD), ``data`` (a fixed set of D samples,
``sweep.grid`` over ``task.n_train``) and ``params`` (hidden width N, ``sweep.grid`` over ``model.width``), each
with its scaling law (docs/theory.md 4.5, 4.6).

Voices (docs/design.md):

- real / twin (per sweep point): ``skill_k`` = R_k/S, the centred projection of the output on skill k's parity on a
  fixed per-skill probe set, and ``skill_mse_k`` (docs/theory.md 4.8; :func:`observe`). The twin is linear in the
  input and cannot represent a parity, so its R_k stays ~0 (a finding, reported as ``twin_max_skill``).
- theory: ``linear_models.skills``, from the task's p_k, S and R_0 = init^2 / r0_divisor (the authors' match to the
  measured initial strength, docs/theory.md 4.3). :func:`predict` gives the bare model at init (tau = 1, D_c = N_c = 1);
  :func:`calibrate` then fits the one constant (tau, D_c or N_c) on skill 1 and predicts skills 2..n_s.
- control (time variant): ``real:control=shuffled_control``, the same initial net trained on the task whose control
  bits are drawn independently of the skill that sets the target (no ordered emergence).

Time: t = time_factor * lr * step, with time_factor = 2 for ``train.loss=mse_mean`` (torch's MSELoss, the published
setup; docs/theory.md 2.2). Scores, criteria and controls: :mod:`comparisons.emergence.scores`; figures:
:mod:`comparisons.emergence.figures`.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from typing import Any

import numpy as np
import pandas as pd
import torch

from comparisons.emergence.figures import figures
from comparisons.emergence.metrics import skill_projection
from comparisons.emergence.scores import ceiling, knobs, score
from comparisons.emergence.theory import _theory_final, calibrate, theory_time
from comparisons.engine.config import ConfigError, RunCfg
from comparisons.engine.loop import train_members
from comparisons.engine.members import Context, Member, eval_steps, streams, time_factor
from comparisons.engine.phenomenon import Phenomenon, Prediction
from linear_models import skills

__all__ = ["PHENOMENON", "observe", "predict", "train"]

log = logging.getLogger(__name__)

CONTROL = "shuffled_control"
COLUMNS = ["member", "step", "time", "metric", "value"]
SWEPT = {"data": "task.n_train", "params": "model.width"}  # the one sweep key of each variant


@torch.no_grad()
def observe(member: Member, step: int) -> dict[str, float]:
    """R_k/S (``skill_k``) and the per-skill torch-mean MSE (``skill_mse_k``) on the probe sets (docs/theory.md 4.8).

    Args:
        member: A member whose task carries ``meta["probes"]`` (list over k of x_k (M, d), g_k (M,) in {-1, +1})
            and ``meta["S"]``.
        step: The eval step (unused: the probes are fixed).

    Returns:
        ``{"skill_1": R_1/S, ..., "skill_mse_1": ..., ...}``, floats.
    """
    meta = member.task.meta
    s = float(meta["S"])
    was = member.model.training
    member.model.eval()
    out: dict[str, float] = {}
    for k, (x, g) in enumerate(meta["probes"], start=1):
        o = torch.cat([member.model(x[i : i + 8192]) for i in range(0, len(x), 8192)]).reshape(-1)
        out[f"skill_{k}"] = skill_projection(o, g) / s
        out[f"skill_mse_{k}"] = float((o.double() - s * g.double()).pow(2).mean())
    member.model.train(was)
    return out


def predict(cfg: RunCfg, members: list[Member]) -> Prediction:
    """The bare multilinear model at init (no fitted constant), and every number the scores need.

    Returns:
        Prediction: curves ``theory`` (time variant: R_k/S on the eval grid with tau = 1) or ``theory:<point>``
        (data/params: the final R_k/S of the basic model, 1 - (1 - p_k)^D or 1[k <= N]); numbers ``variant``, ``p``,
        ``alpha``, ``S``, ``R0``, ``lr``, ``time_factor``, ``steps``, ``points`` (label -> swept value) and
        ``exponents`` (docs/theory.md 4.6).
    """
    kn = knobs(cfg)
    real = [m for m in members if m.role == "real" and "control" not in m.point]
    if not real:
        raise ConfigError("emergence needs a real network; check twin/sweep settings")
    meta = real[0].task.meta
    if "probes" not in meta:
        raise ConfigError(f"phenomenon=emergence needs task=sparse_parity (got task.name={cfg.task['name']})")
    p = [float(v) for v in meta["p"]]
    alpha = float(meta["exponent"]) - 1.0
    init = float(cfg.model.get("init_scale", 1.0))
    nums: dict[str, Any] = {
        "variant": kn["variant"],
        "p": p,
        "alpha": alpha,
        "S": float(meta["S"]),
        "R0": init * init / float(kn["r0_divisor"]),
        "init_scale": init,
        "lr": float(cfg.optim.lr),
        "time_factor": time_factor(cfg.train.loss, int(meta["out_dim"])),
        "steps": int(cfg.train.steps),
        "level": float(kn["level"]),
        "exponents": skills.scaling_exponents(alpha) if alpha > 0 else {},
        "points": _points(real, kn["variant"]),
    }
    if kn["variant"] == "time":
        steps = np.asarray(eval_steps(cfg.train.steps, cfg.train.eval_points, cfg.train.eval_grid), dtype=np.float64)
        curves = theory_time(steps, nums, tau=1.0)
        lr_eff = nums["time_factor"] * nums["lr"]
        nums["t_bare"] = (skills.emergence_time(p, nums["S"], nums["R0"], frac=nums["level"]) / lr_eff).tolist()
    else:
        curves = _theory_final(nums, None)
    return Prediction(curves=curves, numbers=nums)


def train(cfg: RunCfg, ctx: Context) -> tuple[pd.DataFrame, Prediction]:
    """The runner's pairs (plus, for the time variant, the shuffled-control real net), predict at init, train all
    members on one data order, then fit the one constant on skill 1 (:func:`calibrate`)."""
    from comparisons.engine.sweep import build_members

    kn = knobs(cfg)
    _check_sweep(cfg, kn["variant"])
    members = build_members(cfg, ctx)
    if kn["variant"] == "time" and kn["controls"]:
        members.append(_shuffled_control(members, cfg, ctx))
    prediction = predict(cfg, members)
    rows = train_members(members, ctx, observe, checkpoint=ctx.run_dir / "checkpoint.pt")
    observed = pd.DataFrame(rows, columns=COLUMNS)
    return observed, calibrate(prediction, observed)


def _points(real: list[Member], variant: str) -> dict[str, float]:
    """Sweep label -> swept value (n_train or width) of every real member; ``{"": nan}`` without a sweep."""
    key = SWEPT.get(variant)
    return {m.name.partition(":")[2]: float(m.point.get(key, math.nan)) if key else math.nan for m in real}


def _check_sweep(cfg: RunCfg, variant: str) -> None:
    key = SWEPT.get(variant)
    grid = cfg.sweep.grid
    if key is None:
        if grid:
            raise ConfigError(
                f"phenomenon.variant=time takes no sweep.grid (got {list(grid)}); use seeds=[...] "
                "for replicates, or one run per setting"
            )
        return
    if list(grid) != [key]:
        raise ConfigError(
            f"phenomenon.variant={variant} needs sweep.grid with exactly one key, {key} "
            f"(e.g. sweep.grid.{key}=[...]); got {list(grid) or 'none'}"
        )


def _shuffled_control(members: list[Member], cfg: RunCfg, ctx: Context) -> Member:
    """Negative control: the first real net's initial weights, trained on the task with shuffled control bits."""
    import tasks

    real = next(m for m in members if m.role == "real")
    spec = {**dict(cfg.task), "shuffle_control": True}
    task = tasks.build(spec, device=ctx.device, dtype=ctx.dtype, generator=streams(cfg.seed)["task"])
    task = dataclasses.replace(task, meta={**task.meta, "control": CONTROL})
    return Member(
        name=f"real:control={CONTROL}",
        role="real",
        model=copy.deepcopy(real.model),
        task=task,
        point={**real.point, "control": CONTROL},
    )


PHENOMENON = Phenomenon(
    name="emergence", observe=observe, predict=predict, score=score, figures=figures, train=train, ceiling=ceiling
)
