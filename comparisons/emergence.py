"""Emergence (SCIENCE.md 4): skills of multitask sparse parity appear one by one, as the multilinear model predicts.

Claim under test (the paper, arXiv:2502.21009, section 4; Nam et al. 2024, arXiv:2404.17563): a 2-layer ReLU MLP
learns skill k as a sigmoid in time whose half-time is proportional to 1/p_k, exactly as the diagonal (multilinear)
model R_k/S = 1/(1 + (S/R_0 - 1) exp(-2 p_k S t / tau)) of SCIENCE.md 4.3, up to one time constant tau fitted on
skill 1 only. Variants (``phenomenon.variant``): ``time`` (online SGD), ``data`` (a fixed set of D samples,
``sweep.grid`` over ``task.n_train``) and ``params`` (hidden width N, ``sweep.grid`` over ``model.width``), each
with its scaling law (SCIENCE.md 4.5, 4.6).

Voices (DESIGN.md):

- real / twin (per sweep point): ``skill_k`` = R_k/S, the centred projection of the output on skill k's parity on a
  fixed per-skill probe set, and ``skill_mse_k`` (SCIENCE.md 4.8; :func:`observe`). The twin is linear in the
  input and cannot represent a parity, so its R_k stays ~0 (a finding, reported as ``twin_max_skill``).
- theory: ``linear_models.skills``, from the task's p_k, S and R_0 = init^2 / r0_divisor (the authors' match to the
  measured initial strength, SCIENCE.md 4.3). :func:`predict` gives the bare model at init (tau = 1, D_c = N_c = 1);
  :func:`calibrate` then fits the one constant (tau, D_c or N_c) on skill 1 and predicts skills 2..n_s.
- control (time variant): ``real:control=shuffled_control``, the same initial net trained on the task whose control
  bits are drawn independently of the skill that sets the target (no ordered emergence).

Time: t = time_factor * lr * step, with time_factor = 2 for ``train.loss=mse_mean`` (torch's MSELoss, the published
setup; SCIENCE.md 2.2). Scores, criteria and controls: :mod:`comparisons.emergence_scores`; figures:
:mod:`comparisons.emergence_figures`.
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

from comparisons.config import ConfigError, RunCfg
from comparisons.emergence_figures import figures
from comparisons.emergence_metrics import crossing_step, fit_scale, skill_projection
from comparisons.emergence_scores import knobs, score
from comparisons.phenomenon import Phenomenon, Prediction
from comparisons.train import Context, Member, eval_steps, streams, time_factor, train_members
from linear_models import skills

__all__ = ["PHENOMENON", "calibrate", "fit_tau_r0", "observe", "predict", "theory_time", "theory_time_values", "train"]

log = logging.getLogger(__name__)

CONTROL = "shuffled_control"
COLUMNS = ["member", "step", "time", "metric", "value"]
SWEPT = {"data": "task.n_train", "params": "model.width"}  # the one sweep key of each variant


@torch.no_grad()
def observe(member: Member, step: int) -> dict[str, float]:
    """R_k/S (``skill_k``) and the per-skill torch-mean MSE (``skill_mse_k``) on the task's probe sets (SCIENCE.md 4.8).

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
        ``exponents`` (SCIENCE.md 4.6).
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
    from comparisons.run import build_members

    kn = knobs(cfg)
    _check_sweep(cfg, kn["variant"])
    members = build_members(cfg, ctx)
    if kn["variant"] == "time" and kn["controls"]:
        members.append(_shuffled_control(members, cfg, ctx))
    prediction = predict(cfg, members)
    rows = train_members(members, ctx, observe, checkpoint=ctx.run_dir / "checkpoint.pt")
    observed = pd.DataFrame(rows, columns=COLUMNS)
    return observed, calibrate(prediction, observed)


