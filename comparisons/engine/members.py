"""What every trainer shares: the member and its context, random streams, the eval grid, the loss, optimizers,
batches, and snapshot/restore for checkpoints."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from comparisons.engine.config import ConfigError, OptimCfg, RunCfg
from comparisons.engine.rundir import RunDirError, load_checkpoint
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
    on_eval: Any = None  # called with (step, the rows measured at that step): the live W&B tracker


def streams(seed: int, names: tuple[str, ...] = ("init", "data", "task", "noise")) -> dict[str, torch.Generator]:
    """Independent named generators spawned from one seed (docs/design.md "Randomness")."""
    kids = np.random.SeedSequence(seed).spawn(len(names))
    return {n: torch.Generator().manual_seed(int(k.generate_state(1)[0])) for n, k in zip(names, kids, strict=True)}


def eval_steps(steps: int, n: int, grid: str = "log") -> list[int]:
    """The eval grid: ``n`` log- (or linearly) spaced steps in [0, steps], always including 0 and ``steps``."""
    if grid == "linear":  # noqa: SIM108 - two readable branches
        pts = np.linspace(0, steps, n)
    else:
        pts = np.concatenate([[0], np.geomspace(1, steps, max(n - 1, 1))])
    return sorted({int(round(p)) for p in pts} | {0, steps})


def time_factor(loss: str, out_dim: int) -> float:
    """t = factor * lr * step (docs/theory.md 2.2): torch's mean MSE runs the suite's flow at 2/c the speed."""
    return 2.0 / out_dim if loss == "mse_mean" else 1.0


def loss_fn(name: str, out: torch.Tensor, y: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """The training loss: "mse" = 1/(2N) sum_n ||f - y||^2 (docs/theory.md 2.2), "mse_mean" = torch mean MSE, "ce"."""
    if name == "ce":
        return F.cross_entropy(out, labels)
    if name == "mse_mean":
        return F.mse_loss(out, y)
    return 0.5 * (out - y).pow(2).sum(dim=-1).mean()


def make_optimizer(model: nn.Module, cfg: OptimCfg, steps: int):
    """Optimizer and lr scheduler from ``cfg.optim`` (SGD with momentum, Adam, AdamW; constant/step/cosine)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.name == "sgd":
        opt = torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    else:  # optim.fused: torch's fused kernel (one pass over memory per tensor; same formula, other rounding)
        adam = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
        kw = {"fused": True} if cfg.fused else {}
        opt = adam(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay, **kw)
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
        start, rows, order = _restore(
            load_checkpoint(checkpoint), members, ctx.streams["data"], ctx.streams, checkpoint
        )
        log.info("resumed from %s at step %d", checkpoint, start)
        return start, rows, order
    if checkpoint is not None and checkpoint.exists():
        checkpoint.unlink()
    return 0, [], {}


def draw_batches(members: list[Member], cfg: RunCfg, gen: torch.Generator, order: dict[int, list]) -> dict:
    """This step's batch of every member's task, shared by the loop and the vectorised trainer (same stream, same
    order): one permutation per training-set size (``order[n] = [perm, cursor]``), one online draw per task.
    """
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
                "state": _safe(m.state),
                "diverged_at": m.diverged_at,
            }
            for m in members
        },
    }


def _restore(
    ckpt: dict[str, Any],
    members: list[Member],
    gen: torch.Generator,
    named_streams: dict[str, torch.Generator] | None = None,
    path: Path | None = None,
):
    """Load a snapshot into ``members`` and the streams; one that does not fit this run is refused, never
    silently restarted over (docs/design.md "Failure model").
    """
    fix = "delete it to restart that run, or set resume=false"
    try:
        saved = ckpt["members"]
        if set(saved) != {m.name for m in members}:
            raise RunDirError(
                f"checkpoint {path} holds members {sorted(saved)}, not this run's "
                f"{sorted(m.name for m in members)}; {fix}"
            )
        for m in members:
            s = saved[m.name]
            m.model.load_state_dict(s["model"])
            m.optimizer.load_state_dict(s["optimizer"])
            if m.scheduler is not None and s["scheduler"] is not None:
                m.scheduler.load_state_dict(s["scheduler"])
            m.state = _unsafe(s["state"])
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


