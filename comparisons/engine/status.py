"""Job states of runs and sweeps: ``status.json`` per job, ``manifest.json`` per sweep, ``lintwin status PATH``.

Every job the CLI starts (a single run, or one job of a Hydra multirun) keeps a small ``status.json`` in its run
dir (``<paths.runs_root>/<name>/<config hash>/``) and, in a multirun, a copy in Hydra's job dir
(``<paths.hydra_root>/multirun/<date>/<time>/<num>/``). It holds the job's state:

- ``running``: started and not finished (``interrupted`` when the process is gone on this host);
- ``done``: the run dir is COMPLETE (``action`` says whether it was trained, resumed or skipped);
- ``failed``: the job raised; ``reason`` is the one-line message the CLI printed (docs/design.md "Failure model").

Relaunching the same multirun skips done jobs (COMPLETE), resumes interrupted ones (checkpoint.pt without
COMPLETE) and reruns failed ones; the key is the config hash (:func:`comparisons.engine.rundir.config_hash`, output
paths excluded), so the same job maps to the same run dir on every launch. At the end of a multirun the
:class:`SweepCallback` writes ``manifest.json`` (jobs keyed by config hash) into the sweep dir and lists the
failures; ``lintwin status PATH`` does the same for any folder (a sweep dir, a runs root, one run dir).

Jobs whose config does not even validate have no run dir; they are recorded in Hydra's job dir only, so
``lintwin status <sweep dir>`` lists them and ``lintwin status <runs root>`` does not.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

if TYPE_CHECKING:
    from comparisons.engine.config import RunCfg

log = logging.getLogger(__name__)

STATUS = "status.json"
MANIFEST = "manifest.json"
STATES = ("running", "interrupted", "failed", "done")  # table order: what needs attention first
_SWEEP_RESULT: dict[str, int] = {}  # filled by SweepCallback in the launching process; read by cli.entry


def record_start(cfg: RunCfg) -> None:
    """Mark the job of ``cfg`` as running (before :func:`comparisons.engine.run.run`); never raises.

    ``action`` records what the run is about to do: ``skip`` (COMPLETE and resume), ``resume`` (checkpoint.pt
    and resume) or ``train``.
    """
    from comparisons.engine import rundir
    from comparisons.engine.rundir import resolve_run_dir

    try:
        run_dir = resolve_run_dir(cfg)
        if cfg.resume and rundir.is_complete(run_dir):
            action = "skip"
        elif cfg.resume and (run_dir / "checkpoint.pt").exists():
            action = "resume"
        else:
            action = "train"
        previous = _read(run_dir / STATUS) or {}
        _write(_record(cfg, run_dir, "running", action=action, attempts=int(previous.get("attempts", 0)) + 1))
    except Exception as e:  # noqa: BLE001 - bookkeeping must never cost a run; run() reports a bad run dir itself
        log.debug("could not record the start of the job: %s", e)


def record_done(cfg: RunCfg, summary: dict[str, Any]) -> None:
    """Mark the job of ``cfg`` as done, with its verdict and diverged members; never raises."""
    from comparisons.engine.rundir import resolve_run_dir

    try:
        run_dir = resolve_run_dir(cfg)
        previous = _read(run_dir / STATUS) or {}
        diverged = summary.get("diverged") or {}
        _write(
            _record(
                cfg,
                run_dir,
                "done",
                action=previous.get("action", "train"),
                attempts=previous.get("attempts", 1),
                verdict=summary.get("verdict"),
                reason="; ".join(f"{k} diverged at step {v}" for k, v in diverged.items()),
            )
        )
    except Exception as e:  # noqa: BLE001 - the run dir is complete; the status file is a convenience
        log.warning("could not record the end of the job: %s", e)


def record_failure(cfg: DictConfig | RunCfg, line: str, own_dir: bool = True) -> None:
    """Mark a job as failed with the one-line ``line`` the CLI printed; never raises.

    Args:
        cfg: The job's composed config (a DictConfig, possibly invalid) or its validated RunCfg.
        line: One line naming the problem and the fix.
        own_dir: False when the run dir belongs to another process or run (locked, another config): the failure
            is then kept in Hydra's job dir only, and the run dir's status.json stays its owner's.
    """
    from comparisons.engine.config import validate

    try:
        rcfg = validate(cfg) if isinstance(cfg, DictConfig) else cfg
    except Exception:  # noqa: BLE001 - an invalid config has no run dir: record it in Hydra's job dir only
        _write(_invalid_record(line))
        return
    if not own_dir:
        _write(_invalid_record(line))
        return
    try:
        from comparisons.engine.rundir import resolve_run_dir

        if rcfg.name is None:
            rcfg.name = _hydra().get("experiment") or rcfg.phenomenon["name"]  # as cli.main names the run
        _record_ending(rcfg, resolve_run_dir(rcfg), "failed", line)
    except Exception as e:  # noqa: BLE001
        log.debug("could not record the failure in the run dir: %s", e)
        _write(_invalid_record(line))


def _record_ending(cfg: RunCfg, run_dir: Path, state: str, line: str) -> None:
    """Write ``state`` with its one-line reason, keeping the job's action and attempt count from its last record."""
    previous = _read(run_dir / STATUS) or {}
    _write(
        _record(
            cfg,
            run_dir,
            state,
            reason=line,
            action=previous.get("action", "train"),
            attempts=previous.get("attempts", 1),
        )
    )


