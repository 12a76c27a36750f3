"""The matched-pair trainer: K members (real and twin, per sweep point) on the same data order, with eval and resume.

Every member gets the same optimizer settings, the same minibatch indices at every step (one ``data`` stream), and
is evaluated on a shared step grid that includes step 0 (DESIGN.md "Data flow of one run"). Curves come out as the
long table of the run dir (member, step, time, metric, value). Continuous time is t = lr * step for the suite's loss
(SCIENCE.md 2.1, 2.2); with ``train.loss=mse_mean`` it is t = (2/c) * lr * step.

Checkpoints hold the models, optimizers, schedulers, RNG states, the step, the curves so far and each member's
``state``; a resumed run on CPU produces bit-identical curves (DESIGN.md "Failure model").
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from comparisons.config import OptimCfg, RunCfg
from comparisons.rundir import RunDirError, load_checkpoint, save_checkpoint
from tasks import Task

log = logging.getLogger(__name__)


@dataclass
class Member:
    """One trained network of a run: the real net or its twin, at one sweep point."""

    name: str  # "real" / "twin", or "real:<point>" / "twin:<point>"
    role: str  # "real" | "twin"
    model: nn.Module
    task: Task
    point: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)  # observe()'s scratch (step-0 NTK, init weights); checkpointed
    optim: OptimCfg | None = None  # this member's optimizer settings (its sweep point's); None -> the run's
    optimizer: torch.optim.Optimizer | None = None
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    diverged_at: int | None = None


@dataclass
class Context:
    """What a run needs besides its config: device, dtype, seeded streams and its folder."""

    cfg: RunCfg
    device: torch.device
    dtype: torch.dtype
    run_dir: Path
    streams: dict[str, torch.Generator] = field(default_factory=dict)


def streams(seed: int, names: tuple[str, ...] = ("init", "data", "task", "noise")) -> dict[str, torch.Generator]:
    """Independent named generators spawned from one seed (STYLE.md "Randomness")."""
    kids = np.random.SeedSequence(seed).spawn(len(names))
    return {n: torch.Generator().manual_seed(int(k.generate_state(1)[0])) for n, k in zip(names, kids, strict=True)}


def eval_steps(steps: int, n: int, grid: str = "log") -> list[int]:
    """The eval grid: ``n`` log- (or linearly) spaced steps in [0, steps], always including 0 and ``steps``."""
    if grid == "linear":
        pts = np.linspace(0, steps, n)
    else:
        pts = np.concatenate([[0], np.geomspace(1, steps, max(n - 1, 1))])
    return sorted({int(round(p)) for p in pts} | {0, steps})


def time_factor(loss: str, out_dim: int) -> float:
    """t = factor * lr * step (SCIENCE.md 2.2): torch's mean MSE runs the suite's flow at 2/c the speed."""
    return 2.0 / out_dim if loss == "mse_mean" else 1.0


def loss_fn(name: str, out: torch.Tensor, y: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """The training loss: "mse" = 1/(2N) sum_n ||f - y||^2 (SCIENCE.md 2.2), "mse_mean" = torch mean MSE, "ce"."""
    if name == "ce":
        return F.cross_entropy(out, labels)
    if name == "mse_mean":
        return F.mse_loss(out, y)
    return 0.5 * (out - y).pow(2).sum(dim=-1).mean()


def make_optimizer(model: nn.Module, cfg: OptimCfg, steps: int):
    """Optimizer and lr scheduler from ``cfg.optim`` (SGD with momentum, Adam, AdamW; constant/step/cosine)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.name == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                              weight_decay=cfg.weight_decay)
    elif cfg.name == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cfg.schedule == "step":
        marks = sorted({max(1, int(round(m * steps))) for m in cfg.milestones})
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=marks, gamma=cfg.gamma)
    elif cfg.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    else:
        sched = None
    return opt, sched


@torch.no_grad()
def evaluate(member: Member, loss: str, max_samples: int) -> dict[str, float]:
    """Default metrics: train/test loss (the training loss function) and, for classification, accuracy."""
    model, task = member.model, member.task
    was_training = model.training
    model.eval()
    out: dict[str, float] = {}
    for split in ("train", "test"):
        x = getattr(task, f"x_{split}")[:max_samples]
        y = getattr(task, f"y_{split}")[:max_samples]
        labels = getattr(task, f"labels_{split}")
        labels = labels[:max_samples] if labels is not None else None
        if len(x) == 0:
            continue
        f = _batched_forward(model, x)
        out[f"{split}_loss"] = float(loss_fn(loss, f, y, labels))
        if labels is not None:
            out[f"{split}_acc"] = float((f.argmax(dim=-1) == labels).float().mean())
    model.train(was_training)
    return out


