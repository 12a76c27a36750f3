"""W&B, as its users expect it (docs/design.md "Scale"; docs/design.md "Logging, progress, W&B").

A :class:`Tracker` follows one run live: ``wandb.init`` before training with the resolved config, the metrics of
every eval step as they are measured (``define_metric``: the x axis is the training step), then, at the end, the
theory overlays, scores, evidence and verdict in the run's summary, an evidence table, the figures at the last
training step and the run dir's small files as an artifact. Names are bounded: a run with more than
``MAX_LIVE_MEMBERS`` members (the Fig. 6 grid of 1600 nets) logs its curves as one table instead of one metric per
member. Group = ``logger.group`` or the experiment's name; job type = the phenomenon; tags = phenomenon, name and
``logger.tags``; the run's name and id are unique per config and seed, so a resumed run continues its W&B run.
:func:`log_run` mirrors a finished run dir after the fact (``lintwin wandb PATH``), and the seed aggregate of a
multi-seed run gets its own W&B run in the same group (job type ``aggregate``).

W&B can never change a result: any W&B exception logs one warning and the run goes on without it; the run dir is
the record. Offline is the default (compute nodes have no internet); ``wandb sync`` uploads later.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

from comparisons.engine.config import RunCfg, to_container
from comparisons.engine.rundir import Run, load_run

log = logging.getLogger(__name__)

ONLINE_INIT_TIMEOUT_S = 5  # seconds wandb.init may wait for the server before the offline retry
MAX_LIVE_MEMBERS = 32  # more members than this: curves go into one table, not one metric name each
ARTIFACT_FILES = ("config.yaml", "identity.json", "curves.csv", "summary.json")


class Tracker:
    """One W&B run following one lintwin run; every method is a no-op once W&B has failed."""

    def __init__(self, cfg: RunCfg, run_dir: Path, job_type: str | None = None) -> None:
        self.cfg, self.run_dir, self.wb = cfg, run_dir, None
        lg = cfg.logger
        if lg.name != "wandb" or lg.mode == "disabled":
            return
        modes = [lg.mode] + (["offline"] if lg.mode == "online" else [])
        for mode in modes:  # an online run that cannot reach the server is retried offline
            try:
                self.wb = _init(cfg, run_dir, mode, job_type)
                return
            except Exception as e:  # noqa: BLE001 - a tracker failure must never cost a run
                _warn(
                    f"W&B init ({mode})", e, "retrying offline" if mode != modes[-1] else "the run goes on without it"
                )

    def log_eval(self, step: int, rows: list[dict[str, Any]]) -> None:
        """The rows measured at one eval step (``member/metric`` names, the step as x axis)."""
        if self.wb is None or not rows:
            return
        members = {r["member"] for r in rows}
        if len(members) > MAX_LIVE_MEMBERS:
            return  # the grid's curves go into a table at the end
        self._safe(lambda: self.wb.log({f"{r['member']}/{r['metric']}": r["value"] for r in rows} | {"step": step}))

    def finish(self, run: Run, figures: list[Path]) -> str | None:
        """Overlays, summary, evidence table, figures and the artifact; then close the W&B run."""
        if self.wb is None:
            return None
        folder = None
        try:
            _log_final(self.wb, run, figures)
            folder = str(Path(self.wb.dir).parent)
        except Exception as e:  # noqa: BLE001
            _warn("W&B logging", e, "the run dir is complete")
        finally:
            self._safe(self.wb.finish)
            self.wb = None
        return folder

    def _safe(self, fn) -> None:
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            _warn("W&B logging", e, "the run goes on without it")
            self.wb = None


def log_run(cfg: RunCfg, run_dir: Path, figures: list[Path], job_type: str | None = None) -> str | None:
    """Mirror a finished run dir to one W&B run, after the fact: every curve at its step, then :meth:`finish`.

    Returns:
        The W&B run folder, or None when logging is off or W&B failed (a warning says why).
    """
    tracker = Tracker(cfg, run_dir, job_type)
    if tracker.wb is None:
        return None
    run = load_run(run_dir)
    observed = run.curves[~run.curves["member"].str.startswith("theory")]
    if observed["member"].nunique() <= MAX_LIVE_MEMBERS:
        for step, block in observed.groupby("step", sort=True):
            tracker.log_eval(int(step), block.to_dict("records"))
    return tracker.finish(run, figures)


def _init(cfg: RunCfg, run_dir: Path, mode: str, job_type: str | None):
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    lg = cfg.logger
    name = cfg.name or cfg.phenomenon["name"]
    # unique per config and seed: a single run's dir is named by its config hash (seed included), a seed of a
    # multi-seed run is <parent hash>/seed_<n>
    key = f"{run_dir.parent.name}-{run_dir.name}" if run_dir.name.startswith("seed_") else run_dir.name
    wb = wandb.init(
        project=lg.project,
        entity=lg.entity,
        group=lg.group or name,
        job_type=job_type or cfg.phenomenon["name"],
        tags=sorted({cfg.phenomenon["name"], name, *lg.tags}),
        name=f"{name}-{key}",
        id=f"{name}-{key}"[:64].replace(".", "_"),
        resume="allow",  # a resumed run continues its W&B run
        dir=str(lg.dir or run_dir),
        mode=mode,
        config=to_container(cfg),
        reinit="finish_previous",
        # online: an unreachable server fails in seconds, then the run goes offline with one warning; offline
        # contacts no server, but starting W&B's service on a loaded node can take a while
        settings=wandb.Settings(init_timeout=ONLINE_INIT_TIMEOUT_S if mode == "online" else 60),
    )
    wb.define_metric("step")
    wb.define_metric("*", step_metric="step")
    return wb


def _log_final(wb, run: Run, figures: list[Path]) -> None:
    import wandb

    curves, s = run.curves, run.summary
    last = int(curves["step"].max()) if len(curves) else 0
    observed = curves[~curves["member"].str.startswith("theory")]
    final: dict[str, Any] = {"step": last}
    if observed["member"].nunique() > MAX_LIVE_MEMBERS:
        final["curves"] = wandb.Table(dataframe=observed[["member", "step", "metric", "value"]].reset_index(drop=True))
    else:
        theory_metrics = set(curves.loc[curves["member"].str.startswith("theory"), "metric"])
        for metric in sorted(set(observed["metric"]) & theory_metrics):
            sub = curves[curves["metric"] == metric]
            keys, xs, ys = [], [], []
            for member, g in sub.groupby("member"):
                keys.append(member)
                xs.append(g["step"].tolist())
                ys.append(g["value"].tolist())
            final[f"overlay/{metric}"] = wandb.plot.line_series(xs=xs, ys=ys, keys=keys, title=metric, xname="step")
    evidence = s.get("evidence") or {}
    table = wandb.Table(columns=["score", "value", "lo", "hi", "p", "normalised", "call", "criterion"])
    for k, e in evidence.items():
        table.add_data(
            k,
            e.get("value"),
            e.get("lo"),
            e.get("hi"),
            e.get("p"),
            e.get("normalised"),
            e.get("call"),
            " ".join(str(x) for x in e.get("criterion") or []),
        )
    final["evidence"] = table
    final |= {f"figures/{p.stem}": wandb.Image(str(p)) for p in figures if p.suffix == ".png"}
    wb.log(final)
    wb.summary.update({f"score/{k}": v for k, v in s.get("scores", {}).items() if _number(v)})
    wb.summary.update(
        {f"evidence/{k}/{f}": e.get(f) for k, e in evidence.items() for f in ("lo", "hi", "p", "normalised")}
        | {"verdict": s.get("verdict"), "verdict_reason": s.get("verdict_reason"), "status": s.get("status")}
        | {"n_seeds": s.get("n", 1), "diverged": len(s.get("diverged") or {})}
    )
    art = wandb.Artifact(f"run-{run.path.parent.name}-{run.path.name}"[:120], type="lintwin-run")
    for f in ARTIFACT_FILES:
        if (run.path / f).exists():
            art.add_file(str(run.path / f))
    wb.log_artifact(art)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _warn(what: str, e: BaseException, then: str) -> None:
    log.warning("%s failed (%s: %s); %s", what, type(e).__name__, str(e).splitlines()[0] if str(e) else "", then)


def wandb_main(argv: list[str]) -> int:
    """``lintwin wandb PATH [logger.mode=online]``: log finished run dirs (made with ``logger=none``) to W&B."""
    from comparisons.engine import rundir
    from comparisons.engine.config import validate
    from comparisons.engine.phenomenon import get_phenomenon

    if not argv or argv[0] in ("-h", "--help"):
        print("usage: lintwin wandb PATH [logger.mode=online|offline]   (a run dir or a folder of runs)")
        return 0 if argv else 2
    path, mode = Path(argv[0]), "offline"
    for a in argv[1:]:
        if a.startswith("logger.mode="):
            mode = a.split("=", 1)[1]
    if not path.exists():
        print(f"lintwin: {path} does not exist; give a run dir or a folder of runs", file=sys.stderr)
        return 2
    logged = 0
    for run_dir in [p for p in rundir.find_runs(path) if rundir.is_complete(p) and (p / "curves.csv").exists()]:
        from omegaconf import OmegaConf

        run = load_run(run_dir)
        cfg = validate(OmegaConf.create(run.config))
        cfg.logger.name, cfg.logger.mode = "wandb", mode
        name = cfg.phenomenon["name"]
        figures = (
            sorted((run_dir / "figures").glob("*.png"))
            if name in ("suite", "homotopy")
            else (get_phenomenon(name).figures(run, run_dir / "figures"))
        )
        logged += log_run(cfg, run_dir, figures) is not None
    print(f"lintwin: logged {logged} run(s) under {path} to W&B ({mode})")
    return 0 if logged else 1


__all__ = ["MAX_LIVE_MEMBERS", "Tracker", "log_run", "wandb_main"]