def record_interrupted(cfg: RunCfg, line: str) -> None:
    """Mark the job of ``cfg`` as interrupted (SIGTERM/SIGINT, checkpoint written); never raises."""
    from comparisons.engine.rundir import resolve_run_dir

    try:
        _record_ending(cfg, resolve_run_dir(cfg), "interrupted", line)
    except Exception as e:  # noqa: BLE001 - the checkpoint is written; the status file is a convenience
        log.debug("could not record the interruption: %s", e)


def collect(path: str | Path) -> dict[str, dict[str, Any]]:
    """Every job recorded at or below ``path``, keyed by config hash, with its live state.

    A job found twice (its run dir and Hydra's job dir, or several launches) keeps its newest record. The state
    is refreshed from the run dir: COMPLETE means done; ``running`` from a process that no longer exists on this
    host means interrupted (rerun the same command to resume it).
    """
    from comparisons.engine.rundir import git_commit

    commit = git_commit()
    jobs: dict[str, dict[str, Any]] = {}
    for f in sorted(Path(path).rglob(STATUS)):
        rec = _read(f)
        if not rec or "config_hash" not in rec:
            continue
        rec = _refresh(rec, commit)
        key = rec["config_hash"]
        if key not in jobs or rec.get("updated", "") >= jobs[key].get("updated", ""):
            jobs[key] = rec
    return jobs


def write_manifest(path: str | Path, jobs: dict[str, dict[str, Any]]) -> Path:
    """Write ``<path>/manifest.json``: counts per state and every job keyed by config hash."""
    from comparisons.engine import rundir

    out = Path(path) / MANIFEST
    counts = {s: sum(j["state"] == s for j in jobs.values()) for s in STATES}
    rundir.write_json(out, {"path": str(Path(path).resolve()), "updated": _now(), "counts": counts, "jobs": jobs})
    return out


