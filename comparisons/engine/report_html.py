"""report.html from a Jinja2 template: valid HTML5, a table of contents, per-setting sections with the verdict and
the judged criteria first, the full score tables collapsed, figures with captions, links to the run files.

Figures are inlined as data URIs, and only PNG files that lie under the report's folder (symlinks resolved) are read:
a crafted summary cannot make the report embed any other file. Every text is escaped (autoescape).
"""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path
from typing import Any

from jinja2 import Environment

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 1150px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; font-size: 13px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.agree { color: #007a55; font-weight: 600; } .disagree { color: #c0392b; font-weight: 600; }
.inconclusive { color: #a66f00; font-weight: 600; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #555; }
nav ul { columns: 2; } details { margin: 0.5em 0; } summary { cursor: pointer; }
code { background: #f5f5f5; padding: 0 3px; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
{% for line in preamble %}<p>{{ line }}</p>
{% endfor %}
<nav aria-label="contents"><h2>Contents</h2><ul>
<li><a href="#scoreboard">Scoreboard</a></li>
{% for s in sections %}<li><a href="#{{ s.id }}">{{ s.phenomenon }}: {{ s.name }}</a> (<span class="{{ s.verdict }}">{{ s.verdict }}</span>)</li>
{% endfor %}</ul></nav>
<h2 id="scoreboard">Scoreboard</h2>
<table>
<thead><tr>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>
{% for r in rows %}<tr>{% for c in columns %}<td{% if c == "verdict" %} class="{{ r[c] }}"{% endif %}>{{ r[c] }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table>
<p>{{ rule }}</p>
{% if evidence_figure %}<figure><img src="{{ evidence_figure }}" alt="evidence per criterion">
<figcaption>Evidence per criterion: dot = seed mean, bar = 95% seed interval, ticks = seeds, grey band = the null's
95% range, dashed = the noise ceiling, dotted = the criterion's threshold.</figcaption></figure>
{% endif %}
{% for s in sections %}
<section id="{{ s.id }}">
<h2>{{ s.phenomenon }}: {{ s.name }}</h2>
<p>Verdict: <span class="{{ s.verdict }}">{{ s.verdict }}</span> (n = {{ s.n }}). {{ s.reason }}</p>
{% if s.criteria %}<table>
<thead><tr><th>criterion</th><th>value [95% interval]</th><th>p vs null</th><th>normalised [interval]</th><th>call</th><th>what would flip it</th></tr></thead>
<tbody>
{% for c in s.criteria %}<tr><td><code>{{ c.name }}</code> {{ c.rule }}</td><td>{{ c.value }}</td><td>{{ c.p }}</td><td>{{ c.norm }}</td><td>{{ c.call }}</td><td>{{ c.flip }}</td></tr>
{% endfor %}</tbody>
</table>{% endif %}
{% if s.controls %}<h3>Negative controls</h3><ul>
{% for c in s.controls %}<li><code>{{ c.name }}</code>: {{ c.state }} (score {{ c.score }}) {{ c.note }}</li>
{% endfor %}</ul>{% endif %}
{% if s.notes %}<h3>Notes</h3><ul>
{% for n in s.notes %}<li>{{ n }}</li>
{% endfor %}</ul>{% endif %}
{% for f in s.figures %}<figure><img src="{{ f.src }}" alt="{{ f.name }}"><figcaption>{{ f.caption }}</figcaption></figure>
{% endfor %}
<details><summary>All {{ s.scores|length }} scores</summary>
<table><thead><tr><th>score</th><th>value</th><th>95% interval</th><th>criterion</th></tr></thead><tbody>
{% for r in s.scores %}<tr><td>{{ r.name }}</td><td>{{ r.value }}</td><td>{{ r.interval }}</td><td>{{ r.criterion }}</td></tr>
{% endfor %}</tbody></table>
</details>
{% if s.files %}<p>Run files: {% for f in s.files %}<a href="{{ f }}">{{ f }}</a>{% if not loop.last %}, {% endif %}{% endfor %}</p>{% endif %}
</section>
{% endfor %}
</body>
</html>
"""


def _num(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "" if v is None else str(v)
    return "nan" if not math.isfinite(f) else f"{f:.4g}"


def _inline(path: Path, base: Path) -> str | None:
    """A data URI of ``path`` if it is a PNG file under ``base`` (symlinks resolved), else None."""
    p = path.resolve()
    if p.suffix == ".png" and p.is_file() and p.is_relative_to(base.resolve()):
        return "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode()
    return None


def _caption(stem: str) -> str:
    return stem.replace("_", " ")


def render(
    summaries: list[dict[str, Any]],
    figures: dict[str, list[Path]],
    out_dir: Path,
    rows: list[dict[str, str]],
    columns: list[str],
    title: str,
    preamble: list[str],
    rule: str,
    evidence_png: Path | None,
    missing: str,
) -> str:
    """The report's HTML (see the module docstring)."""
    sections = []
    for i, s in enumerate(summaries):
        name = str(s.get("name"))
        ev = s.get("evidence") or {}
        criteria = [
            {
                "name": k,
                "rule": " ".join(str(x) for x in e["criterion"]),
                "value": f"{_num(e.get('value'))} [{_num(e.get('lo'))}, {_num(e.get('hi'))}]",
                "p": _num(e.get("p")) or "no null",
                "norm": (
                    f"{_num(e.get('normalised'))} [{_num(e.get('normalised_lo'))}, {_num(e.get('normalised_hi'))}]"
                    if e.get("normalised") is not None
                    else ""
                ),
                "call": e.get("call", ""),
                "flip": e.get("flip", ""),
            }
            for k, e in ev.items()
            if e.get("criterion")
        ]
        intervals, crit = s.get("score_intervals", {}), s.get("criteria", {})
        scores = [
            {
                "name": k,
                "value": _num(v),
                "interval": f"[{_num(intervals[k][0])}, {_num(intervals[k][1])}]" if k in intervals else "",
                "criterion": " ".join(str(x) for x in crit[k]) if k in crit else "",
            }
            for k, v in s.get("scores", {}).items()
        ]
        figs, files = [], []
        for f in figures.get(name, []):
            src = _inline(f, out_dir) if f.suffix == ".png" else None
            if src:
                figs.append({"src": src, "name": f.stem, "caption": f"{name}: {_caption(f.stem)}"})
                run_dir = f.parent.parent
                for rel in ("config.yaml", "curves.csv", "summary.json"):
                    q = run_dir / rel
                    if q.is_file() and q.resolve().is_relative_to(out_dir.resolve()):
                        link = q.resolve().relative_to(out_dir.resolve()).as_posix()
                        if link not in files:
                            files.append(link)
        sections.append(
            {
                "id": f"s{i}-" + re.sub(r"[^A-Za-z0-9_-]+", "-", name),
                "phenomenon": s.get("phenomenon", "?"),
                "name": name,
                "verdict": s.get("verdict", "?"),
                "n": s.get("n", 1),
                "reason": s.get("verdict_reason") or missing,
                "criteria": criteria,
                "controls": [
                    {
                        "name": k,
                        "state": "rejected" if c.get("rejected") else "NOT rejected",
                        "score": _num(c.get("score")),
                        "note": c.get("note", ""),
                    }
                    for k, c in s.get("negative_controls", {}).items()
                ],
                "notes": list(s.get("notes", [])),
                "figures": figs,
                "scores": scores,
                "files": files,
            }
        )
    env = Environment(autoescape=True, trim_blocks=False)
    return env.from_string(TEMPLATE).render(
        title=title,
        preamble=preamble,
        sections=sections,
        rows=rows,
        columns=columns,
        rule=rule,
        evidence_figure=_inline(evidence_png, out_dir) if evidence_png else None,
    )
