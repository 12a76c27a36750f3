"""The one training loop: K members (real and twin, per sweep point) on the same data order, with eval and resume.

Member-by-member steps or the vectorised trainer's batched steps (:func:`comparisons.engine.vectorized.plug`) plug
into the same loop: the eval grid, checkpoints, progress, signals and the final snapshot are written once, here.

Every member gets the same optimizer settings, the same minibatch indices at every step (one ``data`` stream), and
is evaluated on a shared step grid that includes step 0 (docs/design.md "Data flow of one run"). Curves come out as the
long table of the run dir (member, step, time, metric, value). Continuous time is t = lr * step for the suite's loss
(docs/theory.md 2.1, 2.2); with ``train.loss=mse_mean`` it is t = (2/c) * lr * step.

Checkpoints hold the models, optimizers, schedulers, RNG states, the step, the curves so far and each member's
``state``; a resumed run on CPU produces bit-identical curves (docs/design.md "Failure model").
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from comparisons.engine import interrupt
from comparisons.engine.config import RunCfg
from comparisons.engine.members import (
    Context,
    Member,
    _progress,
    _snapshot,
    draw_batches,
    eval_steps,
    evaluate,
    loss_fn,
    record_eval,
    start_training,
    time_factor,
)
from comparisons.engine.rundir import save_checkpoint, snapshot_path

log = logging.getLogger(__name__)


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
    from comparisons.engine import vectorized

    cfg = ctx.cfg
    steps = cfg.train.steps
    grid = set(eval_steps(steps, cfg.train.eval_points, cfg.train.eval_grid))
    gen = ctx.streams["data"]
    start, rows, order = start_training(members, ctx, checkpoint)
    if vectorized.use_vectorized(members, cfg):  # sweep.vectorize: K same-shape members as one batched model
        evaluate, train_step, sync = vectorized.plug(members, ctx, observe, rows, order)
    else:  # member by member

        def evaluate(step: int) -> str:
            return _eval_all(members, step, ctx, observe, rows)

        def train_step(step: int) -> None:
            _train_step(members, cfg, gen, order, step, rows)

        def sync(step: int) -> None:
            pass

    def keep_weights(step: int) -> None:  # train.snapshot_every: every member's weights, for trajectory analyses
        every = cfg.train.snapshot_every
        if every and ctx.run_dir is not None and (step % every == 0 or step == steps):
            sync(step)
            weights = {m.name: {"model": m.model.state_dict()} for m in members}
            save_checkpoint(snapshot_path(ctx.run_dir, step), {"step": step, "members": weights})

    bar = _progress(cfg, steps, start)
    with interrupt.training():  # SIGTERM/SIGINT: finish this step, checkpoint, stop (comparisons.engine.interrupt)
        for step in range(start, steps + 1):
            if step in grid and not (rows and step == start):  # a resumed run has already evaluated its first step
                n_before = len(rows)
                latest = evaluate(step)
                if ctx.on_eval is not None:
                    ctx.on_eval(step, rows[n_before:])
                if bar is not None:
                    bar.set_postfix_str(latest, refresh=False)
            keep_weights(step)
            if step == steps:
                break
            every = cfg.train.checkpoint_every
            signum = interrupt.requested()
            if checkpoint is not None and (signum is not None or (step > start and every and step % every == 0)):
                sync(step)
                save_checkpoint(checkpoint, _snapshot(step, rows, members, gen, order, ctx.streams))
            if signum is not None:
                raise interrupt.Interrupted(signum, step)
            train_step(step)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        sync(steps)
        if checkpoint is not None:
            save_checkpoint(checkpoint, _snapshot(steps, rows, members, gen, order, ctx.streams))
        if interrupt.requested() is not None:
            raise interrupt.Interrupted(interrupt.requested(), steps)
    return rows


def _train_step(
    members: list[Member],
    cfg: RunCfg,
    gen: torch.Generator,
    order: dict[int, list],
    step: int,
    rows: list[dict[str, Any]],
) -> None:
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
            log.warning(
                "member %s diverged (loss %s) at step %d; it stops, the others go on",
                m.name,
                float(loss.detach()),
                step,
            )
            t = time_factor(cfg.train.loss, m.task.meta["out_dim"]) * m.optim.lr * step
            rows.append({"member": m.name, "step": step, "time": t, "metric": "diverged", "value": float(step)})
            continue
        loss.backward()
        m.optimizer.step()
        if m.scheduler is not None:
            m.scheduler.step()


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
        text = record_eval(m, step, metrics, finite, observe, cfg, rows)
        latest = latest or text
    return latest
