"""Seed aggregation: every score with its interval, null, p-value and ceiling, and the one verdict rule.

A multi-seed run (``seeds=[0,1,2]``) or a Hydra multirun over ``seed`` gives n run dirs of one config. Each score
is combined over seeds by :mod:`comparisons.engine.stats` (interval by the score's kind, p-value against the pooled
null, normalised agreement between null and noise ceiling) and the verdict comes from
:func:`comparisons.engine.stats.verdict`, the same rule for every phenomenon and for one seed (which it calls
inconclusive: one seed has no interval). A negative control counts as rejected only when it was rejected in every
seed.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comparisons.engine import rundir, stats
from comparisons.engine.stats import OPS  # noqa: F401 - re-exported for the phenomena's single-seed checks

log = logging.getLogger(__name__)


def mean_ci(values: Sequence[float], level: float = stats.LEVEL) -> tuple[float, float, float]:
    """Mean and two-sided Student-t interval of the finite values (NaNs, e.g. censored scores, are dropped)."""
    return stats.t_interval(values, level)


def quartiles(values: Sequence[Any]) -> list[float]:
    """[25th percentile, median, 75th percentile] of the finite values over seeds (the spread of a raw count)."""
    x = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return [float(q) for q in np.percentile(x, [25, 50, 75])] if x else [math.nan] * 3


def judgement(summaries: list[dict[str, Any]], ceilings: Sequence[dict[str, float]] = ()) -> dict[str, Any]:
    """``evidence`` (per judged score), ``verdict`` and ``verdict_reason`` of one config over its seed summaries.

    Judged scores are the criteria and every score that carries a null. ``ceilings``: the phenomenon's ceiling
    scores of seed pairs (:func:`ceilings_of`).
    """
    first = summaries[0]
    criteria = first.get("criteria", {})
    names = list(criteria) + sorted({k for s in summaries for k in s.get("nulls", {})} - set(criteria))
    kinds = first.get("kinds", {})
    out: dict[str, Any] = {}
    for name in names:
        kind = kinds.get(name, "real")
        trials = [s.get("trials", {}).get(name, 0) for s in summaries] if kind == "fraction" else None
        ev = stats.evidence(
            name,
            [s.get("scores", {}).get(name, math.nan) for s in summaries],
            kind=kind,
            trials=trials if trials and all(trials) else None,
            nulls=[s.get("nulls", {}).get(name, []) for s in summaries],
            ceilings=[c[name] for c in ceilings if name in c],
            criterion=criteria.get(name),
        )
        out[name] = ev
    verdict, reason = stats.verdict(list(out.values()))
    return {"evidence": {k: v.as_dict() for k, v in out.items()}, "verdict": verdict, "verdict_reason": reason}


def ceilings_of(runs: list[rundir.Run]) -> list[dict[str, float]]:
    """The phenomenon's noise-ceiling scores for every pair of seeds (both orders), or none if it has no ceiling."""
    from comparisons.engine.config import PHENOMENA
    from comparisons.engine.phenomenon import get_phenomenon

    name = runs[0].summary.get("phenomenon")
    if len(runs) < 2 or name not in PHENOMENA or name == "suite":
        return []
    ceiling = get_phenomenon(name).ceiling
    if ceiling is None:
        return []
    out = []
    for a, b in itertools.permutations(runs, 2):
        try:
            out.append(ceiling(a, b))
        except Exception as e:  # noqa: BLE001 - a ceiling that cannot be computed leaves the score un-normalised
            log.warning("noise ceiling of %s vs %s failed: %s", a.path, b.path, e)
    return out


