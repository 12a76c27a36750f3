"""``run(cfg)``: one run of one phenomenon, from a validated config to a complete run directory.

Data flow (docs/design.md "Data flow of one run"): build the task and the matched pair (real network + its layerwise
linear twin, same initial weights) for every sweep point, ask the theory for its prediction at init, train all
members on one data order, score, write the run dir, draw the figures, and mark the run complete last.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from comparisons.engine import identity, lock, rundir, tracking
from comparisons.engine.aggregate import judgement
from comparisons.engine.config import ConfigError, RunCfg, to_container
from comparisons.engine.loop import train_members
from comparisons.engine.members import Context, Member, resolve_device, streams
from comparisons.engine.phenomenon import Outcome, Prediction, get_phenomenon
from comparisons.engine.rundir import git_commit, resolve_run_dir, versions
from comparisons.engine.sweep import build_members, point_label, sweep_points

log = logging.getLogger(__name__)


def run(cfg: RunCfg) -> dict[str, Any]:
    """Run ``cfg`` to a complete run directory and return its summary.

    A complete run dir for the same config is not retrained (its summary is returned); an interrupted one resumes
    from its checkpoint when ``cfg.resume``. ``cfg.seeds`` runs one child run per seed and aggregates them. The run
    dir is locked for the whole run, and its stored identity must match this run's (:mod:`identity`): a complete
    run made by another git commit is reused with ``summary["reused_from_commit"]`` set (``rerun=stale``
    retrains it).

    Raises:
        ConfigError: Bad input, found before any training starts (another run in this run dir too).
        RunDirBusy: Another process holds the run dir.
    """
    run_dir = resolve_run_dir(cfg)
    with lock.hold(run_dir):  # one process per run dir; a second launch is refused at once (RunDirBusy, exit 2)
        return _run_seeds(cfg) if cfg.seeds else _run_locked(cfg, run_dir)


def _run_locked(cfg: RunCfg, run_dir: Path) -> dict[str, Any]:
    current = identity.run_identity(cfg)
    stored = identity.check(run_dir, cfg, current)  # another config or data in this run dir: refused
    stale = identity.stale_commit(stored, current)
    fresh = False  # True: retrain from step 0 even where a checkpoint exists
    if rundir.is_complete(run_dir) and cfg.resume:
        if stale is None or cfg.rerun == "keep":
            summary = rundir.load_run(run_dir).summary
            if cfg.resume == "force":
                identity.write_identity(run_dir, {**current, "git_commit": (stored or current)["git_commit"]})
            if stale is not None:
                summary["reused_from_commit"] = stale
                summary["current_commit"] = current["git_commit"]
                log.info(
                    "%s reused: complete since commit %s, this checkout is %s", run_dir, stale, current["git_commit"]
                )
            else:
                log.info("%s reused: complete (resume=false retrains)", run_dir)
            return summary
        log.info(
            "rerun=stale: retraining %s (made by commit %s, this checkout is %s)", run_dir, stale, current["git_commit"]
        )
        fresh = True
    elif stale is not None and cfg.resume and any(run_dir.glob("checkpoint*.pt")):
        fresh = cfg.rerun == "stale"
        log.warning(
            "%s: the checkpoint was written by commit %s, this checkout is %s; %s",
            run_dir,
            stale,
            current["git_commit"],
            "rerun=stale: starting over" if fresh else "resuming it (rerun=stale starts over)",
        )
    ctx = Context(
        cfg=cfg,
        device=resolve_device(cfg.device),
        dtype=getattr(torch, cfg.dtype),
        run_dir=run_dir,
        streams=streams(cfg.seed),
    )
    phen = get_phenomenon(cfg.phenomenon["name"])
    members = [] if phen.train is not None else build_members(cfg, ctx)
    _prepare_dir(run_dir, cfg, current, fresh)
    tracker = tracking.Tracker(cfg, run_dir)  # W&B, live (a no-op with logger=none)
    ctx.on_eval = tracker.log_eval
    t0 = time.time()
    with _denormals(flush=cfg.train.flush_denormal):
        if phen.train is not None:
            observed, prediction = phen.train(cfg, ctx)
        else:
            prediction = phen.predict(cfg, members)
            rows = train_members(members, ctx, phen.observe, checkpoint=run_dir / "checkpoint.pt")
            observed = pd.DataFrame(rows, columns=rundir.CURVE_COLUMNS)
    curves = pd.concat([observed, prediction.curves], ignore_index=True)[rundir.CURVE_COLUMNS]
    outcome, omitted = score_with_divergence(phen, curves, prediction, cfg, members)
    summary = _summary(cfg, outcome, prediction, members, time.time() - t0)
    if phen.train is not None:  # a phenomenon that trains its own members reports their divergence in its numbers
        summary["diverged"].update(prediction.numbers.get("diverged") or {})
        summary["notes"] += [f"{k} diverged at step {v}" for k, v in (prediction.numbers.get("diverged") or {}).items()]
    summary["omitted_scores"] = omitted
    if stale is not None and not fresh and cfg.resume:
        summary["resumed_from_commit"] = stale
    summary.update(judgement([summary]))
    return finish_run(run_dir, cfg, curves, summary, tracker)


@contextlib.contextmanager
def _denormals(flush: bool) -> Iterator[None]:
    """``train.flush_denormal``: the CPU flushes float results below the normal range (~1.2e-38 in float32) to zero
    and reads such inputs as zero while the members train, then goes back to IEEE arithmetic.

    Saturated tanh nets (the paper's MNIST grokking preset) produce denormal gradients and Adam moments; x86 CPUs
    handle each in microcode, and the paper preset's training step slowed down by half after ~1500 steps
    (docs/benchmarks.md). Their updates fall far below float32's resolution of the weights: on that preset every curve
    value stayed bit-identical (2000 steps, flush on vs off). Process-wide while it lasts; CPU only.
    """
    if not flush:
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def score_with_divergence(
    phen, curves: pd.DataFrame, prediction: Prediction, cfg: RunCfg, members: list[Member]
) -> tuple[Outcome, dict[str, str]]:
    """``phen.score``, minus the scores a diverged member makes meaningless, each with its reason.

    A score belongs to the members its name mentions ("real", "twin", a sweep point's label); a score that names
    neither voice compares against the real net, so it goes with the real one. A score that names no point label
    belongs to every point. Non-finite scores are omitted too. When a criterion loses its score the verdict is
    re-derived from the remaining criteria: disagree if one fails, else inconclusive (docs/design.md "Failure model").

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
        return Outcome(
            scores={},
            notes=[f"no scores: scoring failed after divergence ({type(e).__name__}); {why}"],
        ), {"*": why}
    labels = {m.name.partition(":")[2] for m in members} - {""}
    # the verdict is re-derived from the remaining scores by the engine's one rule (comparisons.engine.stats)
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
    outcome.scores = {k: v for k, v in outcome.scores.items() if k not in omitted}
    return outcome, omitted


def finish_run(
    run_dir: Path, cfg: RunCfg, curves: pd.DataFrame, summary: dict[str, Any], tracker: tracking.Tracker
) -> dict[str, Any]:
    """Write curves, summary and figures, finish the W&B run, then mark the run COMPLETE (last)."""
    rundir.write_curves(run_dir / "curves.csv", curves)
    rundir.write_json(run_dir / "summary.json", summary)
    run = rundir.load_run(run_dir)
    figures = draw_figures(cfg, run)
    tracker.finish(run, figures)
    rundir.mark_complete(run_dir)
    log.info("run complete: %s", run_dir)
    return summary


def draw_figures(cfg: RunCfg, run: rundir.Run) -> list[Path]:
    """The phenomenon's figures of a written run; a figure that fails warns and costs the run nothing."""
    try:
        return get_phenomenon(cfg.phenomenon["name"]).figures(run, run.path / "figures")
    except Exception as e:  # noqa: BLE001 - the numbers are written; a broken plot must not lose them
        log.warning("figures of %s failed (%s: %s); the run's numbers stand", run.path, type(e).__name__, e)
        return []


def _summary(cfg: RunCfg, outcome: Outcome, prediction: Prediction, members: list[Member], wall: float) -> dict:
    diverged = {m.name: m.diverged_at for m in members if m.diverged_at is not None}
    return {
        "phenomenon": cfg.phenomenon["name"],
        "name": cfg.name or cfg.phenomenon["name"],
        "status": "complete",
        "scores": outcome.scores,
        "criteria": {k: list(v) for k, v in outcome.criteria.items()},
        "nulls": {k: [float(x) for x in v] for k, v in outcome.nulls.items() if k in outcome.scores},
        "kinds": dict(outcome.kinds),
        "trials": dict(outcome.trials),
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
    from comparisons.engine.aggregate import aggregate_runs

    parent = resolve_run_dir(cfg)
    child_dirs = []
    for seed in cfg.seeds or []:
        child = copy.deepcopy(cfg)
        child.seeds, child.seed = None, seed
        child.paths.run_dir = str(parent / f"seed_{seed}")
        run(child)
        child_dirs.append(Path(child.paths.run_dir))
    summary = aggregate_runs(child_dirs, parent)
    figures = draw_figures(cfg, rundir.load_run(parent))  # seed bands
    tracking.log_run(cfg, parent, figures, job_type="aggregate")  # the seed aggregate: one W&B run of the group
    return summary


def _prepare_dir(run_dir: Path, cfg: RunCfg, ident: dict[str, Any], fresh: bool) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / rundir.COMPLETE).unlink(missing_ok=True)  # resume=false over a finished run: not done until redone
        if fresh:  # rerun=stale: no checkpoint of the old code is resumed
            for old in run_dir.glob("checkpoint*.pt"):
                old.unlink()
        identity.write_identity(run_dir, ident)  # before any checkpoint: a later launch checks it
        rundir.write_yaml(run_dir / "config.yaml", to_container(cfg))
    except OSError as e:
        raise ConfigError(
            f"cannot write the run dir {run_dir} ({e.strerror}); set paths.runs_root to a writable folder"
        ) from None


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
