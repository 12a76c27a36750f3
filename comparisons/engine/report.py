"""The scoreboard, report.md / report.html and the scoreboard heatmap, rebuilt from run dirs alone.

``lintwin report PATH`` never retrains (docs/design.md "Data flow of one run"): it finds every run dir under PATH,
aggregates runs that differ only in their seed (mean and 95% interval, :mod:`comparisons.engine.aggregate`),
redraws each phenomenon's figures from its saved curves, and writes the report beside them.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import Any

from comparisons.engine import report_html, rundir
from comparisons.engine.aggregate import aggregate_summaries, ceilings_of, group_by_config

log = logging.getLogger(__name__)

COLUMNS = [
    "phenomenon",
    "setting",
    "n",
    "predicted",
    "observed",
    "theory",
    "twin",
    "evidence",
    "verdict",
    "neg. control",
    "seeds",
]
RULE = (
    "Verdict rule (comparisons/engine/stats.py, docs/theory.md 9): *agree* when every criterion's 95% seed interval "
    "lies on its passing side and every criterion with a null beats it at p < 0.05; *disagree* when an interval lies "
    "wholly on the failing side; *inconclusive* otherwise."
)
MISSING_EVIDENCE = "no evidence recorded (run dir predates nulls and ceilings); rerun with seeds=[0,1,2] for a verdict"


def evidence_cell(s: dict[str, Any]) -> str:
    """The scoreboard's evidence: the weakest judged criterion's p-value, and its normalised agreement if any."""
    ev = s.get("evidence")
    if ev is None:
        return "n/a (old run dir)"
    judged = {k: e for k, e in ev.items() if e.get("criterion")}
    if not judged:
        return "no criterion"
    with_p = [e["p"] for e in judged.values() if e.get("p") is not None]
    parts = [f"max p={max(with_p):.2g}" if with_p else "no null"]
    norm = [(k, e) for k, e in judged.items() if e.get("normalised") is not None]
    if norm:
        k, e = min(norm, key=lambda kv: kv[1]["normalised"])
        parts.append(f"norm {e['normalised']:.2f} [{e['normalised_lo']:.2f},{e['normalised_hi']:.2f}]")
    return ", ".join(parts)


def scoreboard_rows(summaries: list[dict[str, Any]]) -> list[dict[str, str]]:
    """One row per phenomenon and setting: key numbers, each voice's score, verdict, control result, seeds."""
    rows = []
    for s in summaries:
        head = s.get("headline") or {}
        scores = s.get("scores", {})
        intervals = s.get("score_intervals", {})
        fallback = [_fmt_score(k, v, intervals.get(k)) for k, v in list(scores.items())[:2]]
        controls = s.get("negative_controls", {})
        if controls:
            n_rej = sum(bool(c.get("rejected")) for c in controls.values())
            control = (
                "rejected" if n_rej == len(controls) else f"NOT rejected ({len(controls) - n_rej}/{len(controls)})"
            )
        else:
            control = "none"
        rows.append(
            {
                "phenomenon": str(s.get("phenomenon", "?")),
                "setting": str(s.get("name", "?")),
                "n": str(s.get("n", 1)),
                "predicted": head.get("predicted", ""),
                "observed": head.get("observed", ""),
                "theory": head.get("theory", "; ".join(fallback)),
                "twin": head.get("twin", ""),
                "evidence": evidence_cell(s),
                "verdict": str(s.get("verdict", "?")),
                "neg. control": control,
                "seeds": ",".join(str(x) for x in s.get("seeds", [s.get("seed")])),
            }
        )
    return rows


