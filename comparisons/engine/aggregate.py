"""Seed aggregation: mean and 95% interval per curve and per score, and the verdict re-derived on the intervals.

A multi-seed run (``seeds=[0,1,2]``) or a Hydra multirun over ``seed`` gives n run dirs of one config. Scores are
combined as mean +- t_{0.975, n-1} * sd / sqrt(n) (Student t; for n = 1 the interval is the point). The verdict
comes from the phenomenon's documented ``criteria`` ({score: (op, threshold)}): *agree* when every interval lies
on the passing side, *disagree* when one lies wholly on the failing side, *inconclusive* when an interval straddles
a threshold. A negative control counts as rejected only when it was rejected in every seed.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from comparisons.engine import rundir

OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided Student-t interval of finite values; NaNs (e.g. censored scores) are dropped.

    Returns:
        (mean, lo, hi); all NaN when no finite value remains; lo = hi = mean for a single value.
    """
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    m = float(x.mean())
    if x.size == 1:
        return (m, m, m)
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return (m, m - half, m + half)


def verdict_from_intervals(intervals: dict[str, tuple[float, float, float]], criteria: dict[str, Sequence[Any]]) -> str:
    """Agree / disagree / inconclusive from score intervals and ``{score: (op, threshold)}`` criteria.

    A missing or NaN score makes its criterion inconclusive.
    """
    if not criteria:
        return "inconclusive"
    results = []
    for name, (op, thr) in criteria.items():
        _, lo, hi = intervals.get(name, (math.nan, math.nan, math.nan))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            results.append("straddle")
            continue
        ok_lo, ok_hi = OPS[op](lo, thr), OPS[op](hi, thr)
        results.append("pass" if ok_lo and ok_hi else "fail" if not (ok_lo or ok_hi) else "straddle")
    if "fail" in results:
        return "disagree"
    return "agree" if all(r == "pass" for r in results) else "inconclusive"


def aggregate_summaries(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Combine the summaries of one config over seeds into one summary with intervals."""
    first = summaries[0]
    names = sorted({k for s in summaries for k in s.get("scores", {})})
    intervals = {k: mean_ci([s.get("scores", {}).get(k, math.nan) for s in summaries]) for k in names}
    criteria = first.get("criteria", {})
    if criteria:
        verdict = verdict_from_intervals(intervals, criteria)
    else:  # no documented thresholds: unanimous child verdicts, else inconclusive
        verdicts = {s.get("verdict") for s in summaries}
        verdict = verdicts.pop() if len(verdicts) == 1 else "inconclusive"
    controls: dict[str, dict[str, Any]] = {}
    for name in sorted({k for s in summaries for k in s.get("negative_controls", {})}):
        rows = [s["negative_controls"][name] for s in summaries if name in s.get("negative_controls", {})]
        controls[name] = {
            "score": mean_ci([r.get("score", math.nan) for r in rows])[0],
            "rejected": all(bool(r.get("rejected")) for r in rows),
            "note": f"rejected in {sum(bool(r.get('rejected')) for r in rows)}/{len(rows)} seeds",
        }
    return {
        **{k: v for k, v in first.items() if k not in ("scores", "verdict", "negative_controls", "seed")},
        "status": "complete",
        "aggregated": True,
        "n": len(summaries),
        "seeds": [s.get("seed") for s in summaries],
        "scores": {k: v[0] for k, v in intervals.items()},
        "score_intervals": {k: [v[1], v[2]] for k, v in intervals.items()},
        "verdict": verdict,
        "negative_controls": controls,
        "wall_time_s": round(sum(s.get("wall_time_s", 0.0) for s in summaries), 3),
        # the key numbers are per run: show seed 0's, labelled, and the aggregated criteria scores beside them
        "headline": {
            **{
                k: f"{v} (seed {summaries[0].get('seed')})"
                for k, v in first.get("headline", {}).items()
                if k in ("predicted", "observed")
            },
            "theory": "; ".join(
                f"{k}={intervals[k][0]:.3g} [{intervals[k][1]:.3g},{intervals[k][2]:.3g}]"
                for k in criteria
                if k in intervals
            ),
        },
    }


def aggregate_curves(curves: list[pd.DataFrame]) -> pd.DataFrame:
    """Mean and 95% interval per (member, step, metric) over seeds: metric rows ``m``, ``m:lo``, ``m:hi``."""
    df = pd.concat(curves, ignore_index=True)
    out = []
    for (member, step, metric), g in df.groupby(["member", "step", "metric"], sort=True):
        m, lo, hi = mean_ci(g["value"].tolist())
        t = float(g["time"].mean())
        out += [
            (member, step, t, metric, m),
            (member, step, t, f"{metric}:lo", lo),
            (member, step, t, f"{metric}:hi", hi),
        ]
    return pd.DataFrame(out, columns=rundir.CURVE_COLUMNS)


def aggregate_runs(run_dirs: list[Path], out_dir: Path) -> dict[str, Any]:
    """Aggregate complete seed runs into ``out_dir`` (curves.csv, summary.json, config.yaml, then COMPLETE)."""
    runs = [rundir.load_run(p) for p in run_dirs if rundir.is_complete(p)]
    if not runs:
        raise rundir.RunDirError(f"no complete run under {out_dir}; rerun the jobs first")
    summary = aggregate_summaries([r.summary for r in runs])
    summary["children"] = [str(r.path) for r in runs]
    out_dir.mkdir(parents=True, exist_ok=True)
    rundir.write_yaml(out_dir / "config.yaml", runs[0].config)
    rundir.write_curves(out_dir / "curves.csv", aggregate_curves([r.curves for r in runs]))
    rundir.write_json(out_dir / "summary.json", summary)
    rundir.mark_complete(out_dir)
    return summary


def group_by_config(run_dirs: list[Path]) -> dict[str, list[Path]]:
    """Group run dirs whose configs differ only in ``seed`` (the multirun-over-seed case)."""
    groups: dict[str, list[Path]] = {}
    for p in run_dirs:
        cfg = dict(rundir.load_run(p).config)
        cfg.pop("seed", None)
        cfg.pop("seeds", None)
        groups.setdefault(rundir.config_hash(cfg), []).append(p)
    return groups