def calibrate(prediction: Prediction, observed: pd.DataFrame, p: list[float] | None = None) -> Prediction:
    """Fit the one constant on skill 1 of the real net and return the calibrated prediction (SCIENCE.md 4.3, 4.5).

    - time: tau in R_k/S = 1/(1 + (S/R0 - 1) exp(-2 p_k S t / tau)), least squares over skill 1's curve;
    - data: D_c in R_k/S = 1 - sqrt(max(0, 1 - D p_k / D_c)) (the authors' curve), over skill 1's final values;
    - params: N_c in R_k/S = clip(N/N_c - (k - 1), 0, 1), over skill 1's final values.

    Args:
        prediction: :func:`predict`'s output.
        observed: The trained members' curves (long table).
        p: Frequencies to use instead of the task's (the swapped-frequency negative control).

    Returns:
        A new Prediction whose curves are the calibrated theory (same members and metrics as the bare one) and
        whose numbers add ``fit`` (the constant's name), ``constant`` and, for the time variant, ``t_pred`` (the
        predicted emergence steps, (n_s,)) and ``sharpness_pred``.
    """
    nums = {**prediction.numbers, "p": list(p) if p is not None else prediction.numbers["p"]}
    variant = nums["variant"]
    if variant == "time":
        wide = _wide(observed, "real")
        steps = wide.index.to_numpy(dtype=np.float64)
        r1 = wide["skill_1"].to_numpy() if "skill_1" in wide else np.full(steps.shape, np.nan)
        lr_eff = nums["time_factor"] * nums["lr"]
        bare1 = float(skills.emergence_time(nums["p"][:1], nums["S"], nums["R0"], frac=nums["level"])[0]) / lr_eff
        tau = fit_scale(
            lambda c: theory_time_values(steps, nums, c)[:, 0], r1, crossing_step(steps, r1, nums["level"]) / bare1
        )
        grid = np.asarray(sorted(set(prediction.curves["step"]) | set(steps)), dtype=np.float64)
        curves = theory_time(grid, nums, tau)
        t = lambda f: skills.emergence_time(nums["p"], nums["S"], nums["R0"], frac=f) * tau / lr_eff  # noqa: E731
        nums.update(
            fit="tau",
            constant=tau,
            t_pred=t(nums["level"]).tolist(),
            sharpness_pred=float(((t(0.9) - t(0.1)) / t(0.5))[0]) if math.isfinite(tau) else math.nan,
        )
    else:
        final = _final(observed, nums)
        x = np.array([v for v in nums["points"].values()], dtype=np.float64)
        r1 = np.array([final.get(label, {}).get("skill_1", math.nan) for label in nums["points"]])
        guess = _guess_constant(variant, x, r1, nums["p"][0])
        const = fit_scale(lambda c: _final_strength(variant, x, nums["p"], c)[:, 0], r1, guess, span=100.0)
        nums.update(fit="D_c" if variant == "data" else "N_c", constant=const)
        curves = _theory_final(nums, const)
    return Prediction(curves=curves, numbers=nums)


def fit_tau_r0(steps: np.ndarray, r1: np.ndarray, nums: dict[str, Any], tau0: float) -> tuple[float, float]:
    """Diagnostic two-constant fit on skill 1: tau and R_0 together (least squares in log space from (tau0, R0)).

    The one-constant fit keeps R_0 = init^2 / r0_divisor, which fixes the sharpness of every rise; freeing R_0
    separates the timing law (t_k ~ 1/p_k) from the shape of the rise. Returns (tau, R0), NaN if tau0 is not finite.
    """
    from scipy import optimize

    keep = np.isfinite(r1)
    if not (math.isfinite(tau0) and tau0 > 0 and keep.any()):
        return math.nan, math.nan

    def resid(theta: np.ndarray) -> np.ndarray:
        trial = {**nums, "R0": math.exp(theta[1])}
        return theory_time_values(steps, trial, math.exp(theta[0]))[keep, 0] - r1[keep]

    hi = math.log(0.5 * nums["S"])  # R_0 below S/2: the rise starts under the emergence level
    x0 = [math.log(tau0), min(math.log(nums["R0"]), hi - 1.0)]
    res = optimize.least_squares(resid, x0=x0, bounds=([-np.inf, -60.0], [np.inf, hi]))
    return float(math.exp(res.x[0])), float(math.exp(res.x[1]))


def theory_time_values(steps: np.ndarray, nums: dict[str, Any], tau: float) -> np.ndarray:
    """R_k/S of the multilinear model at the given steps with time constant tau, (T, n_s), float64 (SCIENCE.md 4.3)."""
    if not (math.isfinite(tau) and tau > 0):
        return np.full((len(steps), len(nums["p"])), np.nan)
    lr_eff = nums["time_factor"] * nums["lr"] / tau
    r = skills.skill_strength(np.asarray(steps, dtype=np.float64), nums["p"], nums["S"], nums["R0"], lr_eff)
    return np.atleast_2d(r) / nums["S"]


