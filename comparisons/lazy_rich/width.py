"""The width axis of lazy vs rich (``phenomenon.mode: width``; docs/theory.md 5.6).

A 2-layer MLP in NTK parametrisation, f = h^{-1/2} W2 a(W1 x) with W2 ~ N(0, 1) and W1 ~ N(0, 1/d), trained at the
same learning rate at every hidden width h (a zipped sweep axis ``model: [{width: h, output_scale: h^-1/2}, ...]``):
in the NTK limit its kernel stops moving, KD(0, T) -> 0 as h grows, and its weights move by RWC = O(h^{-1/2})
(docs/theory.md 2.6, 2.7, 5.6). The 2-layer linear theory at each width's measured init (``phenomenon.predict``)
predicts KD(0, T) for the twin, width by width; its slope against width is the theory's exponent.

Scores of one run (one seed), from the last eval step of every width:

- ``kd_width_slope_<voice>`` (real, twin, theory): the least-squares slope of log10 KD(0, T) against log10 h.
- ``rwc_width_slope_<voice>`` (real, twin): the same for the relative weight change (reported; -1/2 expected).
- ``kd_width_spearman_real``: Spearman correlation of KD(0, T) with h (-1 = KD falls at every step in width).
- ``theory_vs_real_slope_gap``: |slope_real - slope_theory| of KD, in decades of KD per decade of width.

Criteria: ``kd_width_slope_real < 0`` (KD falls with width: the NTK limit) and ``theory_vs_real_slope_gap <=
agree_slope_gap`` (the linear theory gets the rate). Nulls: the same scores with the widths permuted among the real
KDs (all permutations, or ``NULL_DRAWS`` of them). Noise ceiling of the gap: seed b's real slope standing in for the
theory's. Negative control: the theory with its width axis reversed (its slope negated) must miss the real slope by
more than ``agree_slope_gap``.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd

from comparisons.engine.phenomenon import Outcome
from comparisons.lazy_rich import maps as lrm
from comparisons.lazy_rich.grid import final_values

NULL_DRAWS = 1000
VOICES = ("real", "twin", "theory")


def point_width(point: dict[str, Any], key: str) -> float:
    """The width of a sweep point: ``point[key]``, or the key's last part inside a zipped mapping (``model: {...}``)."""
    head, _, leaf = key.rpartition(".")
    zipped = point.get(head)
    if key in point:
        return float(point[key])
    if isinstance(zipped, dict) and leaf in zipped:
        return float(zipped[leaf])
    raise KeyError(f"sweep point {point} sets no {key}")


def width_table(curves: pd.DataFrame, points: dict[str, dict], key: str) -> pd.DataFrame:
    """One row per width (ascending): ``width``, the final KD(0, T) of real, twin and theory, and their final RWC
    (``rwc_<voice>``; NaN where missing, e.g. the theory's RWC)."""
    kd, rwc = final_values(curves, "kd"), final_values(curves, "rwc")
    rows = []
    for label, point in points.items():
        row = {"width": point_width(point, key)}
        for voice in VOICES:
            member = f"{voice}:{label}" if label else voice
            row[voice] = float(kd.get(member, math.nan))
            row[f"rwc_{voice}"] = float(rwc.get(member, math.nan))
        rows.append(row)
    columns = ["width", *VOICES, *(f"rwc_{v}" for v in VOICES)]
    return pd.DataFrame(rows, columns=columns).sort_values("width").reset_index(drop=True)


def slope(width: np.ndarray, kd: np.ndarray) -> float:
    """Least-squares slope of log10 KD against log10 width over the finite, positive KDs (NaN with < 2 of them)."""
    ok = np.isfinite(kd) & (kd > 0)
    if ok.sum() < 2:
        return math.nan
    x, y = np.log10(width[ok]), np.log10(kd[ok])
    return float(np.polyfit(x, y, 1)[0])


def _permutations(n: int, seed: int) -> list[np.ndarray]:
    if math.factorial(n) <= NULL_DRAWS:
        return [np.asarray(p) for p in itertools.permutations(range(n))]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 17]))
    return [rng.permutation(n) for _ in range(NULL_DRAWS)]


def score_width(curves: pd.DataFrame, points: dict[str, dict], k: dict[str, Any], seed: int = 0) -> Outcome:
    """Scores, criteria, permutation nulls, the reversed-axis control and the headline (module docstring)."""
    table = width_table(curves, points, k["width_key"])
    w = table["width"].to_numpy(dtype=np.float64)
    slopes = {v: slope(w, table[v].to_numpy(dtype=np.float64)) for v in VOICES}
    real = table["real"].to_numpy(dtype=np.float64)
    gap_of = lambda s: abs(s - slopes["theory"])  # noqa: E731 - the one formula, for the score and its null
    scores = {f"kd_width_slope_{v}": s for v, s in slopes.items()}
    for v in ("real", "twin"):
        scores[f"rwc_width_slope_{v}"] = slope(w, table[f"rwc_{v}"].to_numpy(dtype=np.float64))
    scores["kd_width_spearman_real"] = lrm.spearman(w, real)
    scores["theory_vs_real_slope_gap"] = gap_of(slopes["real"])
    null_slopes = [slope(w[p], real) for p in _permutations(len(w), seed)]
    nulls = {
        "kd_width_slope_real": null_slopes,
        "theory_vs_real_slope_gap": [gap_of(s) for s in null_slopes],
    }
    tol = float(k["agree_slope_gap"])
    reversed_gap = abs(-slopes["theory"] - slopes["real"])
    controls = {
        "theory:width_reversed": {
            "score": reversed_gap,
            "rejected": bool(reversed_gap > tol) if math.isfinite(reversed_gap) else False,
            "note": f"the theory's slope negated misses the real slope by {reversed_gap:.2f} (must be > {tol:g})",
        }
    }
    span = f"h = {w.min():g}..{w.max():g}" if len(w) else "no widths"
    return Outcome(
        scores=scores,
        negative_controls=controls,
        notes=[
            f"final KD(0, T) and RWC against width ({span}, {len(w)} widths): slopes are least-squares fits of "
            f"log10 on log10 h; RWC slope real {scores['rwc_width_slope_real']:.2f} (NTK scaling: -1/2)"
        ],
        criteria={"kd_width_slope_real": ("<", 0.0), "theory_vs_real_slope_gap": ("<=", tol)},
        headline={
            "predicted": f"KD ~ h^{slopes['theory']:.2f}",
            "observed": f"KD ~ h^{slopes['real']:.2f}",
            "theory": f"slope gap {scores['theory_vs_real_slope_gap']:.2f}",
            "twin": f"KD ~ h^{slopes['twin']:.2f}",
        },
        nulls=nulls,
        kinds={"kd_width_spearman_real": "correlation"},
    )


def ceiling(curves_a: pd.DataFrame, curves_b: pd.DataFrame, points: dict[str, dict], k: dict[str, Any]) -> dict:
    """The gap between two seeds' real slopes: how close the theory could come, given seed-to-seed noise."""
    sa, sb = (
        slope(t["width"].to_numpy(dtype=np.float64), t["real"].to_numpy(dtype=np.float64))
        for t in (width_table(c, points, k["width_key"]) for c in (curves_a, curves_b))
    )
    return {"theory_vs_real_slope_gap": abs(sa - sb)}