def train_members(
    members: list[Member],
    ctx: Context,
    observe: Callable[[Member, int], dict[str, float]] | None = None,
    checkpoint: Path | None = None,
) -> list[dict[str, Any]]:
    """Train all members on one shared data order; return the long-table rows of their curves.

    Args:
        members: The members, models at init. Their optimizers are created here.
        ctx: Run context (config, streams; ``ctx.streams["data"]`` drives batch order and online sampling).
        observe: The phenomenon's metrics of one member at one eval step.
        checkpoint: Where to checkpoint; an existing file there is resumed from (when ``cfg.resume``).

    Returns:
        Rows ``{"member", "step", "time", "metric", "value"}``. A member whose loss or weights become NaN/inf stops
        alone and gets a ``diverged`` row whose value is the step.
    """
    from comparisons import vectorized  # lazy: vectorized imports this module

    if vectorized.use_vectorized(members, ctx.cfg):  # sweep.vectorize: K same-shape members as one batched model
        return vectorized.train_vectorized(members, ctx, observe, checkpoint)
    cfg = ctx.cfg
    steps = cfg.train.steps
    grid = eval_steps(steps, cfg.train.eval_points, cfg.train.eval_grid)
    gen = ctx.streams["data"]
    start, rows, order = start_training(members, ctx, checkpoint)
    bar = _progress(cfg, steps, start)
    for step in range(start, steps + 1):
        if step in grid and not (rows and step == start):  # a resumed run has already evaluated its first step
            latest = _eval_all(members, step, ctx, observe, rows)
            if bar is not None:
                bar.set_postfix_str(latest, refresh=False)
        if step == steps:
            break
        every = cfg.train.checkpoint_every
        if checkpoint is not None and step > start and every and step % every == 0:
            save_checkpoint(checkpoint, _snapshot(step, rows, members, gen, order, ctx.streams))
        _train_step(members, cfg, gen, order, step, rows)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if checkpoint is not None:
        save_checkpoint(checkpoint, _snapshot(steps, rows, members, gen, order, ctx.streams))
    return rows


def start_training(members: list[Member], ctx: Context, checkpoint: Path | None) -> tuple[int, list, dict]:
    """Create every member's optimizer, then resume from ``checkpoint`` (when ``cfg.resume``) or delete it.

    Shared by the loop and the vectorised trainer, whose checkpoints have one format.

    Returns:
        (first step, the curve rows so far, the minibatch order state).
    """
    cfg = ctx.cfg
    for m in members:
        m.optim = m.optim or cfg.optim
        m.optimizer, m.scheduler = make_optimizer(m.model, m.optim, cfg.train.steps)
    if checkpoint is not None and checkpoint.exists() and cfg.resume:
        start, rows, order = _restore(load_checkpoint(checkpoint), members, ctx.streams["data"], ctx.streams,
                                      checkpoint)
        log.info("resumed from %s at step %d", checkpoint, start)
        return start, rows, order
    if checkpoint is not None and checkpoint.exists():
        checkpoint.unlink()
    return 0, [], {}


def _train_step(members: list[Member], cfg: RunCfg, gen: torch.Generator, order: dict[int, list], step: int,
                rows: list[dict[str, Any]]) -> None:
    """One optimizer step of every live member on the same batch.

    Minibatches come from one permutation per training-set size (``order[n] = [perm, cursor]``), drawn from the
    shared data stream, so members on equal-size data see the same indices; online tasks draw once per task.
    Batches are drawn for diverged members too, so the data order of the others never depends on who diverged.
    A member whose loss is NaN/inf stops here, before the update, with a ``diverged`` row at ``step``.
    """
    alive = [m for m in members if m.diverged_at is None]
    batches = draw_batches(members, cfg, gen, order)
    for m in alive:
        x, y, labels = batches[id(m.task)]
        m.optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(cfg.train.loss, m.model(x), y, labels)
        if not bool(torch.isfinite(loss)):  # one host sync per step; keeps NaN/inf out of the weights
            m.diverged_at = step
            log.warning("member %s diverged (loss %s) at step %d; it stops, the others go on", m.name,
                        float(loss.detach()), step)
            t = time_factor(cfg.train.loss, m.task.meta["out_dim"]) * m.optim.lr * step
            rows.append({"member": m.name, "step": step, "time": t, "metric": "diverged", "value": float(step)})
            continue
        loss.backward()
        m.optimizer.step()
        if m.scheduler is not None:
            m.scheduler.step()


