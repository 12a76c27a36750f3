"""Verdicts that are evidence: seed intervals, nulls with p-values, noise ceilings, and the one verdict rule.

A phenomenon's ``score`` says, per run (one seed), what its scores are and how each is judged
(:class:`comparisons.engine.phenomenon.Outcome`): ``criteria`` ``{score: (op, threshold)}`` or
``{score: (op, threshold, "normalised")}``, ``nulls`` ``{score: [the same score where it must fail]}`` (permutation
nulls, >= 200 draws where cheap, or the negative controls' values) and ``kinds`` (``"real"``, ``"correlation"`` or
``"fraction"`` with ``trials``). Its optional ``ceiling(run_a, run_b)`` gives the same scores computed between two
independent seeds of the observed side. Everything else is here, once, for every phenomenon:

- **interval** over seeds (95%): Student t for real scores; Fisher z, then t, for correlations (stays in (-1, 1));
  Wilson's binomial interval on the pooled counts for fractions with known trials (stays in [0, 1]).
- **p-value** of the seed mean against its null: the null draws of each seed are averaged draw by draw (independent
  draws per seed, so the average is a draw of the seed-mean statistic under the null), and
  p = (1 + #{null draws at least as good as the observed mean}) / (1 + #draws), "good" meaning the passing side
  of the criterion. With fewer than 19 draws p can never reach 0.05: such a score can only be inconclusive.
- **noise ceiling** and **normalised agreement**: 0 at the null's mean, 1 at the ceiling (the mean of the score
  between seed pairs of the observed side).
- **the verdict rule** (:func:`verdict`, documented in docs/theory.md and docs/design.md "Verdicts"):
  *agree* when every criterion's seed interval lies on its passing side, every criterion with a null beats it at
  p < 0.05 and at least one criterion has a null; *disagree* when some criterion's interval lies wholly on its
  failing side; *inconclusive* otherwise (a straddling interval, a p >= 0.05, no null at all, fewer than
  ``MIN_SEEDS`` seeds, a missing score).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps

OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
ALPHA = 0.05  # a criterion beats its null when p < ALPHA
LEVEL = 0.95  # seed intervals
MIN_SEEDS = 2  # fewer seeds give no interval: the verdict is inconclusive
VERDICTS = ("agree", "disagree", "inconclusive")


@dataclass
class Evidence:
    """One score over seeds: value, per-seed values, interval, null, p-value, ceiling and normalised agreement."""

    name: str
    values: list[float]
    value: float
    lo: float
    hi: float
    kind: str = "real"
    null_mean: float = math.nan
    null_lo: float = math.nan  # 2.5th and 97.5th percentiles of the pooled null draws (the null band)
    null_hi: float = math.nan
    null_draws: int = 0
    p: float = math.nan
    ceiling: float = math.nan
    normalised: float = math.nan
    normalised_lo: float = math.nan
    normalised_hi: float = math.nan
    criterion: list[Any] | None = None
    call: str = "no criterion"  # pass | fail | straddle | no criterion
    flip: str = ""  # what would change this criterion's call
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form written to summary.json (``evidence`` section; NaN as null, so it reads back equal)."""

        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            return [clean(x) for x in v] if isinstance(v, list) else v

        return {k: clean(v) for k, v in self.__dict__.items() if k != "name"}


def _finite(values: Sequence[Any]) -> np.ndarray:
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return np.asarray(out, dtype=np.float64)