def format_table(rows: list[dict[str, str]], columns: list[str] = COLUMNS) -> str:
    """A plain-text table (what the terminal and the README show)."""
    widths = {c: max([len(c)] + [len(r.get(c, "")) for r in rows]) for c in columns}
    line = "  ".join(c.ljust(widths[c]) for c in columns)
    out = [line, "  ".join("-" * widths[c] for c in columns)]
    out += ["  ".join(r.get(c, "").ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(x.rstrip() for x in out)


def markdown_table(rows: list[dict[str, str]], columns: list[str] = COLUMNS) -> str:
    """The scoreboard rows as a Markdown table."""
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "\n".join("| " + " | ".join(r.get(c, "").replace("|", "/") for c in columns) + " |" for r in rows)


def print_summary(summary: dict[str, Any]) -> None:
    """Print the scoreboard of one run (or of a suite: its ``rows``) to stdout."""
    summaries = summary.get("children_summaries") or [summary]
    print(format_table(scoreboard_rows(summaries)))
    if summary.get("report"):
        print(f"\nreport: {summary['report']}")


def write_report(
    summaries: list[dict[str, Any]],
    figures: dict[str, list[Path]],
    out_dir: Path,
    title: str = "lintwin scoreboard",
    preamble: list[str] | None = None,
) -> Path:
    """Write report.md and report.html (figures inlined) and the scoreboard heatmap into ``out_dir``."""
    rows = scoreboard_rows(summaries)
    heat = forest_plot(summaries, out_dir / "figures")
    md = [f"# {title}", ""] + (preamble or []) + ["", markdown_table(rows), ""]
    md += [RULE, ""]
    if heat is not None:
        md += [f"![evidence]({heat.relative_to(out_dir)})", ""]
    for s in summaries:
        key = str(s.get("name"))
        md += [
            f"## {_one_line(s.get('phenomenon'))}: {_one_line(key)}",
            "",
            f"verdict: **{s.get('verdict')}** (n={s.get('n', 1)})",
            "",
        ]
        md += [f"- why: {s['verdict_reason']}" if s.get("verdict_reason") else f"- {MISSING_EVIDENCE}"]
        for k, e in (s.get("evidence") or {}).items():
            if e.get("criterion"):
                md.append(f"- `{k}` ({e.get('call')}): {e.get('flip', '')}")
        md.append("")
        intervals = s.get("score_intervals", {})
        md += ["| score | value | 95% interval | criterion |", "|---|---|---|---|"]
        crit = s.get("criteria", {})
        for k, v in s.get("scores", {}).items():
            iv = intervals.get(k)
            ivs = f"[{_num(iv[0])}, {_num(iv[1])}]" if iv else ""
            c = " ".join(str(x) for x in crit[k]) if k in crit else ""
            md.append(f"| {k} | {_num(v)} | {ivs} | {c} |")
        md.append("")
        for name, c in s.get("negative_controls", {}).items():
            state = "rejected" if c.get("rejected") else "NOT rejected"
            note = _one_line(c.get("note", ""))
            md.append(f"- negative control `{_one_line(name)}`: {state} (score {_num(c.get('score'))}) {note}")
        md += [f"- note: {_one_line(n)}" for n in s.get("notes", [])]
        md.append("")
        for fig in figures.get(key, []):
            if fig.suffix == ".png":
                md += [f"![{fig.stem}]({_rel(fig, out_dir)})", ""]
    text = "\n".join(md) + "\n"
    rundir.write_text(out_dir / "report.md", text)
    page = report_html.render(
        summaries, figures, out_dir, rows, COLUMNS, title, preamble or [], RULE, heat, MISSING_EVIDENCE
    )
    rundir.write_text(out_dir / "report.html", page)
    return out_dir / "report.md"


def forest_plot(summaries: list[dict[str, Any]], out_dir: Path) -> Path | None:
    """The evidence of every judged criterion, one row each: the seed values and 95% interval, the null's band
    (2.5-97.5% of its pooled draws), the noise ceiling and the criterion's threshold; colour = the criterion's call.
    Each row has its own x axis (scores have different units); a normalised criterion is drawn normalised.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for s in summaries:
        for k, e in (s.get("evidence") or {}).items():
            if e.get("criterion"):
                rows.append((f"{s.get('name')}: {k}", e))
    if not rows:
        return None
    colours = {"pass": "#009e73", "fail": "#d55e00", "straddle": "#e69f00"}
    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 0.62 * len(rows) + 1.0), squeeze=False)
    for ax, (label, e) in zip(axes[:, 0], rows, strict=True):
        crit = e["criterion"]
        norm = len(crit) > 2 and e.get("normalised") is not None

        def val(key: str, e: dict = e, norm: bool = norm) -> float:
            return math.nan if e.get(key) is None else _norm1(e[key], e, norm)

        if e.get("null_lo") is not None:
            ax.axvspan(val("null_lo"), val("null_hi"), color="0.85", label="null 95%")
        if e.get("ceiling") is not None:
            ax.axvline(val("ceiling"), color="#0072b2", lw=1.5, ls="--", label="ceiling")
        ax.axvline(float(crit[1]), color="k", lw=1, ls=":", label="threshold")
        lo, hi = (e.get("normalised_lo"), e.get("normalised_hi")) if norm else (e.get("lo"), e.get("hi"))
        centre = e.get("normalised") if norm else e.get("value")
        c = colours.get(e.get("call"), "0.4")
        if lo is not None and hi is not None:
            ax.plot([lo, hi], [0, 0], color=c, lw=3)
        if centre is not None:
            ax.plot([centre], [0], "o", color=c, ms=7)
        for v in e.get("values") or []:
            if v is not None:
                ax.plot([_norm1(v, e, norm)], [0.25], "|", color=c)
        p = e.get("p")
        ax.set_yticks([])
        ax.set_ylim(-0.6, 0.6)
        ax.set_ylabel("")
        ax.set_title(
            f"{label}  ({'normalised: 0 null, 1 ceiling' if norm else 'score'}; {crit[0]} {crit[1]}"
            + (f"; p={p:.2g}" if p is not None else "; no null")
            + ")",
            fontsize=8,
            loc="left",
        )
        ax.tick_params(axis="x", labelsize=7)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper right", fontsize=7, ncol=3)
    fig.suptitle("evidence per criterion: dot = seed mean, bar = 95% interval, ticks = seeds", fontsize=9, x=0.3)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "evidence.png", out_dir / "evidence.pdf"]
    for p in paths:
        tmp = p.with_name(p.name + ".tmp")
        fig.savefig(tmp, format=p.suffix[1:], dpi=130)
        tmp.replace(p)
    plt.close(fig)
    return paths[0]


def _norm1(v: float, e: dict[str, Any], norm: bool) -> float:
    """A value of the evidence ``e`` on the plot's axis: as is, or normalised (0 = null mean, 1 = ceiling)."""
    if not norm:
        return float(v)
    return (float(v) - e["null_mean"]) / (e["ceiling"] - e["null_mean"])


def collect(
    path: Path, skipped: list[tuple[Path, str]] | None = None
) -> tuple[list[dict[str, Any]], dict[str, list[Path]]]:
    """Summaries (seed groups aggregated) and redrawn figures of every complete, readable run under ``path``.

    Args:
        path: A run dir or a folder of runs.
        skipped: When given, receives ``(run dir, reason)`` for every run that cannot be read; those are left out
            of the report instead of stopping it.
    """
    from comparisons.engine.config import PHENOMENA
    from comparisons.engine.phenomenon import get_phenomenon

    runs = [p for p in rundir.find_runs(path) if rundir.is_complete(p)]
    runs = [p for p in runs if (p / "curves.csv").exists() and not _is_suite_or_parent(p, runs)]
    readable = []
    for p in runs:
        why = _unreadable(p)
        if why is None:
            readable.append(p)
        elif skipped is not None:
            skipped.append((p, why))
        else:
            raise rundir.RunDirError(f"{p}: {why}")
    runs = readable
    summaries, figures = [], {}
    for paths in group_by_config(runs).values():
        loaded = [rundir.load_run(p) for p in paths]
        summary = (
            loaded[0].summary
            if len(loaded) == 1
            else aggregate_summaries([r.summary for r in loaded], ceilings_of(loaded))
        )
        summaries.append(summary)
        name = summary.get("phenomenon")
        if name in PHENOMENA and name != "suite":
            try:
                figures[str(summary.get("name"))] = get_phenomenon(name).figures(loaded[0], loaded[0].path / "figures")
            except Exception as e:  # noqa: BLE001 - one broken figure must not stop the report
                log.warning("figures of %s failed: %s", loaded[0].path, e)
    return summaries, figures


def report_main(argv: list[str]) -> int:
    """``lintwin report PATH [PATH...]``: scoreboard + report from saved run dirs, no training."""
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: lintwin report PATH [PATH ...]   (run dirs, a multirun folder or a runs root)")
        return 0 if argv else 2
    for arg in argv:
        path = Path(arg)
        if not path.exists():
            print(f"lintwin: {path} does not exist; give a run dir or a folder of runs", file=sys.stderr)
            return 2
        skipped: list[tuple[Path, str]] = []
        summaries, figures = collect(path, skipped)
        if skipped:
            shown = "; ".join(f"{p} ({why})" for p, why in skipped[:5])
            more = f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""
            print(f"lintwin: report skipped {len(skipped)} unreadable run dir(s): {shown}{more}", file=sys.stderr)
        if not summaries:
            print(f"lintwin: no complete readable run under {path}; run `lintwin` first", file=sys.stderr)
            return 2
        out = write_report(summaries, figures, path if path.is_dir() else path.parent)
        print(format_table(scoreboard_rows(summaries)))
        print(f"\nreport: {out}")
    return 0


def _one_line(text: Any) -> str:
    """Text from a run dir on one Markdown line: a newline in a note cannot start an image line of its own."""
    return " ".join(str(text).splitlines())


def _unreadable(p: Path) -> str | None:
    """Why run dir ``p`` cannot go into a report (None: it can): a file missing, unparsable or of the wrong shape."""
    try:
        run = rundir.load_run(p)
    except rundir.RunDirError as e:
        return str(e).removeprefix(f"{p}: ").removeprefix(f"{p} ")
    except Exception as e:  # noqa: BLE001 - undecodable bytes, an empty csv, a folder in a file's place: skip it
        return f"unreadable ({type(e).__name__})"
    if not isinstance(run.config, dict) or not isinstance(run.summary, dict):
        return "config.yaml or summary.json is not a mapping"
    if list(run.curves.columns[: len(rundir.CURVE_COLUMNS)]) != rundir.CURVE_COLUMNS:
        return "curves.csv lacks the columns " + ", ".join(rundir.CURVE_COLUMNS)
    return None


def _is_suite_or_parent(p: Path, runs: list[Path]) -> bool:
    """Skip a suite's own dir and a seed-aggregate parent when its children are present too."""
    return any(other != p and other.is_relative_to(p) for other in runs)


def _fmt_score(k: str, v: Any, iv: Any) -> str:
    return f"{k}={_num(v)}" + (f" [{_num(iv[0])},{_num(iv[1])}]" if iv else "")


def _num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (int, float)):
        if not math.isfinite(v):
            return "nan" if math.isnan(v) else str(v)
        return f"{v:.3g}"
    return str(v)


def _rel(p: Path, base: Path) -> str:
    try:
        return str(p.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(p)
