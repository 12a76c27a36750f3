"""Vectorised training: the K members of a sweep that share an architecture train as one batched model.

DESIGN.md "Scale". Members whose networks have the same shapes (same architecture, any seed, init scale, per-layer
scales, output scale, target scale, learning rate or weight decay) are stacked along a leading member axis K and
trained in lockstep:

- ``deep_models.mlp.MLP`` members are hand-batched: the first layer of K members on a shared input is one GEMM
  (x (B, d) times the K stacked weights, (d, K h)), every later layer one ``baddbmm`` over the member axis.
- Any other model without BatchNorm or dropout goes through ``torch.func``: ``stack_module_state`` +
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

``sweep.vectorize``: ``auto`` (default) vectorises a run with a sweep grid whose members are batchable; ``true``
vectorises any batchable run, even a single pair; ``false`` always loops. Runs that cannot be batched (BatchNorm,
an unknown optimizer or schedule) fall back to the loop with one log line saying why.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from comparisons.config import OptimCfg, RunCfg
from comparisons.rundir import load_checkpoint, save_checkpoint
from comparisons.train import Context, Member, _progress, _restore, _snapshot, eval_steps, make_optimizer, time_factor
from deep_models.mlp import MLP

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")
_MLP_ACTS = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.GELU: "gelu", nn.Identity: "identity"}
_INIT_ONLY = ("init", "init_scale", "layer_scales", "linear_impl")  # attributes read only by reset_parameters
_STATEFUL = (nn.modules.batchnorm._BatchNorm, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


def use_vectorized(members: list[Member], cfg: RunCfg) -> bool:
    """Whether ``train_members`` should hand these members to :func:`train_vectorized` (``sweep.vectorize``)."""
    mode = str(cfg.sweep.vectorize).lower()
    if mode == "false" or not members:
        return False
    groups, why = plan(members, cfg)
    if groups is None:
        (log.warning if mode == "true" else log.info)("sweep.vectorize=%s: training in a loop (%s)", mode, why)
        return False
    return mode == "true" or (bool(cfg.sweep.grid) and max(len(g) for g in groups) >= 2)


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
        key = _mlp_key(m.model)
        if key is None:
            key = _func_key(m.model)
        if isinstance(key, str):
            return None, f"{m.name}: {key}"
        keys.setdefault((key, opt.name), []).append(i)
    return list(keys.values()), ""


def train_vectorized(
    members: list[Member],
    ctx: Context,
    observe: Callable[[Member, int], dict[str, float]] | None = None,
    checkpoint: Path | None = None,
) -> list[dict[str, Any]]:
    """``train.train_members`` for batchable members: same arguments, same rows, same checkpoints.

    Args:
        members: The members, models at init (see :func:`plan` for what batches).
        ctx: Run context; ``ctx.streams["data"]`` drives batch order and online sampling, as in the loop.
        observe: The phenomenon's metrics of one member at one eval step (weights are written back first).
        checkpoint: Where to checkpoint; an existing file there is resumed from (when ``cfg.resume``).

    Returns:
        Rows ``{"member", "step", "time", "metric", "value"}``, as ``train.train_members`` returns them.
    """
    cfg = ctx.cfg
    steps = cfg.train.steps
    grid = set(eval_steps(steps, cfg.train.eval_points, cfg.train.eval_grid))
    for m in members:
        m.optim = m.optim or cfg.optim
        m.optimizer, m.scheduler = make_optimizer(m.model, m.optim, steps)
    gen = ctx.streams["data"]
    rows: list[dict[str, Any]] = []
    start, order = 0, {}
    if checkpoint is not None and checkpoint.exists() and cfg.resume:
        start, rows, order = _restore(load_checkpoint(checkpoint), members, gen, ctx.streams, checkpoint)
        log.info("resumed from %s at step %d", checkpoint, start)
    elif checkpoint is not None and checkpoint.exists():
        checkpoint.unlink()
    groups = [_Group([members[i] for i in idx], cfg, steps) for idx in plan(members, cfg)[0]]
    where = {id(m): (g, k) for g in groups for k, m in enumerate(g.members)}
    log.info("vectorised training: %d members in %d batched group(s) of sizes %s", len(members), len(groups),
             [g.k for g in groups])
    bar = _progress(cfg, steps, start)
    for step in range(start, steps + 1):
        if step in grid and not (rows and step == start):
            latest = _eval_groups(members, where, step, cfg, observe, rows)
            if bar is not None:
                bar.set_postfix_str(latest, refresh=False)
        if step == steps:
            break
        every = cfg.train.checkpoint_every
        if checkpoint is not None and step > start and every and step % every == 0:
            save_checkpoint(checkpoint, _snapshot(step, _sync(members, where, step, cfg, rows), members, gen,
                                                  order, ctx.streams))
        batches = _draw_batches(members, cfg, gen, order)
        for g in groups:
            g.train_step(batches, step, cfg.train.loss)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    _sync(members, where, steps, cfg, rows)
    if checkpoint is not None:
        save_checkpoint(checkpoint, _snapshot(steps, rows, members, gen, order, ctx.streams))
    return rows


def batched_loss(name: str, out: torch.Tensor, y: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """``train.loss_fn`` of K members at once.

    Args:
        name: "mse" (1/(2B) sum ||f - y||^2, SCIENCE.md 2.2), "mse_mean" (torch's mean MSE) or "ce".
        out: Outputs, (K, B, c).
        y: Targets, (B, c) shared or (K, B, c).
        labels: Class labels, (B,) shared or (K, B); only for "ce".

    Returns:
        Per-member losses, (K,).
    """
    k, b, c = out.shape
    if name == "ce":
        lab = labels.expand(k, b) if labels.dim() == 1 else labels
        return F.cross_entropy(out.reshape(k * b, c), lab.reshape(-1), reduction="none").view(k, b).mean(1)
    if name == "mse_mean":
        return (out - y).pow(2).mean(dim=(1, 2))
    return 0.5 * (out - y).pow(2).sum(-1).mean(-1)


def _loss_and_grad(name: str, out: torch.Tensor, y: torch.Tensor,
                   labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`batched_loss` (K,) and its gradient with respect to ``out`` (K, B, c)."""
    k, b, c = out.shape
    if name == "ce":
        lab = (labels.expand(k, b) if labels.dim() == 1 else labels).unsqueeze(-1)
        logp = out.log_softmax(-1)
        losses = -logp.gather(-1, lab).squeeze(-1).mean(-1)
        g = logp.exp_().scatter_add_(-1, lab, torch.full_like(lab, -1, dtype=out.dtype)).div_(b)
        return losses, g
    r = out - y
    if name == "mse_mean":
        return r.pow(2).mean(dim=(1, 2)), r.mul_(2.0 / (b * c))
    return 0.5 * r.pow(2).sum(-1).mean(-1), r.div_(b)


class MLPStack:
    """K ``deep_models.mlp.MLP`` members of equal shapes as stacked weights (K, out, in) and biases (K, out).

    Forward: on a shared input x (B, d) the first layer is one GEMM against the (K h, d) stacked weights (its
    result viewed as (K, B, h) without a copy); every other layer is ``baddbmm`` over the member axis. Each
    member's ``output_scale`` multiplies its own outputs. ``params`` follow ``model.parameters()`` order.
    """

    def __init__(self, models: list[nn.Module]) -> None:
        """Stack the weights of ``models`` (all accepted by ``_mlp_key`` with one key)."""
        self.acts = _mlp_key(models[0])[1]
        layers = [m.linear_layers() for m in models]
        self.params: list[torch.Tensor] = []
        self.has_bias = layers[0][0].bias is not None
        for j in range(len(layers[0])):
            self.params.append(torch.stack([ls[j].weight.detach() for ls in layers]).requires_grad_())
            if self.has_bias:
                self.params.append(torch.stack([ls[j].bias.detach() for ls in layers]).requires_grad_())
        scales = [float(m.output_scale) for m in models]
        p0 = self.params[0]
        self.out_scale: float | torch.Tensor = (scales[0] if len(set(scales)) == 1 else
                                                torch.tensor(scales, dtype=p0.dtype, device=p0.device).view(-1, 1, 1))

    def __call__(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        """Outputs (K, B, c) for inputs (B, *input_shape) shared by all members, or (K, B, *input_shape)."""
        step = 2 if self.has_bias else 1
        ws = self.params[::step]
        bs = self.params[1::2] if self.has_bias else [None] * len(ws)
        for j, (w, b) in enumerate(zip(ws, bs, strict=True)):
            z = self._layer(j, x, w, b, shared)
            x = _act(self.acts[j], z) if j < len(self.acts) else z
        return x * self.out_scale

    @torch.no_grad()
    def loss_and_grads(self, x: torch.Tensor, shared: bool, y: torch.Tensor, labels: torch.Tensor | None,
                       loss: str) -> torch.Tensor:
        """Per-member training losses (K,), with every stacked parameter's ``.grad`` set by a hand-written backward.

        The backward is the chain rule of :meth:`__call__` in batched matmuls: for layer l with input a and output
        gradient g (K, B, out), dW = g^T a, db = sum_B g, and the input gradient g W times the activation's
        derivative (ReLU/tanh from the stored output, GELU from the stored input). Activations are applied in place
        and nothing else is kept, so a step makes fewer passes over the (K, B, width) activations than autograd.
        """
        step = 2 if self.has_bias else 1
        ws = self.params[::step]
        bs = self.params[1::2] if self.has_bias else [None] * len(ws)
        k = ws[0].shape[0]
        inputs, saved = [], []
        a = x
        for j, (w, b) in enumerate(zip(ws, bs, strict=True)):
            inputs.append(a)
            z = self._layer(j, a, w, b, shared)
            if j == len(ws) - 1:
                a = z
            elif self.acts[j].startswith("gelu"):
                saved.append(z)
                a = F.gelu(z, approximate=self.acts[j].partition(":")[2] or "none")
            else:
                a = z.relu_() if self.acts[j] == "relu" else z.tanh_() if self.acts[j] == "tanh" else z
                saved.append(a)
        out = a if isinstance(self.out_scale, float) and self.out_scale == 1.0 else a * self.out_scale
        losses, g = _loss_and_grad(loss, out, y, labels)
        if not (isinstance(self.out_scale, float) and self.out_scale == 1.0):
            g = g * self.out_scale
        for j in range(len(ws) - 1, -1, -1):
            a_in = inputs[j]
            if j == 0:
                a_in = a_in.reshape(a_in.shape[0], -1).expand(k, -1, -1) if shared else a_in.reshape(k, a_in.shape[1], -1)
            ws[j].grad = torch.bmm(g.transpose(1, 2), a_in)  # (K, out, in)
            if bs[j] is not None:
                bs[j].grad = g.sum(1)
            if j > 0:
                g = torch.bmm(g, ws[j])  # (K, B, in)
                act, keep = self.acts[j - 1], saved[j - 1]
                if act == "relu":
                    g = torch.ops.aten.threshold_backward(g, keep, 0)
                elif act == "tanh":
                    g = torch.ops.aten.tanh_backward(g, keep)
                elif act.startswith("gelu"):
                    g = torch.ops.aten.gelu_backward(g, keep, approximate=act.partition(":")[2] or "none")
        return losses

    def _layer(self, j: int, a: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, shared: bool) -> torch.Tensor:
        """Layer j's pre-activation (K, B, out) from its input (shared (B, ...) for j = 0, else (K, B, in))."""
        k = w.shape[0]
        if j == 0 and shared:
            a = a.reshape(a.shape[0], -1)
            h = w.shape[1]
            z = F.linear(a, w.reshape(k * h, -1), None if b is None else b.reshape(k * h))  # (B, K h): one GEMM
            return z.view(a.shape[0], k, h).transpose(0, 1)  # (K, B, h), a view
        if j == 0:
            a = a.reshape(k, a.shape[1], -1)
        return torch.bmm(a, w.transpose(1, 2)) if b is None else torch.baddbmm(b.unsqueeze(1), a, w.transpose(1, 2))

    def write_back(self, models: list[nn.Module]) -> None:
        """Copy member k's slice of every stacked tensor into ``models[k]``."""
        with torch.no_grad():
            for k, m in enumerate(models):
                for p, s in zip(m.parameters(), self.params, strict=True):
                    p.copy_(s[k])


class FuncStack:
    """K members of any architecture without BatchNorm/dropout: ``torch.func.stack_module_state`` + ``vmap``."""

    def __init__(self, models: list[nn.Module]) -> None:
        """Stack the parameters of ``models`` (one ``_func_key``); buffers are taken from the first (all equal)."""
        from torch.func import functional_call, vmap

        self.names = [n for n, _ in models[0].named_parameters()]
        self.params = [torch.stack([dict(m.named_parameters())[n].detach() for m in models]).requires_grad_()
                       for n in self.names]
        base = copy.deepcopy(models[0])

        def one(params: tuple[torch.Tensor, ...], x: torch.Tensor) -> torch.Tensor:
            return functional_call(base, dict(zip(self.names, params, strict=True)), (x,))

        self._shared, self._own = vmap(one, in_dims=(0, None)), vmap(one, in_dims=(0, 0))

    def __call__(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        """Outputs (K, B, c) for inputs (B, ...) shared by all members, or (K, B, ...)."""
        return (self._shared if shared else self._own)(tuple(self.params), x)

    def write_back(self, models: list[nn.Module]) -> None:
        """Copy member k's slice of every stacked parameter into ``models[k]``."""
        with torch.no_grad():
            for k, m in enumerate(models):
                for p, s in zip(m.parameters(), self.params, strict=True):
                    p.copy_(s[k])


class BatchedOptimizer:
    """SGD (momentum, nesterov), Adam or AdamW over stacked parameters with per-member hyperparameters.

    The update of member k is ``torch.optim``'s single-tensor update with member k's lr, weight decay, momentum,
    betas and eps, and its lr schedule evaluated in closed form at the step (MultiStepLR: lr gamma^#milestones
    passed; CosineAnnealingLR with T_max = steps: lr (1 + cos(pi step / steps)) / 2). Hyperparameters shared by all
    members stay Python floats and run the very same calls as ``torch.optim``; differing ones become (K, 1, ...)
    tensors, computed in float64 on the host and rounded once to the parameter dtype, as torch rounds its scalars.
    """

    def __init__(self, cfgs: list[OptimCfg], params: list[torch.Tensor], steps: int) -> None:
        """Build the optimizer for ``params`` (each (K, ...)) and the K members' ``cfgs`` (one optimizer name)."""
        self.name, self.params, self.steps = cfgs[0].name, params, steps
        f64 = lambda key: np.array([float(getattr(c, key)) for c in cfgs])  # noqa: E731
        self.lr, self.wd, self.mom, self.eps = f64("lr"), f64("weight_decay"), f64("momentum"), f64("eps")
        self.b1 = np.array([float(c.betas[0]) for c in cfgs])
        self.b2 = np.array([float(c.betas[1]) for c in cfgs])
        self.nesterov = np.array([bool(c.nesterov) for c in cfgs])
        self.gamma = f64("gamma")
        self.kinds = [c.schedule for c in cfgs]
        self.marks = [sorted({max(1, int(round(m * steps))) for m in c.milestones}) for c in cfgs]
        self.state: list[dict[str, torch.Tensor]] = [{} for _ in params]

    def lr_at(self, step: int) -> np.ndarray:
        """Each member's learning rate at training step ``step`` (0-based), float64 (K,)."""
        lr = self.lr.copy()
        for k, kind in enumerate(self.kinds):
            if kind == "step":
                lr[k] *= self.gamma[k] ** sum(step >= m for m in self.marks[k])
            elif kind == "cosine":
                lr[k] *= (1 + math.cos(math.pi * min(step, self.steps) / self.steps)) / 2
        return lr

    @torch.no_grad()
    def step(self, step: int) -> None:
        """Apply the update of training step ``step`` (0-based) to every parameter, then drop the gradients."""
        lr = self.lr_at(step)
        for p, st in zip(self.params, self.state, strict=True):
            g, p.grad = p.grad, None
            if self.name == "sgd":
                self._sgd(p, g, st, lr)
            else:
                self._adam(p, g, st, lr, step + 1)

    def _sgd(self, p: torch.Tensor, g: torch.Tensor, st: dict, lr: np.ndarray) -> None:
        if self.wd.any():
            g = _axpy(g, p, self._hp(self.wd, p))
        if self.mom.any():
            if "momentum_buffer" not in st:
                st["momentum_buffer"] = g.detach().clone()
            else:
                mom = self._hp(self.mom, p)
                st["momentum_buffer"].mul_(mom).add_(g)
            buf = st["momentum_buffer"]
            if self.nesterov.all():
                g = _axpy(g, buf, self._hp(self.mom, p))
            elif self.nesterov.any():
                g = torch.where(self._hp(self.nesterov, p, force=True), _axpy(g, buf, self._hp(self.mom, p)), buf)
            else:
                g = buf
        _axpy_(p, g, self._hp(-lr, p))

    def _adam(self, p: torch.Tensor, g: torch.Tensor, st: dict, lr: np.ndarray, t: int) -> None:
        if not st:
            st["exp_avg"], st["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
        if self.wd.any():
            if self.name == "adamw":
                p.mul_(self._hp(1 - lr * self.wd, p))
            else:
                g = _axpy(g, p, self._hp(self.wd, p))
        m, v = st["exp_avg"], st["exp_avg_sq"]
        m.lerp_(g, self._hp(1 - self.b1, p))
        v.mul_(self._hp(self.b2, p))
        one_minus_b2 = self._hp(1 - self.b2, p)
        if isinstance(one_minus_b2, float):
            v.addcmul_(g, g, value=one_minus_b2)
        else:
            v.addcmul_(g * one_minus_b2, g)  # (s g) g: torch's order for value * t1 * t2
        bc1, bc2 = 1 - self.b1**t, 1 - self.b2**t
        denom = (v.sqrt() / self._hp(bc2**0.5, p)).add_(self._hp(self.eps, p))
        neg_step = self._hp(-(lr / bc1), p)
        if isinstance(neg_step, float):
            p.addcdiv_(m, denom, value=neg_step)
        else:
            p.addcdiv_(m * neg_step, denom)  # (s m) / d: torch's order for value * t1 / t2

    def _hp(self, arr: np.ndarray, like: torch.Tensor, force: bool = False) -> float | torch.Tensor:
        """A per-member hyperparameter: a Python float when all members agree, else a (K, 1, ...) tensor."""
        if not force and np.all(arr == arr[0]):
            return float(arr[0])
        dtype = torch.bool if arr.dtype == bool else like.dtype
        return torch.as_tensor(arr, dtype=dtype, device=like.device).view(-1, *([1] * (like.dim() - 1)))

    def export(self, k: int, opt: torch.optim.Optimizer, step: int) -> None:
        """Write member k's state into its ``torch.optim`` optimizer (the checkpoint format of the loop trainer)."""
        ps = [q for grp in opt.param_groups for q in grp["params"]]
        for q, st in zip(ps, self.state, strict=True):
            if self.name == "sgd":
                opt.state[q] = {"momentum_buffer": st["momentum_buffer"][k].clone() if st else None}
            elif st:
                opt.state[q] = {"step": torch.tensor(float(step)), "exp_avg": st["exp_avg"][k].clone(),
                                "exp_avg_sq": st["exp_avg_sq"][k].clone()}
        for grp in opt.param_groups:
            grp["lr"] = float(self.lr_at(step)[k])

    def load(self, opts: list[torch.optim.Optimizer]) -> None:
        """Stack the members' ``torch.optim`` states (after a resume); empty states stay empty."""
        per = [[opt.state.get(q, {}) for grp in opt.param_groups for q in grp["params"]] for opt in opts]
        for j, st in enumerate(self.state):
            keys = [key for key in ("momentum_buffer", "exp_avg", "exp_avg_sq")
                    if all(per[k][j].get(key) is not None for k in range(len(opts)))]
            for key in keys:
                st[key] = torch.stack([per[k][j][key] for k in range(len(opts))]).to(self.params[j])


class _Group:
    """One batched group: the members, their stacked model and optimizer, their data layout and divergence."""

    def __init__(self, members: list[Member], cfg: RunCfg, steps: int) -> None:
        self.members, self.k = members, len(members)
        models = [m.model for m in members]
        self.model = MLPStack(models) if _mlp_key(models[0]) is not None else FuncStack(models)
        self.optim = BatchedOptimizer([m.optim for m in members], self.model.params, steps)
        self.optim.load([m.optimizer for m in members])
        tasks = [m.task for m in members]
        self.tasks = tasks
        self.x_shared = all(t is tasks[0] for t in tasks) or (
            not any(t.online for t in tasks) and all(_same(t.x_train, tasks[0].x_train) for t in tasks))
        dev = self.model.params[0].device
        self.bad_step = torch.full((self.k,), -1, dtype=torch.long, device=dev)  # first non-finite training loss
        cap = cfg.train.eval_max_samples
        self.eval_sets = {s: _stack([(getattr(t, f"x_{s}")[:cap], getattr(t, f"y_{s}")[:cap],
                                      _head(getattr(t, f"labels_{s}"), cap)) for t in tasks], by_value=True)
                          for s in ("train", "test") if len(getattr(tasks[0], f"x_{s}"))}
        self.width = max(p.shape[-2] if p.dim() > 1 else p.shape[-1] for p in self.model.params)

    def train_step(self, batches: dict[int, tuple], step: int, loss: str) -> None:
        """One optimizer step of all members; divergence is recorded on the device (no host sync)."""
        x, y, labels, shared = _stack([batches[id(t)] for t in self.tasks], x_shared=self.x_shared)
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
        are "all weights finite" and the first diverged training step (-1: none)."""
        names, cols = [], []
        for split, (x, y, labels, shared) in self.eval_sets.items():
            f = self._forward_chunked(x, shared)
            names.append(f"{split}_loss")
            cols.append(batched_loss(loss, f, y, labels))
            if labels is not None:
                names.append(f"{split}_acc")
                cols.append((f.argmax(-1) == labels).to(f.dtype).mean(-1))
        finite = torch.stack([torch.isfinite(p).flatten(1).all(1) for p in self.model.params]).all(0)
        return names, torch.stack([*cols, finite.to(cols[0].dtype), self.bad_step.to(cols[0].dtype)], 1)

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


def _eval_groups(members: list[Member], where: dict, step: int, cfg: RunCfg, observe,
                 rows: list[dict[str, Any]]) -> str:
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
        if not (vals[k][-2] and all(math.isfinite(v) for v in metrics.values())):
            m.diverged_at = step
            log.warning("member %s diverged (NaN/inf) at step %d; it stops, the others go on", m.name, step)
            metrics = {"diverged": float(step)}
        elif observe is not None:
            metrics.update(observe(m, step))
        t = time_factor(cfg.train.loss, m.task.meta["out_dim"]) * m.optim.lr * step
        rows.extend({"member": m.name, "step": step, "time": t, "metric": key, "value": float(v)}
                    for key, v in metrics.items())
        if m.role == "real" and not latest:
            latest = " ".join(f"{key}={v:.3g}" for key, v in metrics.items() if key in ("train_loss", "test_acc"))
    return latest


def _record_divergence(members: list[Member], bad: dict[int, list[float]], where: dict, cfg: RunCfg,
                       rows: list[dict[str, Any]]) -> None:
    """Members whose training loss went non-finite since the last sync stop at that step (the loop's rows).

    Args:
        bad: Group id -> each member's first non-finite training step (-1: none), as read at this sync.
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


def _sync(members: list[Member], where: dict, step: int, cfg: RunCfg,
          rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
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


def _draw_batches(members: list[Member], cfg: RunCfg, gen: torch.Generator, order: dict[int, list]) -> dict:
    """This step's batch of every task, drawn exactly as ``train._train_step`` draws it (same stream, same order)."""
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


def _mlp_key(model: nn.Module) -> tuple | None:
    """Shapes, activations, dtype and device of an ``MLP`` the hand-batched path handles, else None."""
    if type(model) is not MLP or not all(p.requires_grad for p in model.parameters()):
        return None
    feats = list(model.features)
    if not feats or not isinstance(feats[0], nn.Flatten) or len(feats) % 2 != 1:
        return None
    acts = []
    for lin, act in zip(feats[1::2], feats[2::2], strict=True):
        if type(lin) is not nn.Linear or type(act) not in _MLP_ACTS:
            return None
        acts.append(_MLP_ACTS[type(act)] + (f":{act.approximate}" if isinstance(act, nn.GELU) else ""))
    layers = model.linear_layers()
    if len({lyr.bias is None for lyr in layers}) != 1:
        return None
    shapes = tuple((lyr.in_features, lyr.out_features, lyr.bias is not None) for lyr in layers)
    p = layers[0].weight
    return "mlp", tuple(acts), shapes, p.dtype, str(p.device)


def _func_key(model: nn.Module) -> tuple | str:
    """Structure, attributes, shapes and buffers of a model for the ``torch.func`` path, or why it cannot batch."""
    parts: list[Any] = []
    for name, mod in model.named_modules():
        if isinstance(mod, _STATEFUL):
            return f"{name} ({type(mod).__name__}) keeps running state or draws noise; it trains in a loop"
        attrs = sorted((k, repr(v)) for k, v in vars(mod).items() if not k.startswith("_") and k != "training"
                       and k not in _INIT_ONLY and isinstance(v, int | float | str | bool | tuple | list | None))
        parts.append((name, type(mod).__qualname__, tuple(attrs)))
    params = tuple((n, tuple(p.shape), p.dtype, str(p.device), p.requires_grad) for n, p in model.named_parameters())
    if not all(p[-1] for p in params):
        return "frozen parameters are not batched; it trains in a loop"
    buffers = tuple((n, tuple(b.shape), b.dtype, b.cpu().numpy().tobytes()) for n, b in model.named_buffers())
    return "func", tuple(parts), params, buffers


def _act(name: str, z: torch.Tensor) -> torch.Tensor:
    if name.startswith("gelu"):
        return F.gelu(z, approximate=name.partition(":")[2] or "none")
    return z.relu() if name == "relu" else z.tanh() if name == "tanh" else z


def _axpy(g: torch.Tensor, p: torch.Tensor, a: float | torch.Tensor) -> torch.Tensor:
    """g + a p, a a scalar or a per-member tensor (torch's ``g.add(p, alpha=a)``)."""
    return g.add(p, alpha=a) if isinstance(a, float) else torch.addcmul(g, p, a)


def _axpy_(p: torch.Tensor, g: torch.Tensor, a: float | torch.Tensor) -> None:
    """In place p += a g (torch's ``p.add_(g, alpha=a)``)."""
    if isinstance(a, float):
        p.add_(g, alpha=a)
    else:
        p.addcmul_(g, a)


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
