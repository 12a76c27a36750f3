"""``experiment=homotopy``: how far the linear theory carries, along the homotopy from the twin to the real network.

For every preset of ``cfg.phenomenon["experiments"]`` and every strength s of ``cfg.phenomenon["strengths"]`` the
child experiment is run with ``model.nonlinearity_strength=s`` (the "real" member trains
``deep_models.with_nonlinearity(real, s)``: s = 0 is the layerwise linear twin, s = 1 the real network; docs/theory.md
1.5) over the job's seeds, into ``<run dir>/<experiment>/s=<s>/``, an ordinary run dir (complete children are reused).

From each child's engine-computed ``evidence`` the phenomenon's *main criterion* is read: the first criterion that has
a normalised agreement (0 = its null, 1 = its noise ceiling; docs/theory.md 9.3) at some strength. Its curve against s
gives the **half-way strength**: where the agreement has fallen half-way from its value at the twin (s = 0) to the
null (0), linearly interpolated between grid points; the interval comes from the seed intervals (the first strengths
where the upper, resp. lower, edge crosses the half-way level). A curve that stays above the level is *censored*
("not reached by s = <max>"), never a number. Where no criterion has a normalised value, the raw value is used
relative to its null mean and to the twin's value; where the twin has no value (it cannot fit the task, e.g. modular
addition), no half-way strength exists: the summary says so and the figure shows what is measurable (the raw score).

``phenomenon.width_axis`` (a preset, ``lazy_rich_width`` by default; null skips it) is run once more at s = 1 over the
same seeds: the lazy/rich width axis, final KD against width (docs/theory.md 5.6); its slopes and verdict go into the
summary (``width_axis``) and the report.

Writes ``summary.json`` (phenomenon "homotopy", per phenomenon: the curve, the half-way strength, notes),
``figures/homotopy.png`` and a report (the children's scoreboard via ``comparisons.engine.report.write_report``, with
the figure and a table of half-way strengths in front). Marked COMPLETE last.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from comparisons.engine import rundir
from comparisons.engine.config import STRENGTH_KEY, ConfigError, RunCfg, compose_experiment, to_container, validate
from comparisons.engine.jobs import child_overrides, missing_dataset
from comparisons.engine.report import write_report
from comparisons.engine.run import run
from comparisons.engine.rundir import git_commit, resolve_run_dir, versions

log = logging.getLogger(__name__)


def run_homotopy(cfg: RunCfg) -> dict[str, Any]:
    """Run every (experiment, strength) child, then write the agreement curves, half-way strengths, figure, report."""
    home = resolve_run_dir(cfg)
    (home / rundir.COMPLETE).unlink(missing_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    rundir.write_yaml(home / "config.yaml", to_container(cfg))
    strengths = strengths_of(cfg.phenomenon)
    overrides = dict(cfg.phenomenon.get("overrides") or {})
    t0 = time.time()
    notes: list[str] = []
    children: dict[str, dict[float, dict[str, Any]]] = {}
    child_dirs: list[str] = []
    for name in cfg.phenomenon["experiments"]:
        for s in strengths:
            run_dir = home / name / f"s={s:g}"
            extra = [*(overrides.get(name) or []), f"model.{STRENGTH_KEY}={s!r}"]
            child = validate(compose_experiment(name, [*child_overrides(cfg, run_dir, "homotopy"), *extra]))
            child.name = f"{name}@s={s:g}"
            missing = missing_dataset(child)
            if missing:
                line = f"{name} skipped: {missing} is not in the data root {child.paths.data_root} (set LINTWIN_DATA)"
                log.warning(line)
                print(f"lintwin: {line}")
                notes.append(line)
                break
            log.info("homotopy: %s at strength %g", name, s)
            summary = run(child)
            children.setdefault(name, {})[s] = summary
            child_dirs.append(str(run_dir))
    width = None
    if cfg.phenomenon.get("width_axis"):  # the lazy/rich width axis: KD at the end against width (docs/theory.md 5.6)
        name = str(cfg.phenomenon["width_axis"])
        run_dir = home / name
        extra = list(overrides.get(name) or [])
        child = validate(compose_experiment(name, [*child_overrides(cfg, run_dir, "homotopy"), *extra]))
        log.info("homotopy: the width axis, %s", name)
        width = run(child)
        child_dirs.append(str(run_dir))
    curves = {name: agreement_curve(by_s) for name, by_s in children.items()}
    for c in curves.values():
        c["half_way"] = half_way(c)
    wall = time.time() - t0
    fig = homotopy_figure(curves, home / "figures")
    summaries = [by_s[s] for by_s in children.values() for s in sorted(by_s)] + ([width] if width else [])
    preamble = [
        f"Twin-to-real homotopy over strengths {', '.join(f'{s:g}' for s in strengths)} (0 = linear twin, "
        f"1 = real network), seed(s) {cfg.seeds or [cfg.seed]}, wall time {wall:.0f} s.",
        "",
        *report_table(curves),
        "",
        *width_lines(width),
        f"![homotopy]({fig.relative_to(home)})",
        "",
        *notes,
    ]
    report = write_report(summaries, {}, home, title="lintwin: twin-to-real homotopy", preamble=preamble)
    out = {
        "phenomenon": "homotopy",
        "name": cfg.name or "homotopy",
        "status": "complete",
        "scores": {},
        "verdict": "inconclusive",
        "negative_controls": {},
        "strengths": strengths,
        "curves": curves,
        "half_way": {name: c["half_way"] for name, c in curves.items()},
        "width_axis": None if width is None else {k: width.get(k) for k in ("name", "verdict", "scores", "evidence")},
        "notes": notes,
        "children": child_dirs,
        "children_summaries": summaries,
        "figure": str(fig),
        "report": str(report),
        "seed": cfg.seed,
        "seeds": cfg.seeds or [cfg.seed],
        "git_commit": git_commit(),
        "versions": versions(),
        "wall_time_s": round(wall, 3),
    }
    rundir.write_json(home / "summary.json", out)
    rundir.mark_complete(home)
    return out


def strengths_of(phenomenon: dict[str, Any]) -> list[float]:
    """The sorted, distinct strengths of ``phenomenon.strengths``; they must lie in [0, 1] and include 0 (the twin)."""
    raw = phenomenon.get("strengths")
    if not isinstance(raw, list | tuple) or len(raw) < 2:
        raise ConfigError(f"phenomenon.strengths={raw!r} must list >= 2 strengths incl. 0, e.g. [0,0.2,0.4,0.6,0.8,1]")
    out = []
    for v in raw:
        try:
            f = float(v) if not isinstance(v, bool | str) else math.nan
        except (TypeError, ValueError):
            f = math.nan
        if not (math.isfinite(f) and 0.0 <= f <= 1.0):
            raise ConfigError(f"phenomenon.strengths: {v!r} is not a finite number in [0, 1] (0 = twin, 1 = real)")
        out.append(f)
    out = sorted(set(out))
    if out[0] != 0.0:
        raise ConfigError(f"phenomenon.strengths={raw} must include 0 (the twin: the half-way level is taken there)")
    return out


# --- the agreement curve of one phenomenon ---------------------------------------------------------------------


def _f(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def main_criterion(evidences: list[dict[str, Any]]) -> tuple[str | None, bool]:
    """(name, normalised): the first criterion with a finite normalised agreement at some strength, else the first
    criterion with a finite value at some strength (raw), else (None, False). Order: the evidence's own order, except
    that criteria of the twin alone (named "twin", not "real") come last: the strength moves only the real member, so
    a twin-only score is flat along the homotopy by construction."""
    names: list[str] = []
    for ev in evidences:
        names += [k for k, e in ev.items() if e.get("criterion") and k not in names]
    twin_only = [k for k in names if "twin" in k and "real" not in k]
    names = [k for k in names if k not in twin_only] + twin_only
    for k in names:
        if any(math.isfinite(_f(ev.get(k, {}).get("normalised"))) for ev in evidences):
            return k, True
    for k in names:
        if any(math.isfinite(_f(ev.get(k, {}).get("value"))) for ev in evidences):
            return k, False
    return None, False


def agreement_curve(by_strength: dict[float, dict[str, Any]]) -> dict[str, Any]:
    """The main criterion's agreement against strength, from the children's summaries (``{s: summary}``).

    Returns a dict with ``criterion``, ``scale`` ("normalised": 0 = null, 1 = ceiling; "relative": (value - null
    mean) / (twin's value - twin's null mean), 1 = the twin, 0 = the null; "raw": the value, no null to scale by),
    ``strengths``, ``agreement``/``lo``/``hi`` (NaN where not measured), the raw ``value``/``value_lo``/``value_hi``,
    ``null_mean``, ``p``, ``call`` and ``verdict`` per strength, and ``notes``.
    """
    strengths = sorted(by_strength)
    evs = [by_strength[s].get("evidence") or {} for s in strengths]
    name, normalised = main_criterion(evs)
    out: dict[str, Any] = {"criterion": name, "strengths": strengths, "notes": []}
    es = [ev.get(name or "", {}) for ev in evs]
    out.update(
        value=[_f(e.get("value")) for e in es],
        value_lo=[_f(e.get("lo")) for e in es],
        value_hi=[_f(e.get("hi")) for e in es],
        null_mean=[_f(e.get("null_mean")) for e in es],
        p=[_f(e.get("p")) for e in es],
        call=[e.get("call") for e in es],
        verdict=[by_strength[s].get("verdict") for s in strengths],
        criterion_rule=next((e.get("criterion") for e in es if e.get("criterion")), None),
    )
    nan = [math.nan] * len(strengths)
    if name is None:
        out.update(scale="none", agreement=nan, lo=nan, hi=nan)
        out["notes"].append("no criterion has a finite value at any strength: nothing to plot")
        return out
    if normalised:
        out.update(
            scale="normalised",
            agreement=[_f(e.get("normalised")) for e in es],
            lo=[_f(e.get("normalised_lo")) for e in es],
            hi=[_f(e.get("normalised_hi")) for e in es],
        )
        return out
    out["notes"].append(f"{name} has no normalised agreement (no noise ceiling): its raw value is used")
    v0, n0 = out["value"][0], out["null_mean"][0]
    if not (math.isfinite(v0) and math.isfinite(n0)) or v0 == n0:
        out.update(scale="raw", agreement=nan, lo=nan, hi=nan)
        return out
    scale = v0 - n0  # the twin's distance from its null; agreement 1 = the twin, 0 = the null

    def rel(v: float, n: float) -> float:
        return (v - (n if math.isfinite(n) else n0)) / scale

    lo = [rel(a, n) for a, n in zip(out["value_lo"], out["null_mean"], strict=True)]
    hi = [rel(a, n) for a, n in zip(out["value_hi"], out["null_mean"], strict=True)]
    out.update(
        scale="relative",
        agreement=[rel(v, n) for v, n in zip(out["value"], out["null_mean"], strict=True)],
        lo=[min(a, b) for a, b in zip(lo, hi, strict=True)],  # a negative scale swaps the edges
        hi=[max(a, b) for a, b in zip(lo, hi, strict=True)],
    )
    return out


def crossing(strengths: list[float], values: list[float], level: float) -> float | None:
    """The first strength at which ``values`` falls to ``level`` or below, linearly interpolated between grid points
    (``strengths[0]`` if it starts there); None if it never does (censored). NaN points are skipped."""
    pts = [(s, v) for s, v in zip(strengths, values, strict=True) if math.isfinite(v)]
    if not pts:
        return None
    if pts[0][1] <= level:
        return pts[0][0]
    for (s0, v0), (s1, v1) in zip(pts, pts[1:], strict=False):
        if v1 <= level:
            return s0 + (v0 - level) / (v0 - v1) * (s1 - s0)
    return None


def half_way(curve: dict[str, Any]) -> dict[str, Any]:
    """The strength where the agreement has fallen half-way from the twin's (s = 0) to the null's (0), with its
    interval; ``censored`` when the curve (or an interval edge) never gets there within the grid.

    Returns:
        ``{"status": "reached" | "not reached" | "undefined", "level", "strength", "lo", "hi", "lo_censored",
        "hi_censored", "why"}``; ``strength`` is None unless reached; ``hi`` is None when the lower interval edge
        never reaches the level (then ``hi_censored`` is True and the interval is [lo, > max strength]).
    """
    s, a = list(curve["strengths"]), list(curve["agreement"])
    smax = max(s) if s else math.nan
    out: dict[str, Any] = {"status": "undefined", "level": None, "strength": None, "lo": None, "hi": None}
    out.update(lo_censored=False, hi_censored=False, censored_at=smax)
    if not s or s[0] != 0.0 or not math.isfinite(a[0]):
        out["why"] = (
            "no agreement at the twin (s = 0): the main criterion has no finite value there, so no half-way level "
            "exists (the twin's theory has no meaning for this task; see the raw score in the figure)"
        )
        return out
    if a[0] <= 0:
        out["why"] = f"the twin does not beat the null (agreement {a[0]:.3g} <= 0): nothing to fall half-way from"
        return out
    level = a[0] / 2
    out["level"] = level
    mid = crossing(s, a, level)
    # the interval: the lower edge crosses first (earliest strength), the upper edge last
    first = crossing(s, list(curve.get("lo", a)), level)
    last = crossing(s, list(curve.get("hi", a)), level)
    out["lo"] = first
    out["hi"] = last
    out["lo_censored"] = first is None
    out["hi_censored"] = last is None
    if mid is None:
        out["status"] = "not reached"
        out["why"] = f"the agreement stays above half the twin's ({level:.3g}) up to s = {smax:g}: censored"
    else:
        out["status"] = "reached"
        out["strength"] = mid
        out["why"] = f"agreement falls to {level:.3g} (half the twin's {a[0]:.3g}) at s = {mid:.3g}"
    return out


def format_half_way(h: dict[str, Any]) -> str:
    """One cell: ``0.42 [0.31, 0.55]``, ``not reached (> 1) [0.8, > 1]`` or ``undefined``."""
    smax = h.get("censored_at", 1.0)

    def edge(v: float | None) -> str:
        return f"> {smax:g}" if v is None else f"{v:.2f}"

    if h["status"] == "undefined":
        return "undefined"
    iv = f"[{edge(h['lo'])}, {edge(h['hi'])}]"
    if h["status"] == "not reached":
        return f"not reached (> {smax:g}) {iv}"
    return f"{h['strength']:.2f} {iv}"


def report_table(curves: dict[str, dict[str, Any]]) -> list[str]:
    """The report's table: per experiment, the main criterion, the agreement at twin and real, the half-way."""
    rows = [
        "| experiment | main criterion | scale | agreement at s=0 (twin) | at s=1 (real) | half-way strength [95%] |",
        "|---|---|---|---|---|---|",
    ]
    for name, c in curves.items():
        cells = []
        for i in (0, -1):
            a, lo, hi = c["agreement"][i], c["lo"][i], c["hi"][i]
            cells.append(f"{a:.2f} [{lo:.2f}, {hi:.2f}]" if math.isfinite(a) else "n/a")
        rows.append(
            f"| {name} | {c['criterion']} | {c['scale']} | {cells[0]} | {cells[1]} | {format_half_way(c['half_way'])} |"
        )
    for name, c in curves.items():
        why = c["half_way"].get("why")
        rows += [f"- {name}: {why}" if why else "", *[f"- {name}: {n}" for n in c["notes"]]]
    return [r for r in rows if r]


