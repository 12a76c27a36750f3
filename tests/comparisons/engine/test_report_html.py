"""report.html: valid structure, every figure loads (inlined PNG), contents link to sections, text is escaped."""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path

from comparisons.engine.report import write_report

VOID = {"meta", "img", "br", "hr", "link", "input"}


class Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.imgs: list[str] = []
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self.doctype = ""

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag, attrs) -> None:
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag == "a":
            self.hrefs.append(a.get("href", ""))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()


def _png(path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def test_report_html_is_valid_and_every_image_loads(tmp_path: Path) -> None:
    run = tmp_path / "runA"
    (run / "config.yaml").parent.mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 0\n")
    fig = _png(run / "figures" / "curves.png")
    evidence = {
        "rho": {
            "value": 0.9,
            "lo": 0.8,
            "hi": 0.95,
            "p": 0.005,
            "normalised": 1.0,
            "normalised_lo": 0.9,
            "normalised_hi": 1.1,
            "call": "pass",
            "flip": "passes",
            "criterion": [">=", 0.5, "normalised"],
        }
    }
    summaries = [
        {
            "phenomenon": "lazy_rich",
            "name": "<b>x</b>",
            "verdict": "agree",
            "n": 3,
            "scores": {"rho": 0.9},
            "verdict_reason": "every criterion passes",
            "evidence": evidence,
            "criteria": {"rho": [">=", 0.5]},
            "negative_controls": {"perm": {"score": 0.1, "rejected": True, "note": "n"}},
            "notes": ["a & b"],
        },
        {"phenomenon": "grokking", "name": "old", "verdict": "agree", "scores": {"a": 1.0}},  # an old run dir
    ]
    outside = _png(tmp_path.parent / "outside.png")  # never inlined: not under the report's folder
    write_report(summaries, {"<b>x</b>": [fig, outside]}, tmp_path)
    page = (tmp_path / "report.html").read_text()
    c = Checker()
    c.feed(page)
    assert c.doctype.lower() == "doctype html" and c.errors == [] and c.stack == []
    assert len(c.imgs) >= 2  # the evidence plot and the run's figure; not the file outside
    for src in c.imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(h[1:] in c.ids for h in c.hrefs if h.startswith("#"))
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page  # escaped
    assert "runA/config.yaml" in c.hrefs
    assert "no evidence recorded" in page  # the old run dir says what it lacks
    assert "<details>" in page
