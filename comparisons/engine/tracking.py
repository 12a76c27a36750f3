"""W&B mirror of a finished run dir (docs/design.md "Scale"; docs/design.md "Logging, progress, W&B").

W&B is imported lazily and only reads the run dir after training, so it can never change a result. Any W&B
exception logs one warning and the run goes on: the run dir is the record. Offline is the default (compute nodes
have no internet); ``wandb sync <run_dir>/wandb/offline-run-*`` uploads later.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from comparisons.engine.config import RunCfg, to_container
from comparisons.engine.rundir import load_run

log = logging.getLogger(__name__)

ONLINE_INIT_TIMEOUT_S = 5  # seconds wandb.init may wait for the server before the offline retry


def log_run(cfg: RunCfg, run_dir: Path, figures: list[Path]) -> str | None:
    """Mirror ``run_dir`` to one W&B run: config, curves with explicit steps, overlays, scores, a table, figures.

    Returns:
        The W&B run folder, or None when logging is off or W&B failed (a warning says why).
    """
    if cfg.logger.name != "wandb" or cfg.logger.mode == "disabled":
        return None
    modes = [cfg.logger.mode] + (["offline"] if cfg.logger.mode == "online" else [])
    for mode in modes:  # an online run that cannot reach the server is retried offline
        try:
            return _log(cfg, run_dir, figures, mode)
        except Exception as e:  # noqa: BLE001 - a tracker failure must never cost a finished run
            nxt = "retrying offline" if mode != modes[-1] else "the run dir is complete; logger=none silences this"
            log.warning(
                "W&B logging (%s) failed (%s: %s); %s",
                mode,
                type(e).__name__,
                str(e).splitlines()[0] if str(e) else "",
                nxt,
            )
    return None


def _log(cfg: RunCfg, run_dir: Path, figures: list[Path], mode: str) -> str:
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    run = load_run(run_dir)
    lg = cfg.logger
    wb = wandb.init(
        project=lg.project,
        entity=lg.entity,
        group=lg.group or cfg.name or cfg.phenomenon["name"],
        name=f"{cfg.name or cfg.phenomenon['name']}-{run_dir.name}",
        dir=str(lg.dir or run_dir),
        mode=mode,
        config=to_container(cfg),
        tags=list(lg.tags),
        reinit="finish_previous",
        # online: an unreachable server fails in seconds, then the run goes offline with one warning; offline
        # contacts no server, but starting W&B's service on a loaded node can take a while
        settings=wandb.Settings(init_timeout=ONLINE_INIT_TIMEOUT_S if mode == "online" else 60),
    )
    try:
        curves = run.curves
        observed = curves[~curves["member"].str.startswith("theory")]
        for step, block in observed.groupby("step", sort=True):
            wb.log({f"{r.member}/{r.metric}": r.value for r in block.itertuples()}, step=int(step))
        for metric in sorted(
            set(observed["metric"]) & set(curves.loc[curves["member"].str.startswith("theory"), "metric"])
        ):
            sub = curves[curves["metric"] == metric]
            keys, xs, ys = [], [], []
            for member, g in sub.groupby("member"):
                keys.append(member)
                xs.append(g["step"].tolist())
                ys.append(g["value"].tolist())
            wb.log({f"overlay/{metric}": wandb.plot.line_series(xs=xs, ys=ys, keys=keys, title=metric, xname="step")})
        s = run.summary
        wb.summary.update({f"score/{k}": v for k, v in s.get("scores", {}).items()})
        wb.summary.update({"verdict": s.get("verdict"), "status": s.get("status")})
        table = wandb.Table(columns=["phenomenon", "score", "value", "verdict"])
        for k, v in s.get("scores", {}).items():
            table.add_data(s.get("phenomenon"), k, v, s.get("verdict"))
        wb.log({"scoreboard": table})
        pngs = [p for p in figures if p.suffix == ".png"]
        if pngs:
            wb.log({f"figures/{p.stem}": wandb.Image(str(p)) for p in pngs})
        return str(Path(wb.dir).parent)
    finally:
        wb.finish()
