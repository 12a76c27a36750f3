"""``experiment=suite``: the CPU preset of every phenomenon, one after the other, then one scoreboard and report.

Each child experiment is composed from ``conf/experiment/<name>.yaml`` with the suite's seed, device, logger and
paths, and written to ``<suite run dir>/<name>/`` as an ordinary run dir (so ``lintwin report`` reads it like any
other). Experiments on an image dataset that is not in the data root are skipped with one line saying so.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from comparisons.engine import rundir
from comparisons.engine.config import RunCfg, compose_experiment, to_container, validate
from comparisons.engine.jobs import child_overrides, missing_dataset
from comparisons.engine.report import collect, write_report
from comparisons.engine.run import run
from comparisons.engine.rundir import git_commit, resolve_run_dir, versions

log = logging.getLogger(__name__)


def run_suite(cfg: RunCfg) -> dict[str, Any]:
    """Run every experiment of ``cfg.phenomenon["experiments"]`` and write the suite's scoreboard and report.

    The suite never short-cuts on its own COMPLETE marker: every child is asked again, and a child whose run dir is
    complete for the same config is reused without retraining (:func:`comparisons.engine.run.run`). So a second
    ``make demo`` reprints the scoreboard in seconds, and a dataset added after a first run without it is picked up.
    """
    suite_dir = resolve_run_dir(cfg)
    (suite_dir / rundir.COMPLETE).unlink(missing_ok=True)
    suite_dir.mkdir(parents=True, exist_ok=True)
    rundir.write_yaml(suite_dir / "config.yaml", to_container(cfg))
    t0 = time.time()
    notes, children, reused = [], [], {}
    for name in cfg.phenomenon["experiments"]:
        child = validate(compose_experiment(name, child_overrides(cfg, suite_dir / name, "suite")))
        child.name = name
        missing = missing_dataset(child)
        if missing:
            line = f"{name} skipped: {missing} is not in the data root {child.paths.data_root} (set LINTWIN_DATA)"
            log.warning(line)
            print(f"lintwin: {line}")
            notes.append(line)
            continue
        was_complete = rundir.is_complete(resolve_run_dir(child)) and child.resume
        log.info("suite: %s %s", "reusing" if was_complete else "running", name)
        summary = run(child)
        if was_complete:
            reused[name] = str(summary.get("git_commit", "unknown"))[:12]
        children.append(suite_dir / name)
    if reused:
        commits = ", ".join(sorted(set(reused.values())))
        line = (
            f"reused {len(reused)} finished run(s) ({', '.join(reused)}), finished at commit {commits}; "
            "resume=false retrains"
        )
        print(f"lintwin: {line}")
        notes.append(line)
    summaries, figures = collect(suite_dir)
    wall = time.time() - t0
    preamble = [f"Suite of {len(summaries)} settings, seed(s) {cfg.seeds or [cfg.seed]}, wall time {wall:.0f} s."]
    report = write_report(summaries, figures, suite_dir, preamble=preamble + notes)
    summary = {
        "phenomenon": "suite",
        "name": cfg.name or "suite",
        "status": "complete",
        "scores": {},
        "verdict": "inconclusive",
        "negative_controls": {},
        "notes": notes,
        "children": [str(c) for c in children],
        "children_summaries": summaries,
        "report": str(report),
        "seed": cfg.seed,
        "seeds": cfg.seeds or [cfg.seed],
        "git_commit": git_commit(),
        "versions": versions(),
        "wall_time_s": round(wall, 3),
    }
    rundir.write_json(suite_dir / "summary.json", summary)
    rundir.mark_complete(suite_dir)
    return summary
