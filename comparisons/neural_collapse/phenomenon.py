"""Neural collapse (docs/theory.md 7): NC1-NC4 of a real network and its linear twin vs the UFM and deep linear nets.

Voices (docs/design.md):

- real / twin: penultimate features of the trained pair (the twin on whitened input, docs/theory.md 2.5), measured at
  every eval step on fixed train and test subsets with :func:`comparisons.neural_collapse.metrics.nc_metrics`.
- theory: (i) the unconstrained features model (UFM, docs/theory.md 7.2) simulated by gradient descent with
  ``linear_models.ufm.simulate`` from the real network's own features and classifier at init, with its weight decay,
  on the same effective time axis; it gives the NC curves, the ETF limit, the terminal NC1 rate 2 wd and the
  incomplete collapse at wd = 0. (ii) The deep linear net of docs/theory.md 3.2 and 7.3 (``linear_models.deep_linear``):
  the class-space modes u_a of the twin's Sigma_yx rise in order of their singular values s_a, so the class-mean
  matrix M grows along u_a at predicted half-rise times.

Time: every voice is compared on the effective time tau = factor * sum_{k < step} lr_k / (1 - momentum)
(docs/theory.md 2.1, with the lr schedule and the heavy-ball factor); curves keep the trainer's ``time`` column.

The run trains, for each loss in ``phenomenon.losses`` (MSE on centred one-hot targets is the theory's domain; CE
is scored too and labelled outside it), a real net and its twin per ``sweep.grid`` point, plus two negative controls
at the first point (first loss only): a real net on randomly relabelled training data (its test features must not
collapse) and a twin whose training class means are permuted (its mode order must not follow the prediction).
Members are named ``<role>:<label>``, the label listing ``loss=...``, the sweep point and ``control=...``.

Files: this module (observe, predict, train, the controls), :mod:`comparisons.neural_collapse.metrics` (NC1-NC4),
:mod:`comparisons.neural_collapse.theory` (the theory voice), :mod:`comparisons.neural_collapse.curves` (time and
curve tools), :mod:`comparisons.neural_collapse.scores` (scores, criteria, nulls, the noise ceiling, knobs) and
:mod:`comparisons.neural_collapse.figures`.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from typing import Any

import numpy as np
import pandas as pd
import torch

from comparisons.engine.config import RunCfg
from comparisons.engine.loop import train_members
from comparisons.engine.members import Context, Member, streams, time_factor
from comparisons.engine.phenomenon import Phenomenon, Prediction
from comparisons.neural_collapse.curves import effective_time, member_optim
from comparisons.neural_collapse.figures import figures
from comparisons.neural_collapse.metrics import nc_metrics
from comparisons.neural_collapse.scores import ceiling, knobs, score
from comparisons.neural_collapse.theory import deep_linear_modes, ufm_curves, ufm_flow

__all__ = ["PHENOMENON", "knobs", "nc_metrics", "observe", "predict", "train", "ufm_flow"]

log = logging.getLogger(__name__)

CONTROL_POINT_KEYS = ("train.loss", "control")


@torch.no_grad()
def observe(member: Member, step: int) -> dict[str, float]:
    """NC metrics of one member on its fixed train and test subsets (``train_<m>``, ``test_<m>``).

    Features come from ``model.forward_features`` in eval mode on the first ``n_eval`` samples of each split (the
    image tasks shuffle their balanced subsets, so these are class-balanced up to sampling); the classifier is
    ``model.get_classifier()``. Test metrics use test class means. ``train_mode_a`` is ||M u_a|| along the predicted
    class-space modes that :func:`predict` stored in ``member.state``.
    """
    st = member.state.get("nc", {})
    model, task = member.model, member.task
    n_eval = int(st.get("n_eval", knobs(None)["n_eval"]))
    clf = model.get_classifier()
    was = model.training
    model.eval()
    out: dict[str, float] = {}
    for split in ("train", "test"):
        x, labels = getattr(task, f"x_{split}")[:n_eval], getattr(task, f"labels_{split}")[:n_eval]
        h = torch.cat([model.forward_features(x[i : i + 1024]) for i in range(0, len(x), 1024)])
        modes = st.get("modes") if split == "train" else None
        try:
            metrics = nc_metrics(h, labels, clf.weight, clf.bias, num_classes=clf.weight.shape[0], modes=modes)
        except ValueError as e:  # a class missing from a tiny subset: no metric rather than a crash
            log.warning("%s: no %s NC metrics at step %d (%s)", member.name, split, step, e)
            continue
        out.update({f"{split}_{k}": v for k, v in metrics.items() if k != "n_samples"})
    model.train(was)
    return out


def predict(cfg: RunCfg, members: list[Member]) -> Prediction:
    """Theory curves per sweep point (UFM simulation, deep linear mode prediction) and the member map.

    Also stores in every ``member.state["nc"]`` the class-space modes u_a (C, r) of its point's twin and ``n_eval``
    for :func:`observe`. Members of one point (both losses, controls) share one theory member ``theory:<point>``.

    Returns:
        Prediction with curves (theory rows on ``theory_points`` log-spaced steps, fractional steps allowed) and
        numbers: ``members`` (name -> role, loss, control, theory label, wd, init scale, time factor, ``optim.*``
        overrides), ``points`` (label -> s, u0, depth, predicted half-rise tau per mode, UFM limit and rate),
        ``tau_total``.
    """
    kn = knobs(cfg)
    steps = cfg.train.steps
    groups: dict[str, list[Member]] = {}
    for m in members:
        groups.setdefault(theory_label(m.point), []).append(m)
    frames, points, member_map = [], {}, {}
    for label, group in groups.items():
        real = next(m for m in group if m.role == "real" and "control" not in m.point)
        twin = next((m for m in group if m.role == "twin" and "control" not in m.point), None)
        over = _optim_overrides(real.point)
        optim = member_optim(cfg.optim, over)
        wd = float(optim.weight_decay)
        factor = time_factor("mse", real.task.meta["out_dim"])
        grid = np.unique(np.concatenate([[0.0], np.geomspace(1.0, steps, int(kn["theory_points"]))]))
        tau = effective_time(grid, optim, steps, factor)
        modes_info = deep_linear_modes(twin or real, tau, kn)
        modes = torch.as_tensor(modes_info.pop("u_modes"))
        ufm_rows, ufm_info = ufm_curves(real, tau, wd, kn, modes)
        name = f"theory:{label}" if label else "theory"
        frame = ufm_rows.assign(member=name, step=grid[ufm_rows["grid"].to_numpy()])
        frame["time"] = optim.lr * frame["step"]
        pred_modes = modes_info.pop("curve")  # (T, r) normalised predicted rise of ||M u_a|| at tau
        extra = [
            {"member": name, "step": s, "time": optim.lr * s, "metric": f"pred_mode_{a + 1}", "value": v}
            for s, row in zip(grid, pred_modes, strict=True)
            for a, v in enumerate(row)
        ]
        frames += [frame[["member", "step", "time", "metric", "value"]], pd.DataFrame(extra)]
        init_scale = _point_value(cfg, real.point, "model.init_scale", default=1.0)
        points[label] = {**modes_info, **ufm_info, "wd": wd, "init_scale": init_scale, "optim": over}
        for m in group:
            m.state["nc"] = {"modes": modes, "n_eval": int(kn["n_eval"])}
            loss = m.point.get("train.loss", cfg.train.loss)
            member_map[m.name] = {
                "role": m.role,
                "loss": loss,
                "control": m.point.get("control"),
                "theory": name,
                "point": label,
                "wd": wd,
                "init_scale": _point_value(cfg, m.point, "model.init_scale", default=1.0),
                "factor": time_factor(loss, m.task.meta["out_dim"]),
                "optim": _optim_overrides(m.point),
            }
    numbers = {
        "members": member_map,
        "points": points,
        "tau_total": float(effective_time(steps, cfg.optim, steps)),
        "domain": "UFM and deep linear theory assume MSE; cross-entropy rows are outside their exact domain",
    }
    return Prediction(curves=pd.concat(frames, ignore_index=True), numbers=numbers)


def train(cfg: RunCfg, ctx: Context) -> tuple[pd.DataFrame, Prediction]:
    """Build the pairs once, copy them per loss (+ controls), predict once, then train each loss's members together.

    Every loss starts from the same initial weights and sees the same batch order (a fresh ``streams(seed)`` each).
    """
    from comparisons.engine.sweep import build_members, point_label

    kn = knobs(cfg)
    losses = list(kn["losses"])
    base = build_members(_with_loss(cfg, losses[0]), ctx)  # models at init
    per_loss: dict[str, list[Member]] = {}
    for i, loss in enumerate(losses):
        members = []
        for m in base:
            point = {"train.loss": loss, **m.point}
            model = m.model if i == len(losses) - 1 else copy.deepcopy(m.model)  # the last loss takes the originals
            members.append(
                Member(
                    name=f"{m.role}:{point_label(point)}",
                    role=m.role,
                    model=model,
                    task=m.task,
                    point=point,
                    optim=m.optim,
                )
            )
        if i == 0 and kn["controls"]:
            members += _controls(members, cfg)
        per_loss[loss] = members
    prediction = predict(cfg, [m for ms in per_loss.values() for m in ms])
    rows: list[dict[str, Any]] = []
    for i, (loss, members) in enumerate(per_loss.items()):
        lcfg = _with_loss(cfg, loss)
        lctx = dataclasses.replace(ctx, cfg=lcfg, streams=streams(cfg.seed))
        ckpt = ctx.run_dir / ("checkpoint.pt" if i == 0 else f"checkpoint_{loss}.pt")
        log.info("neural_collapse: training %d members with loss=%s", len(members), loss)
        rows += train_members(members, lctx, observe, checkpoint=ckpt)
    return pd.DataFrame(rows, columns=["member", "step", "time", "metric", "value"]), prediction


def theory_label(point: dict[str, Any]) -> str:
    """The sweep point of a member without its loss and control keys (the label its theory member carries)."""
    from comparisons.engine.sweep import point_label

    return point_label({k: v for k, v in point.items() if k not in CONTROL_POINT_KEYS})


def _controls(members: list[Member], cfg: RunCfg) -> list[Member]:
    """Negative controls at the first sweep point: random training labels (real), permuted class means (twin).

    The shuffled-label net keeps its true test labels. The permuted-means twin sees x - mu_y + mu_pi(y) for a cyclic
    shift pi of the classes (train means mu; test inputs are moved with the same map, so its test accuracy is not
    meaningful; its score is the mode order on the training set).
    """
    from comparisons.engine.sweep import point_label

    gen = streams(cfg.seed)["noise"]
    first = members[0].point
    out = []
    real = next(m for m in members if m.role == "real" and m.point == first)
    task = real.task
    perm = torch.randperm(len(task.labels_train), generator=gen).to(task.labels_train.device)
    shuffled = dataclasses.replace(
        task,
        labels_train=task.labels_train[perm],
        y_train=task.y_train[perm],
        meta={**task.meta, "control": "random_labels"},
    )
    point = {**first, "control": "random_labels"}
    out.append(
        Member(
            name=f"real:{point_label(point)}",
            role="real",
            model=copy.deepcopy(real.model),
            task=shuffled,
            point=point,
            optim=real.optim,
        )
    )
    twin = next((m for m in members if m.role == "twin" and m.point == first), None)
    if twin is not None:
        c = int(twin.task.meta["num_classes"])
        shift = torch.randperm(c - 1, generator=gen)
        derangement = (torch.arange(c) + 1 + shift[0]) % c  # a cyclic shift: no class keeps its mean
        wt = twin.task
        x = wt.x_train.reshape(len(wt.x_train), -1)
        means = torch.stack([x[wt.labels_train == k].mean(0) for k in range(c)])  # (C, d)

        def moved(xs: torch.Tensor, ls: torch.Tensor) -> torch.Tensor:  # x - mu_y + mu_pi(y), shape kept
            flat = xs.reshape(len(xs), -1)
            return (flat - means[ls] + means[derangement.to(ls.device)[ls]]).reshape(xs.shape)

        permuted = dataclasses.replace(
            wt,
            x_train=moved(wt.x_train, wt.labels_train),
            x_test=moved(wt.x_test, wt.labels_test),
            meta={**wt.meta, "control": "permuted_means"},
        )
        point = {**first, "control": "permuted_means"}
        out.append(
            Member(
                name=f"twin:{point_label(point)}",
                role="twin",
                model=copy.deepcopy(twin.model),
                task=permuted,
                point=point,
                optim=twin.optim,
            )
        )
    return out


def _optim_overrides(point: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in point.items() if k.startswith("optim.")}


def _with_loss(cfg: RunCfg, loss: str) -> RunCfg:
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, loss=loss))


def _point_value(cfg: RunCfg, point: dict[str, Any], key: str, default: Any = None) -> Any:
    if key in point:
        return point[key]
    node: Any = cfg
    for part in key.split("."):
        node = node.get(part, default) if isinstance(node, dict) else getattr(node, part, default)
    return default if node is None else node


PHENOMENON = Phenomenon(
    name="neural_collapse",
    observe=observe,
    predict=predict,
    score=score,
    figures=figures,
    train=train,
    ceiling=ceiling,
)