def width_lines(width: dict[str, Any] | None) -> list[str]:
    """The report's lines on the width axis: the real and theory slopes of KD against width, and the verdict."""
    if not width:
        return []
    sc, iv = width.get("scores", {}), width.get("score_intervals", {})

    def cell(k: str) -> str:
        lo, hi = (iv.get(k) or [math.nan, math.nan])[:2]
        return f"{_f(sc.get(k)):.2f} [{_f(lo):.2f}, {_f(hi):.2f}]"

    return [
        f"Width axis ({width.get('name')}, n = {width.get('n', 1)}): slope of log10 KD(0, T) against log10 width, "
        f"real {cell('kd_width_slope_real')}, twin {cell('kd_width_slope_twin')}, theory "
        f"{cell('kd_width_slope_theory')}; RWC slope real {cell('rwc_width_slope_real')} (NTK scaling -1/2); "
        f"verdict {width.get('verdict')} ({width.get('verdict_reason', '')}).",
        "",
    ]


def homotopy_figure(curves: dict[str, dict[str, Any]], out_dir: Path) -> Path:
    """One panel of agreement against strength (bands = seed intervals, the half-way levels dashed); a second panel
    with the raw main-criterion value for experiments whose agreement is undefined at the twin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    raw = {n: c for n, c in curves.items() if not math.isfinite(c["agreement"][0] if c["agreement"] else math.nan)}
    ncols = 2 if raw else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.4 * ncols, 4.2), squeeze=False)
    ax = axes[0, 0]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, c) in enumerate(curves.items()):
        col = colours[i % len(colours)]
        s, a = np.asarray(c["strengths"]), np.asarray(c["agreement"], dtype=float)
        if np.isfinite(a).any():
            style = "-" if c["scale"] == "normalised" else "--"
            ax.plot(s, a, style, marker="o", color=col, label=f"{name} ({c['criterion']}, {c['scale']})")
            ax.fill_between(s, np.asarray(c["lo"], float), np.asarray(c["hi"], float), color=col, alpha=0.15)
            h = c["half_way"]
            if h.get("level") is not None:
                ax.axhline(h["level"], color=col, ls=":", lw=1)
            if h.get("strength") is not None:
                ax.plot([h["strength"]], [h["level"]], marker="x", color=col, ms=9)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("nonlinearity strength s   (0 = linear twin, 1 = real network)")
    ax.set_ylabel("agreement: 0 = null, 1 = ceiling (solid) / twin (dashed)")
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0], ["0\ntwin", "0.25", "0.5", "0.75", "1\nreal"])
    ax.set_title("agreement along the homotopy; dotted: half-way levels, x: half-way strength", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
    else:
        ax.text(0.5, 0.5, "no agreement measured at the twin", transform=ax.transAxes, ha="center", fontsize=9)
    if raw:
        ax2 = axes[0, 1]
        for i, (name, c) in enumerate(curves.items()):
            if name not in raw:
                continue
            col = colours[i % len(colours)]
            s, v = np.asarray(c["strengths"]), np.asarray(c["value"], dtype=float)
            ax2.plot(s, v, marker="o", color=col, label=f"{name}: {c['criterion']}")
            ax2.fill_between(
                s, np.asarray(c["value_lo"], float), np.asarray(c["value_hi"], float), color=col, alpha=0.15
            )
            rule = c.get("criterion_rule")
            if rule and len(rule) >= 2 and math.isfinite(_f(rule[1])):
                ax2.axhline(_f(rule[1]), color=col, ls=":", lw=1, label=f"criterion {rule[0]} {rule[1]}")
            nm = np.asarray(c["null_mean"], dtype=float)
            if np.isfinite(nm).any():
                ax2.plot(s, nm, color=col, ls="--", lw=0.8, label=f"{name}: null mean")
        ax2.set_xlabel("nonlinearity strength s   (0 = linear twin, 1 = real network)")
        ax2.set_ylabel("raw value of the main criterion")
        ax2.set_xticks([0, 0.25, 0.5, 0.75, 1.0], ["0\ntwin", "0.25", "0.5", "0.75", "1\nreal"])
        ax2.set_title("no agreement at the twin: what is measurable (missing = not measured)", fontsize=9)
        ax2.legend(fontsize=7, loc="best")
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "homotopy.png"
    fig.savefig(path, dpi=120)
    fig.savefig(out_dir / "homotopy.pdf")
    plt.close(fig)
    return path