def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """Mean and two-sided Student-t interval of the finite values (lo = hi = mean for one value, NaN for none)."""
    x = _finite(values)
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    m = float(x.mean())
    if x.size == 1:
        return (m, m, m)
    half = float(sps.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return (m, m - half, m + half)


def correlation_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """Mean and interval of correlations through Fisher's z: t interval of atanh(r), mapped back (inside (-1, 1))."""
    x = np.clip(_finite(values), -1 + 1e-12, 1 - 1e-12)
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    m, lo, hi = t_interval(np.arctanh(x), level)
    return (float(np.tanh(m)), float(np.tanh(lo)), float(np.tanh(hi)))


def wilson_interval(successes: float, trials: float, level: float = LEVEL) -> tuple[float, float, float]:
    """Proportion and Wilson score interval of ``successes`` out of ``trials`` (inside [0, 1])."""
    if trials <= 0:
        return (math.nan, math.nan, math.nan)
    z = float(sps.norm.ppf(0.5 + level / 2))
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (p, max(0.0, centre - half), min(1.0, centre + half))


def interval(values: Sequence[float], kind: str = "real", trials: Sequence[float] | None = None):
    """The seed interval of one score, by its kind (module docstring)."""
    if kind == "correlation":
        return correlation_interval(values)
    if kind == "fraction" and trials is not None:
        pairs = [(float(v), float(n)) for v, n in zip(values, trials, strict=True) if _finite([v]).size and n > 0]
        k = sum(v * n for v, n in pairs)
        n = sum(n for _, n in pairs)
        return wilson_interval(k, n)
    return t_interval(values)


def better(op: str) -> int:
    """+1 when larger values pass the criterion's operator, -1 when smaller ones do."""
    return 1 if op in (">=", ">") else -1


def p_value(observed: float, null: Sequence[float], op: str) -> float:
    """One-sided permutation p-value: the share of null draws at least as good as ``observed`` (with the +1)."""
    draws = _finite(null)
    if draws.size == 0 or not math.isfinite(observed):
        return math.nan
    sign = better(op)
    at_least = int(np.sum(sign * draws >= sign * observed - 1e-12 * max(1.0, abs(observed))))
    return (1 + at_least) / (1 + draws.size)


def pooled_null(per_seed: Sequence[Sequence[float]]) -> np.ndarray:
    """Null draws of the seed mean: draw j of every seed, averaged (as many draws as the shortest seed has)."""
    seeds = [_finite(d) for d in per_seed if len(d)]
    if not seeds:
        return np.zeros(0)
    m = min(s.size for s in seeds)
    return np.mean([s[:m] for s in seeds], axis=0) if m else np.zeros(0)


def permutation_null(stat, x: np.ndarray, y: np.ndarray, n: int = 200, seed: int = 0) -> list[float]:
    """``stat(x[perm], y)`` for ``n`` random permutations of x's first axis (a seeded, reproducible null)."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x)
    return [float(stat(x[rng.permutation(len(x))], y)) for _ in range(n)]


def passes(scores: dict[str, float], criteria: dict[str, Sequence[Any]]) -> dict[str, bool | None]:
    """Each absolute criterion checked on one run's point values (None: missing, non-finite or normalised).

    Not a verdict (one run has no interval and no p-value): the phenomena use it for their negative controls
    ("passes fewer criteria than the real prediction") and their tests for the scores' arithmetic.
    """
    out: dict[str, bool | None] = {}
    for name, crit in criteria.items():
        v = scores.get(name, math.nan)
        ok = len(crit) < 3 and isinstance(v, (int, float)) and math.isfinite(v)
        out[name] = bool(OPS[crit[0]](v, float(crit[1]))) if ok else None
    return out


def judge(value_lo_hi: tuple[float, float, float], criterion: Sequence[Any]) -> str:
    """``pass`` / ``fail`` / ``straddle`` of an interval against ``(op, threshold)``."""
    _, lo, hi = value_lo_hi
    op, thr = criterion[0], float(criterion[1])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "straddle"
    ok_lo, ok_hi = OPS[op](lo, thr), OPS[op](hi, thr)
    return "pass" if ok_lo and ok_hi else "fail" if not (ok_lo or ok_hi) else "straddle"


def evidence(
    name: str,
    values: Sequence[float],
    *,
    kind: str = "real",
    trials: Sequence[float] | None = None,
    nulls: Sequence[Sequence[float]] = (),
    ceilings: Sequence[float] = (),
    criterion: Sequence[Any] | None = None,
) -> Evidence:
    """The evidence of one score over seeds (module docstring); ``criterion`` is ``(op, thr[, "normalised"])``."""
    vals = [float(v) if _finite([v]).size else math.nan for v in values]
    m, lo, hi = interval(vals, kind, trials)
    ev = Evidence(name=name, values=vals, value=m, lo=lo, hi=hi, kind=kind)
    null = pooled_null(nulls)
    ceil = _finite(ceilings)
    if ceil.size:
        ev.ceiling = float(ceil.mean())
    on_normalised = bool(criterion) and len(criterion) > 2 and criterion[2] == "normalised"
    # which raw direction is "better": the criterion's operator, or for a normalised criterion the side of the
    # ceiling (an error score such as an RMSE has its ceiling below its null: lower is better)
    op = criterion[0] if criterion else ">="
    if on_normalised and null.size and ceil.size:
        op = ">=" if ev.ceiling >= float(null.mean()) else "<="
    if null.size:
        ev.null_mean, ev.null_draws = float(null.mean()), int(null.size)
        ev.null_lo, ev.null_hi = (float(q) for q in np.percentile(null, [2.5, 97.5]))
        ev.p = p_value(m, null, op)
    if null.size and ceil.size and abs(ev.ceiling - ev.null_mean) > 1e-12:
        span = ev.ceiling - ev.null_mean
        norm = [(v - ev.null_mean) / span for v in vals]
        ev.normalised, ev.normalised_lo, ev.normalised_hi = t_interval(norm)
    if criterion is None:
        return ev
    ev.criterion = list(criterion)
    target = (ev.normalised, ev.normalised_lo, ev.normalised_hi) if on_normalised else (m, lo, hi)
    if on_normalised and not math.isfinite(ev.normalised):
        ev.notes.append("criterion on the normalised score, but no null or no ceiling: undecided")
    n = int(_finite(vals).size)
    ev.call = judge(target, criterion) if n >= MIN_SEEDS else "straddle"
    ev.flip = _flip(ev, criterion, target, n)
    return ev


def _flip(ev: Evidence, criterion: Sequence[Any], target: tuple[float, float, float], n: int) -> str:
    op, thr = criterion[0], float(criterion[1])
    what = "normalised " if len(criterion) > 2 else ""
    if n < MIN_SEEDS:
        return f"{n} seed(s): run >= {MIN_SEEDS} (seeds=[0,1,2]) for an interval"
    if ev.call == "pass":
        edge = target[1] if better(op) > 0 else target[2]
        line = f"passes: {what}interval edge {edge:.3g} vs threshold {thr:g}"
    elif ev.call == "fail":
        edge = target[2] if better(op) > 0 else target[1]
        line = f"fails: even the {what}interval's best edge {edge:.3g} misses {op} {thr:g}"
    else:
        line = f"straddles {op} {thr:g} ({what}[{target[1]:.3g}, {target[2]:.3g}]): more seeds or a larger effect"
    if math.isfinite(ev.p):
        line += f"; p={ev.p:.3g} vs its null ({ev.null_draws} draws, mean {ev.null_mean:.3g})"
    return line


def verdict(evidences: Sequence[Evidence]) -> tuple[str, str]:
    """The one verdict rule (module docstring) over the criteria's evidence; returns (verdict, the reason)."""
    judged = [e for e in evidences if e.criterion is not None]
    if not judged:
        return "inconclusive", "no criterion"
    seeds = max(int(_finite(e.values).size) for e in judged)
    if seeds < MIN_SEEDS:
        return "inconclusive", f"{seeds} seed(s): no seed interval; run seeds=[0,1,2] for a verdict"
    failing = [e.name for e in judged if e.call == "fail"]
    if failing:
        return "disagree", f"interval wholly on the failing side: {', '.join(failing)}"
    open_ = [e.name for e in judged if e.call != "pass"]
    if open_:
        return "inconclusive", f"interval not decided: {', '.join(open_)}"
    with_null = [e for e in judged if e.null_draws]
    if not with_null:
        return "inconclusive", "no criterion has a null: agreement with chance not excluded"
    weak = [f"{e.name} (p={e.p:.2g})" for e in with_null if not (e.p < ALPHA)]
    if weak:
        return "inconclusive", f"does not beat its null at p < {ALPHA}: {', '.join(weak)}"
    return "agree", f"every criterion passes on its interval and beats its null at p < {ALPHA}"
