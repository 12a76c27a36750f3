"""``run(cfg)``: one run of one phenomenon, from a validated config to a complete run directory.

Data flow (DESIGN.md "Data flow of one run"): build the task and the matched pair (real network + its layerwise
linear twin, same initial weights) for every sweep point, ask the theory for its prediction at init, train all
members on one data order, score, write the run dir, draw the figures, and mark the run complete last.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import math
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import OmegaConf

import tasks
from comparisons import rundir
from comparisons.config import ConfigError, RunCfg, to_container, validate
from comparisons.phenomenon import Outcome, Prediction, get_phenomenon
from comparisons.train import Context, Member, streams, train_members
from deep_models import create_model, linear_twin, list_models

log = logging.getLogger(__name__)


def run(cfg: RunCfg) -> dict[str, Any]:
    """Run ``cfg`` to a complete run directory and return its summary.

    A complete run dir for the same config is not retrained (its summary is returned); an interrupted one resumes
    from its checkpoint when ``cfg.resume``. ``cfg.seeds`` runs one child run per seed and aggregates them.

    Raises:
        ConfigError: Bad input, found before any training starts.
    """
    if cfg.phenomenon["name"] == "suite":
        from comparisons.suite import run_suite

        return run_suite(cfg)
    if cfg.seeds:
        return _run_seeds(cfg)
    run_dir = resolve_run_dir(cfg)
    if rundir.is_complete(run_dir) and cfg.resume:
        log.info("%s is complete; not retraining (resume=false to overwrite)", run_dir)
        return rundir.load_run(run_dir).summary
    ctx = Context(cfg=cfg, device=resolve_device(cfg.device), dtype=getattr(torch, cfg.dtype), run_dir=run_dir,
                  streams=streams(cfg.seed))
    phen = get_phenomenon(cfg.phenomenon["name"])
    members = [] if phen.train is not None else build_members(cfg, ctx)
    _prepare_dir(run_dir, cfg)
    t0 = time.time()
    if phen.train is not None:
        observed, prediction = phen.train(cfg, ctx)
    else:
        prediction = phen.predict(cfg, members)
        rows = train_members(members, ctx, phen.observe, checkpoint=run_dir / "checkpoint.pt")
        observed = pd.DataFrame(rows, columns=rundir.CURVE_COLUMNS)
    curves = pd.concat([observed, prediction.curves], ignore_index=True)[rundir.CURVE_COLUMNS]
    outcome, omitted = score_with_divergence(phen, curves, prediction, cfg, members)
    summary = _summary(cfg, outcome, prediction, members, time.time() - t0)
    summary["omitted_scores"] = omitted
    return finish_run(run_dir, cfg, curves, summary)


def score_with_divergence(phen, curves: pd.DataFrame, prediction: Prediction, cfg: RunCfg,
                          members: list[Member]) -> tuple[Outcome, dict[str, str]]:
    """``phen.score``, minus the scores a diverged member makes meaningless, each with its reason.

    A score belongs to the members its name mentions ("real", "twin", a sweep point's label); a score that names
    neither voice compares against the real net, so it goes with the real one. A score that names no point label
    belongs to every point. Non-finite scores are omitted too. When a criterion loses its score the verdict is
    re-derived from the remaining criteria: disagree if one fails, else inconclusive (DESIGN.md "Failure model").

    Returns:
        The outcome with those scores removed, and ``{score: reason}`` for every omitted score.
    """
    diverged = [m for m in members if m.diverged_at is not None]
    try:
        outcome = phen.score(curves, prediction, cfg)
    except Exception as e:
        if not diverged:
            raise
        why = "; ".join(f"{m.name} diverged at step {m.diverged_at}" for m in diverged)
        return Outcome(scores={}, verdict="inconclusive", notes=[f"no scores: scoring failed after divergence "
                                                                 f"({type(e).__name__}); {why}"]), {"*": why}
    labels = {m.name.partition(":")[2] for m in members} - {""}
    omitted: dict[str, str] = {}
    for name, value in outcome.scores.items():
        for m in diverged:
            role, _, label = m.name.partition(":")
            same_point = not label or label in name or not any(lb in name for lb in labels)
            voiced = role in name or (role == "real" and "twin" not in name)
            if same_point and voiced:
                omitted[name] = f"{m.name} diverged at step {m.diverged_at} (NaN/inf loss or weights)"
                break
        else:
            if not _finite(value):
                omitted[name] = f"not finite ({value})"
    if not omitted:
        return outcome, omitted
    outcome.scores = {k: v for k, v in outcome.scores.items() if k not in omitted}
    if not outcome.scores or any(k in omitted for k in outcome.criteria):
        from comparisons.aggregate import OPS

        fails = any(k in outcome.scores and not OPS[op](outcome.scores[k], thr)
                    for k, (op, thr) in outcome.criteria.items())
        outcome.verdict = "disagree" if fails else "inconclusive"
    return outcome, omitted


def finish_run(run_dir: Path, cfg: RunCfg, curves: pd.DataFrame, summary: dict[str, Any]) -> dict[str, Any]:
    """Write curves, summary and figures, mirror to the tracker, then mark the run COMPLETE (last)."""
    from comparisons import tracking

    rundir.write_curves(run_dir / "curves.csv", curves)
    rundir.write_json(run_dir / "summary.json", summary)
    phen = get_phenomenon(cfg.phenomenon["name"]) if cfg.phenomenon["name"] != "suite" else None
    figures: list[Path] = []
    if phen is not None:
        figures = phen.figures(rundir.load_run(run_dir), run_dir / "figures")
    tracking.log_run(cfg, run_dir, figures)
    rundir.mark_complete(run_dir)
    log.info("run complete: %s", run_dir)
    return summary


def build_members(cfg: RunCfg, ctx: Context) -> list[Member]:
    """Real network + twin for every sweep point, sharing tasks (and so batches) where task configs agree."""
    task_cache: dict[str, tasks.Task] = {}
    members: list[Member] = []
    for point in sweep_points(cfg):
        pcfg = apply_point(cfg, point)
        label = point_label(point)
        task = _build_task(pcfg, ctx, task_cache)
        real = _build_model(pcfg, task, ctx)
        suffix = f":{label}" if label else ""
        members.append(Member(name=f"real{suffix}", role="real", model=real, task=task, point=point, optim=pcfg.optim))
        if pcfg.twin.enabled:
            twin_task = task
            if pcfg.twin.whiten:
                key = json.dumps(pcfg.task, sort_keys=True, default=str) + ":white"
                if key not in task_cache:
                    task_cache[key] = _task_call(tasks.whiten, task)
                twin_task = task_cache[key]
            members.append(Member(name=f"twin{suffix}", role="twin", model=linear_twin(real), task=twin_task,
                                  point=point, optim=pcfg.optim))
    return members


def sweep_points(cfg: RunCfg) -> list[dict[str, Any]]:
    """The product of ``sweep.grid`` (dotted key -> values) as a list of override dicts; ``[{}]`` when empty."""
    grid = cfg.sweep.grid
    if not grid:
        return [{}]
    keys = list(grid)
    return [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*(grid[k] for k in keys))]


def point_label(point: dict[str, Any]) -> str:
    """A short member suffix for a sweep point: ``init_scale=5,weight_decay=0.1``."""
    return ",".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in point.items())


def apply_point(cfg: RunCfg, point: dict[str, Any]) -> RunCfg:
    """``cfg`` with a sweep point's dotted overrides applied (and validated again)."""
    if not point:
        return cfg
    conf = OmegaConf.create(to_container(cfg))
    for key, value in point.items():
        if OmegaConf.select(conf, key, default="__missing__") == "__missing__" and key.split(".")[0] not in (
            "task", "model", "phenomenon"):
            raise ConfigError(f"sweep.grid.{key}: no such config key; use a dotted key such as optim.weight_decay")
        OmegaConf.update(conf, key, value, force_add=True)
    return validate(conf)


def resolve_run_dir(cfg: RunCfg) -> Path:
    """``paths.run_dir`` if set, else ``<runs_root>/<name>/<config hash>`` (so a rerun finds and resumes it)."""
    if cfg.paths.run_dir:
        return Path(cfg.paths.run_dir)
    name = cfg.name or cfg.phenomenon["name"]
    return Path(cfg.paths.runs_root) / name / rundir.config_hash(to_container(cfg))


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU (resolved once, then passed down).

    On CUDA, TF32 is switched off for matmuls and cuDNN convolutions (cuDNN's default is on): the runs are compared
    against float64 closed forms (STYLE.md "Device and dtype"), and TF32's 10-bit mantissa would blur them.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device} but CUDA is not available here; use device=auto or device=cpu")
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return torch.device(device)


def versions() -> dict[str, str]:
    import numpy
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": numpy.__version__, "lintwin": _lintwin_version()}


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _summary(cfg: RunCfg, outcome: Outcome, prediction: Prediction, members: list[Member], wall: float) -> dict:
    diverged = {m.name: m.diverged_at for m in members if m.diverged_at is not None}
    return {
        "phenomenon": cfg.phenomenon["name"],
        "name": cfg.name or cfg.phenomenon["name"],
        "status": "complete",
        "scores": outcome.scores,
        "verdict": outcome.verdict,
        "criteria": {k: list(v) for k, v in outcome.criteria.items()},
        "headline": outcome.headline,
        "negative_controls": outcome.negative_controls,
        "notes": outcome.notes + [f"{k} diverged at step {v}; its scores are omitted" for k, v in diverged.items()],
        "prediction": prediction.numbers,
        "diverged": diverged,
        "points": {point_label(p): p for p in sweep_points(cfg)} if cfg.sweep.grid else {},
        "seed": cfg.seed,
        "seeds": [cfg.seed],
        "git_commit": git_commit(),
        "versions": versions(),
        "wall_time_s": round(wall, 3),
    }


def _run_seeds(cfg: RunCfg) -> dict[str, Any]:
    from comparisons.aggregate import aggregate_runs

    parent = resolve_run_dir(cfg)
    child_dirs = []
    for seed in cfg.seeds or []:
        child = copy.deepcopy(cfg)
        child.seeds, child.seed = None, seed
        child.paths.run_dir = str(parent / f"seed_{seed}")
        run(child)
        child_dirs.append(Path(child.paths.run_dir))
    summary = aggregate_runs(child_dirs, parent)
    get_phenomenon(cfg.phenomenon["name"]).figures(rundir.load_run(parent), parent / "figures")  # seed bands
    return summary


def _prepare_dir(run_dir: Path, cfg: RunCfg) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / rundir.COMPLETE).unlink(missing_ok=True)  # resume=false over a finished run: not done until redone
        rundir.write_yaml(run_dir / "config.yaml", to_container(cfg))
    except OSError as e:
        raise ConfigError(f"cannot write the run dir {run_dir} ({e.strerror}); set paths.runs_root to a writable "
                          "folder") from None


def _build_task(cfg: RunCfg, ctx: Context, cache: dict[str, tasks.Task]) -> tasks.Task:
    spec = dict(cfg.task)
    if spec.get("data_root") is None and cfg.paths.data_root and "data_root" in tasks.task_keys(spec["name"]):
        spec["data_root"] = cfg.paths.data_root
    key = json.dumps(spec, sort_keys=True, default=str)
    if key not in cache:
        gen = streams(cfg.seed)["task"]  # identical per point: points differing only elsewhere share the data
        cache[key] = _task_call(tasks.build, spec, device=ctx.device, dtype=ctx.dtype, generator=gen)
    return cache[key]


def _task_call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except tasks.TaskError as e:
        raise ConfigError(str(e)) from None


def _build_model(cfg: RunCfg, task: tasks.Task, ctx: Context) -> torch.nn.Module:
    spec = dict(cfg.model)
    name = spec.pop("name")
    if name not in list_models():
        import difflib

        close = difflib.get_close_matches(name, list_models(), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(f"model.name: unknown model {name!r}; {hint}known: {', '.join(list_models())}")
    gen = streams(cfg.seed)["init"]  # identical per point: every point starts from the same base draw
    try:
        model = create_model(name, input_shape=tuple(task.meta["input_shape"]), out_dim=int(task.meta["out_dim"]),
                             generator=gen, **spec)
    except TypeError as e:
        msg = str(e)
        key = msg.split("'")[1] if "unexpected keyword argument" in msg and "'" in msg else None
        if key:
            raise ConfigError(f"model.{key}: unknown key for model {name}; remove it (see conf/model/{name}.yaml)") \
                from None
        raise ConfigError(f"model: {msg}") from None
    except ValueError as e:
        raise ConfigError(f"model: {str(e).splitlines()[0]}") from None
    model = model.to(device=ctx.device, dtype=ctx.dtype)
    _check_shapes(model, task, name, cfg)
    return model


def _check_shapes(model: torch.nn.Module, task: tasks.Task, name: str, cfg: RunCfg) -> None:
    try:
        with torch.no_grad():
            out = model(task.x_train[:2])
    except RuntimeError as e:
        raise ConfigError(f"model {name} does not accept task {task.name} inputs of shape "
                          f"{tuple(task.x_train.shape[1:])} ({str(e).splitlines()[0][:80]}); pick a matching model"
                          ) from None
    if out.shape[-1] != task.meta["out_dim"]:
        raise ConfigError(f"model {name} outputs {out.shape[-1]} values but task {task.name} needs "
                          f"{task.meta['out_dim']}; pick a matching model")
    if cfg.train.loss == "ce" and task.labels_train is None:
        raise ConfigError(f"train.loss=ce needs class labels but task {task.name} is a regression; use train.loss=mse")


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _lintwin_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lintwin")
    except PackageNotFoundError:
        return "unknown"
