"""The scoreboard, report.md / report.html and the scoreboard heatmap, rebuilt from run dirs alone.

``lintwin report PATH`` never retrains (DESIGN.md "Data flow of one run"): it finds every run dir under PATH,
aggregates runs that differ only in their seed (mean and 95% interval, :mod:`comparisons.engine.aggregate`),
redraws each phenomenon's figures from its saved curves, and writes the report beside them.
"""

from __future__ import annotations

import base64
import html
import logging
import math
import sys
from pathlib import Path
from typing import Any

from comparisons.engine import rundir
from comparisons.engine.aggregate import aggregate_summaries, group_by_config

log = logging.getLogger(__name__)

COLUMNS = ["phenomenon", "setting", "n", "predicted", "observed", "theory", "twin", "verdict", "neg. control", "seeds"]


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
    heat = scoreboard_heatmap(summaries, out_dir / "figures")
    md = [f"# {title}", ""] + (preamble or []) + ["", markdown_table(rows), ""]
    if heat is not None:
        md += [f"![scoreboard]({heat.relative_to(out_dir)})", ""]
    for s in summaries:
        key = str(s.get("name"))
        md += [
            f"## {_one_line(s.get('phenomenon'))}: {_one_line(key)}",
            "",
            f"verdict: **{s.get('verdict')}** (n={s.get('n', 1)})",
            "",
        ]
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
    rundir.write_text(out_dir / "report.html", _html(text, out_dir))
    return out_dir / "report.md"


def scoreboard_heatmap(summaries: list[dict[str, Any]], out_dir: Path) -> Path | None:
    """One row per (setting, criterion or negative control); colour: pass (+1), undecided (0), fail (-1); each
    cell is annotated with the score and its threshold.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import seaborn as sns

    from comparisons.engine.aggregate import OPS

    labels, states, annots = [], [], []
    for s in summaries:
        setting = str(s.get("name"))
        iv = s.get("score_intervals", {})
        for k, (op, thr) in s.get("criteria", {}).items():
            v = s.get("scores", {}).get(k, math.nan)
            lo, hi = iv.get(k, [v, v])
            ok = [OPS[op](x, thr) if x is not None and math.isfinite(x) else None for x in (lo, hi)]
            labels.append(f"{setting}: {k}")
            states.append(1 if all(ok) else -1 if ok == [False, False] else 0)
            annots.append(f"{_num(v)}  (needs {op} {_num(thr)})")
        for k, c in s.get("negative_controls", {}).items():
            labels.append(f"{setting}: control {k}")
            states.append(1 if c.get("rejected") else -1)
            annots.append(("rejected" if c.get("rejected") else "NOT rejected") + f"  (score {_num(c.get('score'))})")
    if not labels:
        return None
    z = np.asarray(states, dtype=float)[:, None]
    fig, ax = plt.subplots(figsize=(8.5, 0.32 * len(labels) + 1.2))
    sns.heatmap(
        z,
        ax=ax,
        cmap=sns.color_palette(["#d55e00", "#f0e442", "#009e73"], as_cmap=True),
        vmin=-1,
        vmax=1,
        annot=np.asarray(annots, dtype=object)[:, None],
        fmt="",
        cbar=False,
        linewidths=0.5,
        xticklabels=False,
        yticklabels=labels,
        annot_kws={"fontsize": 8},
    )
    ax.set_title("green: criterion met / control rejected; orange: not; yellow: undecided", fontsize=9)
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "scoreboard.png", out_dir / "scoreboard.pdf"]
    for p in paths:
        tmp = p.with_name(p.name + ".tmp")
        fig.savefig(tmp, format=p.suffix[1:], dpi=130)
        tmp.replace(p)
    plt.close(fig)
    return paths[0]


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
        summary = loaded[0].summary if len(loaded) == 1 else aggregate_summaries([r.summary for r in loaded])
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


def _html(md: str, base: Path) -> str:
    """A dependency-free HTML rendering of the report with PNG figures inlined as data URIs."""
    out, in_table = (
        [
            "<html><head><meta charset='utf-8'><title>lintwin report</title><style>body{font-family:sans-serif;"
            "max-width:1100px;margin:auto}table{border-collapse:collapse}td,th{border:1px solid #bbb;"
            "padding:2px 6px;font-size:13px}img{max-width:100%}</style></head><body>"
        ],
        False,
    )
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
            if not in_table:
                out.append("<table>")
                in_table = True
                out.append("<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cells) + "</tr>")
            else:
                out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if line.startswith("!["):
            src = line[line.index("(") + 1 : line.rindex(")")]
            p = (base / src).resolve()  # symlinks followed: a link out of the report's folder is outside too
            if p.suffix == ".png" and p.is_file() and p.is_relative_to(base.resolve()):  # inline nothing else
                data = base64.b64encode(p.read_bytes()).decode()
                out.append(f"<p><img src='data:image/png;base64,{data}' alt='{html.escape(p.stem)}'></p>")
        elif line.startswith("## "):
            out.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("# "):
            out.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("- "):
            out.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{html.escape(line).replace('**', '')}</p>")
    if in_table:
        out.append("</table>")
    return "\n".join(out + ["</body></html>"])