def format_status(jobs: dict[str, dict[str, Any]], limit: int | None = None) -> str:
    """The status table (state, hash, action, job, reason or verdict), then counts and the failures.

    Args:
        jobs: From :func:`collect`.
        limit: Show at most this many rows of done jobs (failures are always listed in full).
    """
    order = {s: i for i, s in enumerate(STATES)}
    shared = set.intersection(*[set(j.get("overrides") or []) for j in jobs.values()]) if len(jobs) > 1 else set()

    def _job(rec: dict[str, Any]) -> str:  # the overrides that tell this job apart (all of them for one job)
        own = [o for o in rec.get("overrides") or [] if o not in shared and not o.startswith(("paths.", "hydra"))]
        return " ".join(own) or rec.get("name") or ""

    rows = sorted(jobs.values(), key=lambda j: (order.get(j["state"], -1), j.get("name") or "", _job(j)))
    done = [r for r in rows if r["state"] == "done"]
    shown = [r for r in rows if r["state"] != "done"] + (done if limit is None else done[:limit])
    cols = ["state", "hash", "action", "job", "detail"]
    table = [
        {
            "state": r["state"],
            "hash": r["config_hash"],
            "action": str(r.get("action", "")),
            "job": _job(r),
            "detail": r.get("reason") or r.get("verdict") or "",
        }
        for r in shown
    ]
    widths = {c: max([len(c)] + [len(t[c]) for t in table]) for c in cols[:-1]}
    lines = ["  ".join(c.ljust(widths.get(c, 0)) for c in cols).rstrip()]
    lines += ["  ".join(t[c].ljust(widths.get(c, 0)) for c in cols).rstrip() for t in table]
    if limit is not None and len(done) > limit:
        lines.append(f"... and {len(done) - limit} more done jobs")
    counts = {s: sum(r["state"] == s for r in rows) for s in STATES}
    n_stale = sum(bool(r.get("stale")) for r in rows)
    lines.append(
        f"{len(rows)} jobs: "
        + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        + (f" ({n_stale} stale: made by another commit)" if n_stale else "")
    )
    failed = [r for r in rows if r["state"] == "failed"]
    if failed:
        lines.append(f"failed ({len(failed)}):")
        lines += [f"  {r['config_hash']} {_job(r)}: {r.get('reason', '')}" for r in failed]
    return "\n".join(lines)


def status_main(argv: list[str]) -> int:
    """``lintwin status PATH [--json]``: print the state of every job under PATH and write PATH/manifest.json.

    Returns:
        0 when the table was printed (whatever the jobs' states), 2 on a bad PATH.
    """
    args = [a for a in argv if a != "--json"]
    if len(args) != 1 or args[0].startswith("-"):
        print(
            "lintwin: status takes one PATH (a sweep dir, a runs root or a run dir), e.g. lintwin status runs",
            file=sys.stderr,
        )
        return 2
    path = Path(args[0])
    if not path.is_dir():
        print(
            f"lintwin: status: {path} is not a folder; give a sweep dir (outputs/multirun/<date>/<time>) or a "
            "runs root (paths.runs_root)",
            file=sys.stderr,
        )
        return 2
    jobs = collect(path)
    if not jobs:
        print(
            f"lintwin: status: no lintwin job under {path} (no {STATUS}); point it at a sweep dir or a runs root",
            file=sys.stderr,
        )
        return 2
    try:
        if not (path / STATUS).exists():  # a sweep dir or a runs root; a single run dir keeps its own files only
            write_manifest(path, jobs)
    except OSError as e:
        print(f"lintwin: warning: cannot write {path / MANIFEST} ({e.strerror}); printing only", file=sys.stderr)
    print(json.dumps(jobs, indent=2) if "--json" in argv else format_status(jobs))
    return 0


class SweepCallback(Callback):
    """Hydra callback (added by ``cli.entry`` to every multirun): the sweep's manifest and failures at the end."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Forget the result of an earlier multirun in this process."""
        _SWEEP_RESULT.clear()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Write ``manifest.json`` into the sweep dir and print the counts, the failures and where to look."""
        sweep_dir = Path(str(config.hydra.sweep.dir))
        jobs = collect(sweep_dir) if sweep_dir.is_dir() else {}
        _SWEEP_RESULT.update(jobs=len(jobs), failed=sum(j["state"] == "failed" for j in jobs.values()))
        if not jobs:
            return
        try:
            write_manifest(sweep_dir, jobs)
        except OSError as e:
            log.warning("cannot write the sweep manifest in %s: %s", sweep_dir, e)
        print(format_status(jobs, limit=20), file=sys.stderr if _SWEEP_RESULT["failed"] else sys.stdout)
        print(
            f"sweep manifest: {sweep_dir / MANIFEST} (lintwin status {sweep_dir})",
            file=sys.stderr if _SWEEP_RESULT["failed"] else sys.stdout,
        )


def sweep_exit_code() -> int:
    """Exit code of the multirun that just ended in this process: 1 if any of its jobs failed, else 0."""
    return 1 if _SWEEP_RESULT.get("failed") else 0


CALLBACK_OVERRIDE = f"+hydra.callbacks.lintwin_status._target_={SweepCallback.__module__}.SweepCallback"


def _record(cfg: RunCfg, run_dir: Path, state: str, **extra: Any) -> dict[str, Any]:
    from comparisons.engine import rundir
    from comparisons.engine.config import to_container

    return {
        "state": state,
        "reason": extra.pop("reason", "") or "",
        "config_hash": rundir.config_hash(to_container(cfg)),
        "name": cfg.name or cfg.phenomenon["name"],
        "run_dir": str(Path(run_dir).resolve()),
        **_hydra(),
        **extra,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "updated": _now(),
    }


def _invalid_record(line: str) -> dict[str, Any]:
    """A job whose config does not validate: keyed by a hash of its overrides, kept in Hydra's job dir only."""
    import hashlib

    hc = _hydra()
    key = hashlib.sha256(json.dumps(sorted(hc.get("overrides", [])) + ["<invalid>"]).encode()).hexdigest()[:12]
    return {
        "state": "failed",
        "reason": line,
        "config_hash": key,
        "name": hc.get("experiment") or "",
        "run_dir": None,
        **hc,
        "action": "train",
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "updated": _now(),
    }


