"""Batched models and optimizer of the vectorised trainer: K same-shape networks as stacked tensors.

docs/design.md "Scale"; used by :mod:`comparisons.engine.vectorized`. Every tensor carries the member axis K first.

- :class:`MLPStack`: ``deep_models.mlp.MLP`` members hand-batched (one GEMM for the first layer on a shared input,
  ``baddbmm`` for the others) with a hand-written backward.
- :class:`FuncStack`: any other architecture without BatchNorm/dropout through ``torch.func``
  (``stack_module_state``-style stacking + ``vmap(functional_call)``), autograd for the backward.
- :class:`BatchedOptimizer`: SGD/Adam/AdamW over stacked parameters with exact per-member hyperparameters.
- :func:`batched_loss`: ``train.loss_fn`` of K members at once.

Members never mix: member k's outputs and gradients depend on member k's weights and data only.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from comparisons.engine.config import OptimCfg
from deep_models.mlp import MLP, conv1x1_linear

MLP_ACTS = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.GELU: "gelu", nn.Identity: "identity"}
INIT_ONLY = ("init", "init_scale", "layer_scales", "linear_impl")  # attributes read only by reset_parameters
STATEFUL = (nn.modules.batchnorm._BatchNorm, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


def batched_loss(name: str, out: torch.Tensor, y: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """``train.loss_fn`` of K members at once.

    Args:
        name: "mse" (1/(2B) sum ||f - y||^2, docs/theory.md 2.2), "mse_mean" (torch's mean MSE) or "ce".
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


def _loss_and_grad(
    name: str, out: torch.Tensor, y: torch.Tensor, labels: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
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
        self.acts = mlp_key(models[0])[1]
        self.conv1x1 = getattr(models[0], "linear_impl", "default") == "conv1x1"  # deep_models.mlp's fast path
        layers = [m.linear_layers() for m in models]
        self.params: list[torch.Tensor] = []
        self.has_bias = layers[0][0].bias is not None
        for j in range(len(layers[0])):
            self.params.append(torch.stack([ls[j].weight.detach() for ls in layers]).requires_grad_())
            if self.has_bias:
                self.params.append(torch.stack([ls[j].bias.detach() for ls in layers]).requires_grad_())
        scales = [float(m.output_scale) for m in models]
        p0 = self.params[0]
        self.out_scale: float | torch.Tensor = (
            scales[0]
            if len(set(scales)) == 1
            else torch.tensor(scales, dtype=p0.dtype, device=p0.device).view(-1, 1, 1)
        )

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
    def loss_and_grads(
        self, x: torch.Tensor, shared: bool, y: torch.Tensor, labels: torch.Tensor | None, loss: str
    ) -> torch.Tensor:
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
            if j == 0 and shared and ws[0].shape[-1] >= 128:  # wide shared input: one (K out, B) x (B, in) GEMM
                bsz = g.shape[1]
                ws[0].grad = torch.mm(g.transpose(0, 1).reshape(bsz, -1).t(), a_in.reshape(bsz, -1)).view(ws[0].shape)
            else:
                if j == 0 and shared:
                    a_in = a_in.reshape(a_in.shape[0], -1).expand(k, -1, -1)
                elif j == 0:
                    a_in = a_in.reshape(k, a_in.shape[1], -1)
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
            lin = conv1x1_linear if self.conv1x1 else F.linear
            z = lin(a, w.reshape(k * h, -1), None if b is None else b.reshape(k * h))  # (B, K h): one GEMM
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
        self.params = [
            torch.stack([dict(m.named_parameters())[n].detach() for m in models]).requires_grad_() for n in self.names
        ]
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
        self.fused = bool(cfgs[0].fused)  # one value per group (vectorized.plan keys on it)
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
        if self.fused:
            self._fused_adam(lr, step + 1)
            return
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

    def _fused_adam(self, lr: np.ndarray, t: int) -> None:
        """``optim.fused``: torch's fused Adam/AdamW kernel, the one ``torch.optim.Adam(fused=True)`` runs, on member
        k's slice of every parameter with member k's hyperparameters. One call per member (not per run of equal
        members): the kernel's vector/tail split then falls as in a solo run, so each member is bit-identical to it."""
        grads = [p.grad for p in self.params]
        for p, st in zip(self.params, self.state, strict=True):
            p.grad = None
            if not st:
                st["exp_avg"], st["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
        kernel = torch._fused_adamw_ if self.name == "adamw" else torch._fused_adam_
        steps = [torch.tensor(float(t), device=p.device) for p in self.params]
        for k in range(len(lr)):
            kernel(
                [p[k] for p in self.params],
                [g[k] for g in grads],
                [st["exp_avg"][k] for st in self.state],
                [st["exp_avg_sq"][k] for st in self.state],
                [],
                steps,
                lr=float(lr[k]),
                beta1=float(self.b1[k]),
                beta2=float(self.b2[k]),
                weight_decay=float(self.wd[k]),
                eps=float(self.eps[k]),
                amsgrad=False,
                maximize=False,
            )

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
                opt.state[q] = {
                    "step": torch.tensor(float(step)),
                    "exp_avg": st["exp_avg"][k].clone(),
                    "exp_avg_sq": st["exp_avg_sq"][k].clone(),
                }
        for grp in opt.param_groups:
            grp["lr"] = float(self.lr_at(step)[k])

    def load(self, opts: list[torch.optim.Optimizer]) -> None:
        """Stack the members' ``torch.optim`` states (after a resume); empty states stay empty."""
        per = [[opt.state.get(q, {}) for grp in opt.param_groups for q in grp["params"]] for opt in opts]
        for j, st in enumerate(self.state):
            keys = [
                key
                for key in ("momentum_buffer", "exp_avg", "exp_avg_sq")
                if all(per[k][j].get(key) is not None for k in range(len(opts)))
            ]
            for key in keys:
                st[key] = torch.stack([per[k][j][key] for k in range(len(opts))]).to(self.params[j])


def mlp_key(model: nn.Module) -> tuple | None:
    """Shapes, activations, dtype and device of an ``MLP`` the hand-batched path handles, else None."""
    if type(model) is not MLP or not all(p.requires_grad for p in model.parameters()):
        return None
    feats = list(model.features)
    if not feats or not isinstance(feats[0], nn.Flatten) or len(feats) % 2 != 1:
        return None
    acts = []
    for lin, act in zip(feats[1::2], feats[2::2], strict=True):
        if type(lin) is not nn.Linear or type(act) not in MLP_ACTS:
            return None
        acts.append(MLP_ACTS[type(act)] + (f":{act.approximate}" if isinstance(act, nn.GELU) else ""))
    layers = model.linear_layers()
    if len({lyr.bias is None for lyr in layers}) != 1:
        return None
    shapes = tuple((lyr.in_features, lyr.out_features, lyr.bias is not None) for lyr in layers)
    p = layers[0].weight
    return "mlp", tuple(acts), shapes, p.dtype, str(p.device)


def func_key(model: nn.Module) -> tuple | str:
    """Structure, attributes, shapes and buffers of a model for the ``torch.func`` path, or why it cannot batch."""
    parts: list[Any] = []
    for name, mod in model.named_modules():
        if isinstance(mod, STATEFUL):
            return f"{name} ({type(mod).__name__}) keeps running state or draws noise; it trains in a loop"
        attrs = sorted(
            (k, repr(v))
            for k, v in vars(mod).items()
            if not k.startswith("_")
            and k != "training"
            and k not in INIT_ONLY
            and isinstance(v, int | float | str | bool | tuple | list | None)
        )
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