def aggregate_summaries(summaries: list[dict[str, Any]], ceilings: Sequence[dict[str, float]] = ()) -> dict[str, Any]:
    """Combine the summaries of one config over seeds into one summary with intervals, nulls and the verdict."""
    first = summaries[0]
    kinds = first.get("kinds", {})
    names = sorted({k for s in summaries for k in s.get("scores", {})})
    intervals = {}
    for k in names:
        kind = kinds.get(k, "real")
        trials = [s.get("trials", {}).get(k, 0) for s in summaries] if kind == "fraction" else None
        values = [s.get("scores", {}).get(k, math.nan) for s in summaries]
        intervals[k] = stats.interval(values, kind, trials if trials and all(trials) else None)
    judged = judgement(summaries, ceilings)
    controls: dict[str, dict[str, Any]] = {}
    for name in sorted({k for s in summaries for k in s.get("negative_controls", {})}):
        rows = [s["negative_controls"][name] for s in summaries if name in s.get("negative_controls", {})]
        controls[name] = {
            "score": mean_ci([r.get("score", math.nan) for r in rows])[0],
            "rejected": all(bool(r.get("rejected")) for r in rows),
            "note": f"rejected in {sum(bool(r.get('rejected')) for r in rows)}/{len(rows)} seeds",
        }
    return {
        **{k: v for k, v in first.items() if k not in ("scores", "verdict", "negative_controls", "seed", "nulls")},
        "status": "complete",
        "aggregated": True,
        "n": len(summaries),
        "seeds": [s.get("seed") for s in summaries],
        "scores": {k: v[0] for k, v in intervals.items()},
        "score_intervals": {k: [v[1], v[2]] for k, v in intervals.items()},
        "score_quartiles": {k: quartiles([s.get("scores", {}).get(k) for s in summaries]) for k in names},
        **judged,
        "negative_controls": controls,
        "wall_time_s": round(sum(s.get("wall_time_s", 0.0) for s in summaries), 3),
        # the key numbers are per run: seed 0's, labelled; the evidence column of the scoreboard has the seed statistics
        "headline": {k: f"{v} (seed {first.get('seed')})" for k, v in first.get("headline", {}).items()},
    }


def aggregate_curves(curves: list[pd.DataFrame]) -> pd.DataFrame:
    """Mean, 95% interval and median per (member, step, metric) over seeds: rows ``m``, ``m:lo``, ``m:hi``,
    ``m:median``."""
    df = pd.concat(curves, ignore_index=True)
    out = []
    for (member, step, metric), g in df.groupby(["member", "step", "metric"], sort=True):
        m, lo, hi = mean_ci(g["value"].tolist())
        t = float(g["time"].mean())
        out += [
            (member, step, t, metric, m),
            (member, step, t, f"{metric}:lo", lo),
            (member, step, t, f"{metric}:hi", hi),
            (member, step, t, f"{metric}:median", quartiles(g["value"].tolist())[1]),
        ]
    return pd.DataFrame(out, columns=rundir.CURVE_COLUMNS)


def aggregate_runs(run_dirs: list[Path], out_dir: Path) -> dict[str, Any]:
    """Aggregate complete seed runs into ``out_dir`` (curves.csv, summary.json, config.yaml, then COMPLETE)."""
    runs = [rundir.load_run(p) for p in run_dirs if rundir.is_complete(p)]
    if not runs:
        raise rundir.RunDirError(f"no complete run under {out_dir}; rerun the jobs first")
    summary = aggregate_summaries([r.summary for r in runs], ceilings_of(runs))
    summary["children"] = [str(r.path) for r in runs]
    out_dir.mkdir(parents=True, exist_ok=True)
    rundir.write_yaml(out_dir / "config.yaml", runs[0].config)
    rundir.write_curves(out_dir / "curves.csv", aggregate_curves([r.curves for r in runs]))
    rundir.write_json(out_dir / "summary.json", summary)
    rundir.mark_complete(out_dir)
    return summary


def group_by_config(run_dirs: list[Path]) -> dict[str, list[Path]]:
    """Group run dirs whose configs differ only in ``seed`` (the multirun-over-seed case), one run per seed.

    A seed run twice (a ``seed=0`` run, then ``seeds=[0,1]``) counts once: the most recently finished run dir.
    """
    groups: dict[str, dict[Any, Path]] = {}
    for p in sorted(run_dirs, key=lambda q: (q / rundir.COMPLETE).stat().st_mtime if rundir.is_complete(q) else 0):
        cfg = dict(rundir.load_run(p).config)
        seed = cfg.pop("seed", None)
        cfg.pop("seeds", None)
        groups.setdefault(rundir.config_hash(cfg), {})[seed] = p
    return {k: list(v.values()) for k, v in groups.items()}