def theory_time(steps: np.ndarray, nums: dict[str, Any], tau: float) -> pd.DataFrame:
    """Theory rows (member ``theory``) of ``skill_k`` = R_k/S and ``test_loss`` in the run's loss units.

    The loss is 1/2 sum_k p_k (S - R_k)^2 (SCIENCE.md 4.2) times ``time_factor`` (2 for torch's mean MSE with one
    output, SCIENCE.md 2.2), i.e. the population loss the real net's ``test_loss`` estimates.
    """
    r = theory_time_values(steps, nums, tau)  # (T, n_s)
    p, s = np.asarray(nums["p"]), nums["S"]
    loss = nums["time_factor"] * 0.5 * np.sum(p * (s - s * r) ** 2, axis=1)
    time = nums["time_factor"] * nums["lr"] * np.asarray(steps, dtype=np.float64)
    rows = [
        ("theory", int(st), float(tt), f"skill_{k + 1}", float(r[i, k]))
        for i, (st, tt) in enumerate(zip(steps, time, strict=True))
        for k in range(r.shape[1])
    ]
    rows += [("theory", int(st), float(tt), "test_loss", float(v)) for st, tt, v in zip(steps, time, loss, strict=True)]
    return pd.DataFrame(rows, columns=COLUMNS)


def _final_strength(variant: str, x: np.ndarray, p: list[float], const: float) -> np.ndarray:
    """Calibrated final R_k/S, (len(x), n_s): the data curve with D_c = const, or the width curve with N_c = const."""
    if not (math.isfinite(const) and const > 0):
        return np.full((x.size, len(p)), np.nan)
    if variant == "data":
        return np.atleast_2d(skills.data_strength_calibrated(x, p, D_c=const))
    by_rank = np.atleast_2d(skills.parameter_strength_calibrated(x, len(p), N_c=const))  # column j: (j+1)-th commonest
    rank = np.argsort(np.argsort(-np.asarray(p), kind="stable"), kind="stable")  # identity for the task's sorted p
    return by_rank[:, rank]


def _theory_final(nums: dict[str, Any], const: float | None) -> pd.DataFrame:
    """Theory rows ``theory:<point>`` at the last step: final R_k/S and the loss 1/2 S^2 sum_k p_k (1 - R_k/S)^2.

    ``const`` None gives the basic model (1 - (1 - p_k)^D, or one skill per neuron, 1[k <= N]); a number gives the
    calibrated curve with D_c or N_c = const. The loss is in the run's units (times ``time_factor``, SCIENCE.md 2.2).
    """
    x = np.array(list(nums["points"].values()), dtype=np.float64)
    p, s = np.asarray(nums["p"]), nums["S"]
    if const is None:
        r = skills.data_strength(x, p) if nums["variant"] == "data" else skills.parameter_strength(x, p.size)
        r = np.atleast_2d(r)
    else:
        r = _final_strength(nums["variant"], x, nums["p"], const)
    loss = nums["time_factor"] * 0.5 * s * s * np.sum(p * (1.0 - r) ** 2, axis=1)
    step, time = nums["steps"], nums["time_factor"] * nums["lr"] * nums["steps"]
    rows = []
    for i, label in enumerate(nums["points"]):
        member = f"theory:{label}"
        rows += [(member, step, time, f"skill_{k + 1}", float(r[i, k])) for k in range(p.size)]
        rows.append((member, step, time, "test_loss", float(loss[i])))
    return pd.DataFrame(rows, columns=COLUMNS)


def _guess_constant(variant: str, x: np.ndarray, r1: np.ndarray, p1: float) -> float:
    """A starting value for D_c or N_c: the smallest swept value at which skill 1 is half learned."""
    ok = np.isfinite(r1) & (r1 >= 0.5)
    if not ok.any():
        return math.nan
    x_half = float(x[ok].min())
    return x_half * p1 / 0.75 if variant == "data" else x_half / 0.5  # the curves reach 1/2 at these constants


def _final(observed: pd.DataFrame, nums: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Point label -> {metric: value} of the real net at its last eval step."""
    out = {}
    for label in nums["points"]:
        wide = _wide(observed, f"real:{label}" if label else "real")
        out[label] = {} if wide.empty else wide.iloc[-1].to_dict()
    return out


def _wide(curves: pd.DataFrame, member: str) -> pd.DataFrame:
    """One member's curves as a step x metric table (sorted by step)."""
    rows = curves[curves["member"] == member]
    return rows.pivot_table(index="step", columns="metric", values="value").sort_index()


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


PHENOMENON = Phenomenon(name="emergence", observe=observe, predict=predict, score=score, figures=figures, train=train)
