"""Vectorised training: the K members of a sweep that share an architecture train as one batched model.

docs/design.md "Scale". Members whose networks have the same shapes (same architecture, any seed, init scale, per-layer
scales, output scale, target scale, learning rate or weight decay) are stacked along a leading member axis K and
trained in lockstep (the batched models and optimizer live in :mod:`comparisons.engine.batched`):

- ``deep_models.mlp.MLP`` members are hand-batched: the first layer of K members on a shared input is one GEMM
  (x (B, d) times the K stacked weights, (d, K h)), every later layer one ``baddbmm`` over the member axis, with a
  hand-written backward.
- Any other model without BatchNorm or dropout goes through ``torch.func``: stacked parameters +
  ``vmap(functional_call)``.
- The optimizer step is batched too, with per-member hyperparameters applied exactly: lr, weight decay,
  momentum, betas, eps and the lr schedule of each member's own ``optim`` config, in the same elementwise formulas
  as ``torch.optim``'s single-tensor SGD, Adam and AdamW (equal hyperparameters use the very same calls).

Each member's curves equal its solo run to float tolerance (tests/comparisons/test_vectorized.py): the batches are
drawn exactly as in ``train._train_step`` (one shared data stream), the losses are the same, and the members of
one batched product never mix (member k's outputs and gradients depend on member k's weights only), so a member
that diverges to NaN/inf cannot touch the others.

There is no host sync in a training step: divergence is tracked on the device (the first step with a non-finite
loss, per member) and read at eval steps, where all metrics of a group come back in one transfer. Checkpoints use
the loop trainer's format (each member's model and ``torch.optim`` state), so either trainer resumes the other's.

``sweep.vectorize``: ``auto`` (default) vectorises a run in which some batchable group holds members of two or more
sweep points (``sweep.grid``, ``sweep.grid.seed=[...]``, or a phenomenon's named points); ``true`` vectorises any
batchable run, even a single pair; ``false`` always loops. Runs that cannot be batched (BatchNorm,
an unknown optimizer or schedule) fall back to the loop with one log line saying why.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import math
import sys
from collections.abc import Callable
from typing import Any

import torch

from comparisons.engine.batched import BatchedOptimizer, FuncStack, MLPStack, batched_loss, func_key, mlp_key
from comparisons.engine.config import RunCfg
from comparisons.engine.members import (
    Context,
    Member,
    draw_batches,
    record_eval,
    time_factor,
)

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")


def use_vectorized(members: list[Member], cfg: RunCfg) -> bool:
    """Whether ``train_members`` should train these members as batched groups (:func:`plug`; ``sweep.vectorize``)."""
    mode = str(cfg.sweep.vectorize).lower()
    if mode == "false" or not members:
        return False
    groups, why = plan(members, cfg)
    if groups is None:
        (log.warning if mode == "true" else log.info)("sweep.vectorize=%s: training in a loop (%s)", mode, why)
        return False
    points = [{json.dumps(members[i].point, sort_keys=True, default=str) for i in g} for g in groups]
    return mode == "true" or any(len(p) >= 2 for p in points)


def plan(members: list[Member], cfg: RunCfg) -> tuple[list[list[int]] | None, str]:
    """Split members into batchable groups (same architecture, activations, optimizer; any hyperparameters).

    Returns:
        (groups of member indices in order of first appearance, "") or (None, the reason the run cannot batch).
    """
    keys: dict[Any, list[int]] = {}
    for i, m in enumerate(members):
        opt = m.optim or cfg.optim
        if opt.name not in OPTIMIZERS or opt.schedule not in SCHEDULES:
            return None, f"{m.name}: optimizer {opt.name} with schedule {opt.schedule} has no batched step"
        key = mlp_key(m.model)
        if key is None:
            key = func_key(m.model)
        if isinstance(key, str):
            return None, f"{m.name}: {key}"
        keys.setdefault((key, opt.name, bool(opt.fused)), []).append(i)
    return list(keys.values()), ""


def plug(
    members: list[Member],
    ctx: Context,
    observe: Callable[[Member, int], dict[str, float]] | None,
    rows: list[dict[str, Any]],
    order: dict[int, list],
) -> tuple[Callable[[int], str], Callable[[int], None], Callable[[int], None]]:
    """The vectorised steps that plug into the one training loop (:func:`comparisons.engine.loop.train_members`).

    Same-shape members are trained as batched groups (see :func:`plan`); the loop sees three callables:

    Returns:
        ``evaluate(step)`` (rows of every member, weights written back first; returns the latest-metrics text),
        ``train_step(step)`` (one optimizer step of every group on the shared batch) and ``sync(step)`` (members
        brought up to date, divergence included, before a checkpoint and at the end).
    """
    cfg = ctx.cfg
    gen = ctx.streams["data"]
    _keep_freed_memory()
    groups = [_Group([members[i] for i in idx], cfg, cfg.train.steps) for idx in plan(members, cfg)[0]]
    where = {id(m): (g, k) for g in groups for k, m in enumerate(g.members)}
    log.info(
        "vectorised training: %d members in %d batched group(s) of sizes %s",
        len(members),
        len(groups),
        [g.k for g in groups],
    )

    def evaluate(step: int) -> str:
        return _eval_groups(members, where, step, cfg, observe, rows)

    def train_step(step: int) -> None:
        batches = draw_batches(members, cfg, gen, order)
        for g in groups:
            g.train_step(batches, step, cfg.train.loss)

    def sync(step: int) -> None:
        _sync(members, where, step, cfg, rows)

    return evaluate, train_step, sync


_MALLOC_SET = False


def _keep_freed_memory() -> None:
    """Let glibc's malloc keep freed blocks of up to 32 MiB in the heap instead of returning them to the OS.

    A batched step allocates and frees tensors of several MiB (gradients, activations, optimizer temporaries of
    K stacked members). Above glibc's default mmap threshold each one is a fresh ``mmap`` whose pages are zeroed by
    the kernel on first touch and unmapped on free: on the paper's MNIST preset (11 nets of 1.2M parameters) that was
    ~14M page faults in 1200 steps, and the batched Adam step ran twice as slow as with the memory kept. Numbers are
    unchanged (only where the memory comes from). Once per process, glibc only; a no-op elsewhere.
    """
    global _MALLOC_SET
    if _MALLOC_SET or not sys.platform.startswith("linux"):
        return
    _MALLOC_SET = True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: blocks below 32 MiB come from the heap
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD: keep up to 256 MiB of freed heap before trimming
    except (OSError, AttributeError):
        pass


class _Group:
    """One batched group: the members, their stacked model and optimizer, their data layout and divergence."""

    def __init__(self, members: list[Member], cfg: RunCfg, steps: int) -> None:
        self.members, self.k = members, len(members)
        models = [m.model for m in members]
        self.model = MLPStack(models) if mlp_key(models[0]) is not None else FuncStack(models)
        self.optim = BatchedOptimizer([m.optim for m in members], self.model.params, steps)
        self.optim.load([m.optimizer for m in members])
        tasks = [m.task for m in members]
        self.tasks = tasks
        self.x_shared = all(t is tasks[0] for t in tasks) or (
            not any(t.online for t in tasks) and all(_same(t.x_train, tasks[0].x_train) for t in tasks)
        )
        self._full: tuple | None = None  # the stacked full training set, when every member trains full-batch
        dev = self.model.params[0].device
        self.bad_step = torch.full((self.k,), -1, dtype=torch.long, device=dev)  # first non-finite training loss
        cap = cfg.train.eval_max_samples
        self.eval_sets = {
            s: _stack(
                [
                    (getattr(t, f"x_{s}")[:cap], getattr(t, f"y_{s}")[:cap], _head(getattr(t, f"labels_{s}"), cap))
                    for t in tasks
                ],
                by_value=True,
            )
            for s in ("train", "test")
            if len(getattr(tasks[0], f"x_{s}"))
        }
        self.width = max(p.shape[-2] if p.dim() > 1 else p.shape[-1] for p in self.model.params)

    def train_step(self, batches: dict[int, tuple], step: int, loss: str) -> None:
        """One optimizer step of all members; divergence is recorded on the device (no host sync)."""
        items = [batches[id(t)] for t in self.tasks]
        if all(it[1] is t.y_train for it, t in zip(items, self.tasks, strict=True)):  # full batch: stack once
            self._full = self._full or _stack(items, x_shared=self.x_shared)
            x, y, labels, shared = self._full
        else:
            x, y, labels, shared = _stack(items, x_shared=self.x_shared)
        if isinstance(self.model, MLPStack):
            losses = self.model.loss_and_grads(x, shared, y, labels, loss)  # hand-written batched backward
        else:
            losses = batched_loss(loss, self.model(x, shared), y, labels)  # (K,)
            losses.sum().backward()  # members never mix, so each gets its own gradient
        self.optim.step(step)
        new = ~torch.isfinite(losses.detach()) & (self.bad_step < 0)
        self.bad_step = torch.where(new, torch.full_like(self.bad_step, step), self.bad_step)

    @torch.no_grad()
    def metrics(self, loss: str) -> tuple[list[str], torch.Tensor]:
        """Default metrics of every member on the eval sets: names and a (K, M + 2) tensor whose last two columns
        are "all weights finite" and the first diverged training step (-1: none).
        """
        names, cols = [], []
        for split, (x, y, labels, shared) in self.eval_sets.items():
            f = self._forward_chunked(x, shared)
            names.append(f"{split}_loss")
            cols.append(batched_loss(loss, f, y, labels))
            if labels is not None:
                names.append(f"{split}_acc")
                cols.append((f.argmax(-1) == labels).to(f.dtype).mean(-1))
        finite = torch.stack([torch.isfinite(p).flatten(1).all(1) for p in self.model.params]).all(0)
        cols = [*cols, finite, self.bad_step]
        return names, torch.stack([c.to(torch.float64) for c in cols], 1)  # float64: steps stay exact

    def write_back(self) -> None:
        """Copy the stacked weights into the live members' own models (for observe, checkpoints and the end)."""
        live = [k for k, m in enumerate(self.members) if m.diverged_at is None]
        models = [self.members[k].model for k in live]
        if len(live) == self.k:
            self.model.write_back(models)
        else:
            with torch.no_grad():
                for k, m in zip(live, models, strict=True):
                    for p, s in zip(m.parameters(), self.model.params, strict=True):
                        p.copy_(s[k])

    def _forward_chunked(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        n = x.shape[0] if shared else x.shape[1]
        chunk = max(1, min(4096, (1 << 24) // (self.k * self.width)))  # <= 16M activations per layer
        parts = [self.model(x[i : i + chunk] if shared else x[:, i : i + chunk], shared) for i in range(0, n, chunk)]
        return torch.cat(parts, dim=1)


def _eval_groups(
    members: list[Member], where: dict, step: int, cfg: RunCfg, observe, rows: list[dict[str, Any]]
) -> str:
    """Eval every live member at ``step`` with one host transfer per group; rows in member order, like the loop."""
    results = {}
    for g in {id(g): g for g, _ in where.values()}.values():
        names, vals = g.metrics(cfg.train.loss)
        results[id(g)] = (names, vals.cpu().tolist())  # the one host sync of an eval step
        if observe is not None:
            g.write_back()
    _record_divergence(members, {i: [v[-1] for v in r[1]] for i, r in results.items()}, where, cfg, rows)
    latest = ""
    for m in members:
        if m.diverged_at is not None:
            continue
        g, k = where[id(m)]
        names, vals = results[id(g)]
        metrics = dict(zip(names, vals[k][: len(names)], strict=True))
        finite = bool(vals[k][-2]) and all(math.isfinite(v) for v in metrics.values())
        text = record_eval(m, step, metrics, finite, observe, cfg, rows)  # always: it writes the rows
        latest = latest or text
    return latest


def _record_divergence(
    members: list[Member], bad: dict[int, list[float]], where: dict, cfg: RunCfg, rows: list[dict[str, Any]]
) -> None:
    """Members whose training loss went non-finite since the last sync stop at that step (the loop's rows).

    Args:
        members: All members of the run.
        bad: id(group) -> each member's first non-finite training step (-1: none), as read at this sync.
        where: id(member) -> (its group, its index in the group).
        cfg: The run's config.
        rows: The curve rows written so far (a diverged member's rows stop at its step).
    """
    new = []
    for i, m in enumerate(members):
        g, k = where[id(m)]
        s = int(bad[id(g)][k])
        if m.diverged_at is None and s >= 0:
            new.append((s, i, m))
    for s, _, m in sorted(new, key=lambda e: e[:2]):
        m.diverged_at = s
        log.warning("member %s diverged (non-finite loss) at step %d; it stops, the others go on", m.name, s)
        t = time_factor(cfg.train.loss, m.task.meta["out_dim"]) * m.optim.lr * s
        rows.append({"member": m.name, "step": s, "time": t, "metric": "diverged", "value": float(s)})


def _sync(
    members: list[Member], where: dict, step: int, cfg: RunCfg, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Bring the members up to date for a checkpoint or the end: divergence, weights and optimizer states."""
    groups = list({id(g): g for g, _ in where.values()}.values())
    _record_divergence(members, {id(g): g.bad_step.tolist() for g in groups}, where, cfg, rows)
    for g in groups:
        g.write_back()
        for k, m in enumerate(g.members):
            g.optim.export(k, m.optimizer, step)
            if m.scheduler is not None:
                m.scheduler.last_epoch = step
                m.scheduler._last_lr = [grp["lr"] for grp in m.optimizer.param_groups]
    return rows


def _same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is b:
        return True
    if a is None or b is None:
        return False
    return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and bool(torch.equal(a, b))


def _stack(items: list[tuple], x_shared: bool | None = None, by_value: bool = False) -> tuple:
    """(x, y, labels, shared) of a group from one (x, y, labels) per member, each shared where all members agree.

    Per step only identity counts (``x_shared`` was settled by value once); eval sets are compared by value.
    """
    same = _same if by_value else (lambda a, b: a is b)
    xs, ys, ls = zip(*items, strict=True)
    shared = x_shared if x_shared is not None else all(same(x, xs[0]) for x in xs)
    x = xs[0] if shared else torch.stack(xs)
    y = ys[0] if all(same(v, ys[0]) for v in ys) else torch.stack(ys)
    lab = None if ls[0] is None else ls[0] if all(same(v, ls[0]) for v in ls) else torch.stack(ls)
    return x, y, lab, shared


def _head(t: torch.Tensor | None, n: int) -> torch.Tensor | None:
    return None if t is None else t[:n]
