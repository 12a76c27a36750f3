"""Load a trained member of a finished run into a notebook: ``from comparisons.load import load``.

Example::

    from comparisons.load import load, members
    members("runs/smoke/<hash>")                       # ['real', 'twin']
    model, cfg, task = load("runs/smoke/<hash>", "real")   # trained nn.Module (eval mode), RunCfg, its data
    model(task.x_test[:8])
    snapshots("runs/smoke/<hash>")                     # [0, 100, 200, ...] with train.snapshot_every=100
    model, cfg, task = load("runs/smoke/<hash>", "real", step=100)  # the weights at step 100

The members are rebuilt from the run's own config.yaml (same initial weights, from the run's seed) and their final
weights are read from the run's last checkpoint (checkpoint.pt, written at the end of training), so nothing is
retrained. A run trained with ``train.snapshot_every=N`` also keeps every member's weights at every N-th step (and the
last) in ``snapshots/``; ``load(..., step=s)`` reads those. A run dir without a checkpoint (a grid that trains its own
members, like the Fig. 6 maps) is refused with one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from comparisons.engine import rundir
from comparisons.engine.config import RunCfg, validate
from comparisons.engine.members import Context, resolve_device, streams
from comparisons.engine.sweep import build_members


def _cfg(run_dir: Path) -> RunCfg:
    run = rundir.load_run(run_dir)
    return validate(OmegaConf.create(run.config))


def _checkpoint(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "checkpoint.pt"
    if not path.exists():
        raise rundir.RunDirError(
            f"{run_dir} has no checkpoint.pt: this run keeps no weights (e.g. the Fig. 6 grid); rerun it to train again"
        )
    return rundir.load_checkpoint(path)


def _weights(run_dir: Path, step: int | None) -> dict[str, Any]:
    if step is None:
        return _checkpoint(run_dir)
    path = rundir.snapshot_path(run_dir, step)
    if not path.exists():
        kept = snapshots(run_dir)
        have = f"snapshots at steps {kept[0]}..{kept[-1]} ({len(kept)})" if kept else "no snapshots"
        raise rundir.RunDirError(
            f"{run_dir} has no snapshot at step {step} ({have}); train with train.snapshot_every=N to keep them"
        )
    return rundir.load_checkpoint(path)


def snapshots(run_dir: str | Path) -> list[int]:
    """The steps at which the run kept every member's weights (``train.snapshot_every``), ascending."""
    folder = Path(run_dir) / "snapshots"
    steps = [int(p.stem.removeprefix("step_")) for p in folder.glob("step_*.pt")] if folder.is_dir() else []
    return sorted(steps)


def members(run_dir: str | Path) -> list[str]:
    """The names of the members whose final weights the run dir holds (e.g. ``real``, ``twin:lr=0.1``)."""
    return list(_checkpoint(Path(run_dir))["members"])


def load(
    run_dir: str | Path, member: str = "real", device: str = "cpu", step: int | None = None
) -> tuple[nn.Module, RunCfg, Any]:
    """The trained model of ``member`` (in eval mode), the run's config and the member's task (its data).

    Args:
        step: None for the final weights; a step from :func:`snapshots` for the weights kept at that step.

    Raises:
        RunDirError: No such run dir, no checkpoint or snapshot, or no such member (the line lists the members).
    """
    run_dir = Path(run_dir)
    cfg = _cfg(run_dir)
    ckpt = _weights(run_dir, step)
    if member not in ckpt["members"]:
        raise rundir.RunDirError(f"member {member!r} is not in {run_dir}; members: {', '.join(ckpt['members'])}")
    cfg.device = device
    ctx = Context(
        cfg=cfg,
        device=resolve_device(device),
        dtype=getattr(torch, cfg.dtype),
        run_dir=run_dir,
        streams=streams(cfg.seed),
    )
    built = {m.name: m for m in build_members(cfg, ctx)}
    if member not in built:
        raise rundir.RunDirError(
            f"member {member!r} was added by the phenomenon (a negative control), not built from the config; "
            f"load one of: {', '.join(built)}"
        )
    model = built[member].model
    model.load_state_dict(ckpt["members"][member]["model"])
    return model.eval(), cfg, built[member].task