def draw_batches(members: list[Member], cfg: RunCfg, gen: torch.Generator, order: dict[int, list]) -> dict:
    """This step's batch of every member's task, shared by the loop and the vectorised trainer (same stream, same
    order): one permutation per training-set size (``order[n] = [perm, cursor]``), one online draw per task."""
    bs = cfg.train.batch_size
    batches: dict[int, tuple] = {}
    idx_by_n: dict[int, torch.Tensor] = {}
    for m in members:
        task = m.task
        if id(task) in batches:
            continue
        if task.online:
            batches[id(task)] = task.sample(bs or 1024, gen)
            continue
        n = len(task.x_train)
        if bs is None or bs >= n:
            batches[id(task)] = (task.x_train, task.y_train, task.labels_train)
            continue
        if n not in idx_by_n:
            perm, cursor = order.get(n, (None, n))
            if perm is None or cursor + bs > n:  # a new epoch
                perm, cursor = torch.randperm(n, generator=gen), 0
            idx_by_n[n] = perm[cursor : cursor + bs]
            order[n] = [perm, cursor + bs]
        idx = idx_by_n[n].to(task.x_train.device)
        labels = None if task.labels_train is None else task.labels_train[idx]
        batches[id(task)] = (task.x_train[idx], task.y_train[idx], labels)
    return batches


def _eval_all(members, step, ctx, observe, rows) -> str:
    cfg = ctx.cfg
    latest = ""
    for m in members:
        if m.diverged_at is not None:
            continue
        metrics = evaluate(m, cfg.train.loss, cfg.train.eval_max_samples)
        finite = all(math.isfinite(v) for v in metrics.values()) and all(
            bool(torch.isfinite(p).all()) for p in m.model.parameters()
        )
        if not finite:
            m.diverged_at = step
            log.warning("member %s diverged (NaN/inf) at step %d; it stops, the others go on", m.name, step)
            metrics = {"diverged": float(step)}
        elif observe is not None:
            metrics.update(observe(m, step))
        t = time_factor(cfg.train.loss, m.task.meta["out_dim"]) * m.optim.lr * step
        rows.extend({"member": m.name, "step": step, "time": t, "metric": k, "value": float(v)}
                    for k, v in metrics.items())
        if m.role == "real" and not latest:
            latest = " ".join(f"{k}={v:.3g}" for k, v in metrics.items() if k in ("train_loss", "test_acc"))
    return latest


def _snapshot(step, rows, members, gen, order, named_streams=None) -> dict[str, Any]:
    return {
        "step": step,
        "rows": list(rows),
        "data_rng": gen.get_state(),
        "streams": {k: g.get_state() for k, g in (named_streams or {}).items()},
        "torch_rng": torch.get_rng_state(),  # the global CPU stream (dropout), for bit-identical resume
        "order": order,
        "members": {
            m.name: {
                "model": m.model.state_dict(),
                "optimizer": m.optimizer.state_dict(),
                "scheduler": None if m.scheduler is None else m.scheduler.state_dict(),
                "state": m.state,
                "diverged_at": m.diverged_at,
            }
            for m in members
        },
    }


def _restore(ckpt: dict[str, Any], members: list[Member], gen: torch.Generator,
             named_streams: dict[str, torch.Generator] | None = None, path: Path | None = None):
    """Load a snapshot into ``members`` and the streams; one that does not fit this run is refused, never
    silently restarted over (DESIGN.md "Failure model")."""
    fix = "delete it to restart that run, or set resume=false"
    try:
        saved = ckpt["members"]
        if set(saved) != {m.name for m in members}:
            raise RunDirError(f"checkpoint {path} holds members {sorted(saved)}, not this run's "
                              f"{sorted(m.name for m in members)}; {fix}")
        for m in members:
            s = saved[m.name]
            m.model.load_state_dict(s["model"])
            m.optimizer.load_state_dict(s["optimizer"])
            if m.scheduler is not None and s["scheduler"] is not None:
                m.scheduler.load_state_dict(s["scheduler"])
            m.state = s["state"]
            m.diverged_at = s["diverged_at"]
        gen.set_state(ckpt["data_rng"])
        for k, state in ckpt.get("streams", {}).items():
            if named_streams is not None and k in named_streams and named_streams[k] is not gen:
                named_streams[k].set_state(state)
        if "torch_rng" in ckpt:
            torch.set_rng_state(ckpt["torch_rng"])
        return ckpt["step"], list(ckpt["rows"]), ckpt["order"]
    except RunDirError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        first = (str(e).strip().splitlines() or [""])[0][:100]
        raise RunDirError(f"checkpoint {path} does not fit this run ({type(e).__name__}: {first}); {fix}") from None


def _batched_forward(model: nn.Module, x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    return torch.cat([model(x[i : i + chunk]) for i in range(0, len(x), chunk)])


def _progress(cfg: RunCfg, steps: int, start: int):
    mode = cfg.train.progress
    if mode == "off" or (mode == "auto" and not sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=steps, initial=start, desc=cfg.name or "train", leave=False, dynamic_ncols=True)
