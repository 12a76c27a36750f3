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


BROWSERS = ("chromium-headless-shell", "chromium")
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  window.__errors.push(e.target && e.target.tagName ? e.target.tagName + " failed to load" : String(e.message));
}, true);
window.addEventListener("load", function () {
  var imgs = [].slice.call(document.images);
  var out = document.createElement("pre");
  out.id = "lintwin-probe";
  out.textContent = JSON.stringify({
    images: imgs.length,
    broken: imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
      .map(function (i) { return i.alt; }),
    errors: window.__errors,
    overflow: document.documentElement.scrollWidth > window.innerWidth + 1
  });
  document.body.appendChild(out);
});
</script>"""


def _browse(page: Path, browser: str, tmp_path: Path) -> dict:
    """Load ``page`` with the probe in headless Chromium; what the probe saw once the page had loaded."""
    import json
    import re
    import subprocess

    probed = page.with_name(page.stem + ".probe.html")
    probed.write_text(page.read_text().replace("<head>", "<head>\n" + PROBE, 1))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
    flags += ["--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    flags += ["--window-size=1280,900", "--virtual-time-budget=10000", "--dump-dom", probed.as_uri()]
    dom = subprocess.run([browser, *flags], capture_output=True, text=True, timeout=120, check=True).stdout
    found = re.search(r'<pre id="lintwin-probe">(.*?)</pre>', dom, re.S)
    assert found, f"the probe never ran: {dom[:300]!r}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def test_report_renders_in_a_real_browser(tmp_path: Path) -> None:
    """A real run's report.html in headless Chromium: every image decodes, no load error, nothing wider than the
    window. The same probe on a copy with one image's bytes broken reports that image (the check can fail)."""
    import shutil

    import pytest

    from comparisons.engine.report import report_main
    from comparisons.engine.run import run
    from tests.conftest import compose_cfg

    browser = next((b for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no headless Chromium: apt-get install chromium-headless-shell (README, 'Tests')")
    root = tmp_path / "runs"
    run(compose_cfg(["experiment=smoke", f"paths.runs_root={root}", "train.progress=off"]))
    assert report_main([str(root)]) == 0
    page = root / "report.html"
    seen = _browse(page, browser, tmp_path)
    assert seen["images"] >= 2 and seen["broken"] == [] and seen["errors"] == [] and not seen["overflow"], seen
    html = page.read_text()
    first = html.index("data:image/png;base64,") + len("data:image/png;base64,")
    broken = page.with_name("broken.html")
    broken.write_text(html[:first] + "AAAA" + html[first + 4 :])  # the PNG signature of the first image garbled
    seen = _browse(broken, browser, tmp_path)
    assert len(seen["broken"]) == 1 and seen["errors"] == ["IMG failed to load"], seen