def _write(rec: dict[str, Any]) -> None:
    """Write ``rec`` to its run dir (if any) and, in a multirun, to Hydra's job dir."""
    from comparisons.engine import rundir

    targets = [Path(rec["run_dir"]) / STATUS] if rec.get("run_dir") else []
    if rec.get("multirun") and rec.get("hydra_dir"):
        targets.append(Path(rec["hydra_dir"]) / STATUS)
    for t in targets:
        try:
            rundir.write_json(t, rec)
        except OSError as e:
            log.debug("cannot write %s: %s", t, e)


def _hydra() -> dict[str, Any]:
    """The current Hydra job: overrides, job number and id, its output dir, multirun or not (empty outside)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        multirun = hc.mode == RunMode.MULTIRUN
        return {
            "overrides": [str(o) for o in hc.overrides.task],
            "multirun": multirun,
            "job_num": hc.job.get("num") if multirun else None,
            "job_id": hc.job.get("id"),
            "hydra_dir": hc.runtime.output_dir,
            "experiment": hc.runtime.choices.get("experiment"),
        }
    except Exception:  # noqa: BLE001 - not inside a Hydra job (tests, run() called directly)
        return {}


def _refresh(rec: dict[str, Any], commit: str | None = None) -> dict[str, Any]:
    """The newest record of a job (its run dir's copy may be newer than Hydra's) and its live state.

    The run dir decides: COMPLETE means done, and a "done" record whose COMPLETE is gone is not done. A done run
    made by another git commit than ``commit`` (this checkout's) is flagged ``stale``.
    """
    run_dir = Path(rec["run_dir"]) if rec.get("run_dir") else None
    if run_dir is not None:
        live = _read(run_dir / STATUS)
        if live and live.get("config_hash") == rec["config_hash"] and live.get("updated", "") > rec.get("updated", ""):
            rec = {**rec, **live}
        complete = (run_dir / "COMPLETE").exists()
        if complete and rec["state"] != "done":
            rec = {**rec, "state": "done", "reason": ""}
        elif not complete and rec["state"] == "done":
            rec = {
                **rec,
                "state": "interrupted",
                "reason": "its COMPLETE marker is missing; rerun the same command to finish it",
            }
        made_by = (_read(run_dir / "summary.json") or {}).get("git_commit") if complete else None
        if commit and made_by and made_by != commit:
            rec = {
                **rec,
                "stale": True,
                "reason": f"stale: made by commit {made_by[:12]}, this checkout is {commit[:12]}; "
                "rerun=stale retrains it",
            }
    if rec["state"] == "running" and rec.get("host") == socket.gethostname() and not _alive(rec.get("pid")):
        ckpt = run_dir is not None and (run_dir / "checkpoint.pt").exists()
        rec = {
            **rec,
            "state": "interrupted",
            "reason": "the process ended before the run finished; rerun the same command to "
            + ("resume from checkpoint.pt" if ckpt else "start it again"),
        }
    return rec


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return True  # unknown: keep "running"
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")
