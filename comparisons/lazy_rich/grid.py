"""Arrange saved lazy/rich curves into KD maps (rows: imbalance, columns: weight-to-target ratio).

Only the long curves table (member, step, time, metric, value) and plain dicts are read, so ``score`` (with the run
config) and ``figures`` (with the saved run dir) build the same maps. Map values are the last recorded log10_kd of
each member; a diverged member (a ``diverged`` row) leaves NaN.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from comparisons.lazy_rich import maps as lrm

VOICES = ("theory", "twin", "real")


def cell_label(lam: float, scale: float) -> str:
    """Member suffix of one Fig. 6 cell."""
    return f"lambda={lam:.4g},scale={scale:.4g}"


def final_values(curves: pd.DataFrame, metric: str) -> pd.Series:
    """member -> the value of ``metric`` at that member's last recorded step."""
    sub = curves[curves["metric"] == metric]
    if sub.empty:
        return pd.Series(dtype=np.float64)
    sub = sub.sort_values("step", kind="stable")
    return sub.groupby("member", sort=False)["value"].last().astype(np.float64)


def fig6_maps(curves: pd.DataFrame, numbers: dict[str, Any], metric: str = "log10_kd") -> dict[str, np.ndarray]:
    """Fig. 6 maps: ``{"twin": (R, C), "theory": (R, C)}`` of log10(KD + 1e-6), rows lambda, columns scale.

    ``metric="log10_kd:median"`` gives the median map of a seed-aggregated run.
    """
    final = final_values(curves, metric)
    labels = [[cell_label(a, b) for b in numbers["scale"]] for a in numbers["lambda"]]
    return {
        v: np.array([[final.get(f"{v}:{lab}", math.nan) for lab in row] for row in labels]) for v in ("twin", "theory")
    }


def axis_value(v: Any) -> float:
    """A sortable number for a sweep value: a list [r, ..., 1/r] (layer scales) -> log10(first / last)."""
    if isinstance(v, (list, tuple)):
        return math.log10(float(v[0]) / float(v[-1])) if len(v) > 1 and float(v[-1]) > 0 else float(v[0])
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def pair_maps(curves: pd.DataFrame, points: dict[str, dict], k: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Maps of the matched-pair sweep, one per facet (the sweep keys other than the two axes).

    Args:
        curves: Long table with real:, twin: and theory: members.
        points: label -> point dict (dotted key -> value), as in summary["points"].
        k: Phenomenon knobs (``ratio_key``, ``imbalance_key``).

    Returns:
        facet tag ("" without facets, else "key=value,...") -> dict with ``theory``, ``twin``, ``real`` (R, C) log10
        KD maps, ``log_ratio`` (R, C) log10(Sigma_0/S) per cell, ``labels`` (R, C) point labels, ``rows`` and ``cols``
        (axis tick texts). Columns are ordered by increasing measured ratio, rows by increasing imbalance value.
    """
    final = final_values(curves, "log10_kd")
    final = final[~final.index.isin(curves.loc[curves["metric"] == "diverged", "member"])]  # diverged: NaN cells
    ratio = final_values(curves, "log10_ratio")
    rkey, ikey = k["ratio_key"], k["imbalance_key"]
    groups: dict[str, list[str]] = {}
    for label, p in points.items():
        facet = ",".join(f"{key.rsplit('.', 1)[-1]}={v}" for key, v in p.items() if key not in (rkey, ikey))
        groups.setdefault(facet, []).append(label)
    out = {}
    for facet, labels in groups.items():
        rvals = sorted({_key(points[lab].get(ikey)) for lab in labels}, key=lambda s: axis_value(_unkey(s)))
        cvals = sorted(
            {_key(points[lab].get(rkey)) for lab in labels}, key=lambda s: _col_order(s, labels, points, rkey, ratio)
        )
        grid = np.full((len(rvals), len(cvals)), "", dtype=object)
        for lab in labels:
            grid[rvals.index(_key(points[lab].get(ikey))), cvals.index(_key(points[lab].get(rkey)))] = lab
        fm: dict[str, Any] = {"labels": grid, "rows": rvals, "cols": cvals, "row_key": ikey, "col_key": rkey}
        for v in VOICES:
            fm[v] = np.array([[final.get(f"{v}:{lab}", math.nan) if lab else math.nan for lab in row] for row in grid])
        fm["log_ratio"] = np.array(
            [[ratio.get(f"theory:{lab}", math.nan) if lab else math.nan for lab in row] for row in grid]
        )
        out[facet] = fm
    return out


def cell_table(curves: pd.DataFrame, points: dict[str, dict], fm: dict[str, Any]) -> pd.DataFrame:
    """One row per cell of a facet: log KD and loss-curve shape of real and twin, RWC, effective rank of dW."""
    rows = []
    loss = curves[curves["metric"] == "train_loss"]
    by_member = {m: g.sort_values("step") for m, g in loss.groupby("member")}
    finals = {m: final_values(curves, m) for m in ("rwc", "erank_dw_first")}
    for i, row in enumerate(fm["labels"]):
        for j, lab in enumerate(row):
            if not lab:
                continue
            rec: dict[str, Any] = {"label": lab, "row": i, "col": j, "log10_ratio": fm["log_ratio"][i, j]}
            for v in ("real", "twin"):
                rec[f"logkd_{v}"] = fm[v][i, j]
                g = by_member.get(f"{v}:{lab}")
                shape = lrm.curve_shape(g["time"].to_numpy(), g["value"].to_numpy()) if g is not None else {}
                rec[f"sharpness_{v}"] = shape.get("sharpness", math.nan)
                rec[f"sigmoid_vs_exp_{v}"] = shape.get("sigmoid_vs_exp", math.nan)
                for m, ser in finals.items():
                    rec[f"{m}_{v}"] = ser.get(f"{v}:{lab}", math.nan)
            rows.append(rec)
    return pd.DataFrame(rows)


def _key(v: Any) -> str:
    return repr(v)


def _unkey(s: str) -> Any:
    import ast

    try:
        return ast.literal_eval(s)
    except (ValueError, SyntaxError):
        return s


def _col_order(s: str, labels: list[str], points: dict[str, dict], rkey: str, ratio: pd.Series) -> float:
    vals = [ratio.get(f"theory:{lab}", math.nan) for lab in labels if _key(points[lab].get(rkey)) == s]
    vals = [v for v in vals if np.isfinite(v)]
    return float(np.mean(vals)) if vals else axis_value(_unkey(s))