def _safe(obj: Any) -> Any:
    """``obj`` in the types ``torch.load(weights_only=True)`` reads back: numpy arrays and scalars become tagged
    tensors (:func:`_unsafe` turns them back), so a phenomenon's ``member.state`` survives a checkpoint exactly.

    Raises:
        TypeError: A value that cannot be stored as data (a module, a function, a generator).
    """
    if isinstance(obj, np.ndarray | np.generic):
        arr = np.asarray(obj)
        if arr.dtype == object:
            raise TypeError("member.state cannot hold an object array in a checkpoint")
        return {_NP: torch.from_numpy(arr.copy()), "scalar": isinstance(obj, np.generic)}
    if isinstance(obj, dict):
        return {k: _safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_safe(v) for v in obj]
    if isinstance(obj, tuple) and not isinstance(obj, torch.Size):
        return tuple(_safe(v) for v in obj)
    if isinstance(obj, set | frozenset):
        return {_safe(v) for v in obj}
    if obj is None or isinstance(obj, bool | int | float | str | bytes | torch.Tensor | torch.Size):
        return obj
    raise TypeError(f"member.state holds a {type(obj).__name__}, which a checkpoint cannot store as data")


def _unsafe(obj: Any) -> Any:
    if isinstance(obj, dict):
        if _NP in obj:
            arr = obj[_NP].numpy()
            return arr[()] if obj["scalar"] else arr
        return {k: _unsafe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unsafe(v) for v in obj]
    if isinstance(obj, tuple) and not isinstance(obj, torch.Size):
        return tuple(_unsafe(v) for v in obj)
    return obj


_NP = "__numpy__"  # the tag of a numpy value stored as a tensor in a checkpoint


def _batched_forward(model: nn.Module, x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    return torch.cat([model(x[i : i + chunk]) for i in range(0, len(x), chunk)])


class LogProgress:
    """Progress outside a terminal (SLURM, nohup): one log line every ``every_s`` seconds with the step, the latest
    metrics and the ETA; the same three methods as the tqdm bar it stands in for."""

    def __init__(self, name: str, total: int, initial: int, every_s: float = 30.0) -> None:
        self.name, self.total, self.n, self.every_s = name, total, initial, every_s
        self.t0 = self.last = time.monotonic()
        self.n0 = initial
        self.latest = ""

    def set_postfix_str(self, text: str, refresh: bool = False) -> None:
        """Remember the latest metrics for the next line."""
        self.latest = text

    def update(self, n: int = 1) -> None:
        """Count ``n`` steps; log a line when ``every_s`` seconds have passed since the last one."""
        self.n += n
        now = time.monotonic()
        if now - self.last < self.every_s:
            return
        self.last = now
        rate = (self.n - self.n0) / max(now - self.t0, 1e-9)
        eta = (self.total - self.n) / rate if rate > 0 else float("nan")
        log.info(
            "%s: step %d/%d (%.0f%%) %s ETA %s",
            self.name,
            self.n,
            self.total,
            100.0 * self.n / max(self.total, 1),
            self.latest,
            f"{int(eta // 60)}:{int(eta % 60):02d}" if eta == eta else "?",
        )

    def close(self) -> None:
        """Nothing to release."""


def record_eval(
    m: Member,
    step: int,
    metrics: dict[str, float],
    finite: bool,
    observe: Any,
    cfg: RunCfg,
    rows: list[dict[str, Any]],
) -> str:
    """Record one member's eval at ``step`` (both trainers): a member whose metrics or weights are not finite stops
    here with a ``diverged`` row; otherwise the phenomenon's ``observe`` adds its metrics. Returns the progress text
    ("train_loss=... test_acc=...") of a real member, else "".
    """
    if not finite:
        m.diverged_at = step
        log.warning("member %s diverged (NaN/inf) at step %d; it stops, the others go on", m.name, step)
        metrics = {"diverged": float(step)}
    elif observe is not None:
        metrics.update(observe(m, step))
    t = time_factor(cfg.train.loss, m.task.meta["out_dim"]) * m.optim.lr * step
    rows.extend({"member": m.name, "step": step, "time": t, "metric": k, "value": float(v)} for k, v in metrics.items())
    if m.role != "real":
        return ""
    return " ".join(f"{k}={v:.3g}" for k, v in metrics.items() if k in ("train_loss", "test_acc"))


def _progress(cfg: RunCfg, steps: int, start: int):
    """A tqdm bar on a terminal, :class:`LogProgress` elsewhere (``train.progress=auto``), or nothing (``off``)."""
    mode = cfg.train.progress
    if mode == "off":
        return None
    if mode == "auto" and not sys.stderr.isatty():
        return LogProgress(cfg.name or "train", steps, start)
    from tqdm import tqdm

    return tqdm(total=steps, initial=start, desc=cfg.name or "train", leave=False, dynamic_ncols=True)


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU (resolved once, then passed down).

    On CUDA, TF32 is switched off for matmuls and cuDNN convolutions (cuDNN's default is on): the runs are compared
    against float64 closed forms (docs/design.md "Device and dtype"), and TF32's 10-bit mantissa would blur them.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device} but CUDA is not available here; use device=auto or device=cpu")
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return torch.device(device)
