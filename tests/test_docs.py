"""The documentation holds together: theory citations resolve, the README stays short, relative links point at files.

Code, configs and docs cite the theory reference as ``docs/theory.md 5.4`` (a section, also ``docs/theory.md
section 2``, lists ``2.6, 3.3`` and ranges ``5.2-5.4``) or ``docs/theory.md eq. 3.1.2`` (a numbered equation).
Every cited section must be a heading of docs/theory.md and every cited equation a label ``(3.1.2)`` in it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

THEORY = ROOT / "docs" / "theory.md"
README_MAX_CHARS = 12_000
SKIP_DIRS = {"runs", "outputs", "multirun", "wandb", "__pycache__", "node_modules"}

_NUM = r"\d+(?:\.\d+)*"
# "docs/theory.md 5.2", "docs/theory.md section 2", "docs/theory.md 2.6, 3.3", "docs/theory.md 5.2-5.4"
_SECTION_CITE = re.compile(
    rf"docs/theory\.md,?\s+(?:sections?\s+|§\s*)?(?P<nums>{_NUM}(?:\s*(?:,|-|–|and)\s*{_NUM}(?![\w/]))*)"
)
# "docs/theory.md eq. 3.1.1", "docs/theory.md eq. (3.1.2)"
_EQ_CITE = re.compile(rf"docs/theory\.md,?\s+eqs?\.\s*\(?(?P<num>{_NUM})\)?")
_HEADING = re.compile(rf"^#{{2,3}}\s+(?P<num>{_NUM})\.?\s", re.M)
_EQ_LABEL = re.compile(r"\((?P<num>\d+\.\d+\.\d+)\)\s*$", re.M)


def theory_sections(text: str) -> set[str]:
    """The section numbers of the theory reference: '1', '1.1', ..., '8.3'."""
    return {m["num"] for m in _HEADING.finditer(text)}


def theory_equations(text: str) -> set[str]:
    """The equation labels of the theory reference: '3.1.1' for a formula line ending in '(3.1.1)'."""
    return {m["num"] for m in _EQ_LABEL.finditer(text)}


def unresolved_citations(text: str, sections: set[str], equations: set[str]) -> list[str]:
    """The cited section and equation numbers in ``text`` that the theory reference does not have."""
    bad = [n for m in _SECTION_CITE.finditer(text) for n in re.findall(_NUM, m["nums"]) if n not in sections]
    bad += [f"eq. {m['num']}" for m in _EQ_CITE.finditer(text) if m["num"] not in equations]
    return bad


def cited_files() -> list[Path]:
    """Every .py, .yaml and .md file of the project but this one (whose bad citations are on purpose).

    Hidden folders (the venv, .git) and run outputs are left out.
    """
    out = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT).parts
        if any(p.startswith(".") or p in SKIP_DIRS for p in rel[:-1]):
            continue
        if path.is_file() and path.suffix in {".py", ".yaml", ".yml", ".md"} and path != Path(__file__):
            out.append(path)
    return sorted(out)


def test_theory_has_the_fixed_sections():
    sections = theory_sections(THEORY.read_text())
    for top, subs in {"1": 5, "2": 7, "3": 3, "4": 8, "5": 5, "6": 6, "7": 4, "8": 3}.items():
        assert top in sections
        assert {f"{top}.{k}" for k in range(1, subs + 1)} <= sections, top
    assert {"3.1.1", "3.1.2", "3.1.3", "3.2.1", "4.3.1"} <= theory_equations(THEORY.read_text())


def test_citation_parser_catches_a_missing_section():
    sections, equations = {"2", "2.6", "3.3", "5.2", "5.3", "5.4"}, {"3.1.2"}
    good = "see docs/theory.md 2.6, 3.3 (docs/theory.md section 2); docs/theory.md 5.2-5.4, docs/theory.md eq. 3.1.2"
    assert unresolved_citations(good, sections, equations) == []
    bad = "(docs/theory.md 9.9) and docs/theory.md 2.6, 3.4; docs/theory.md 5.2-5.7, docs/theory.md eq. (3.1.9)"
    assert unresolved_citations(bad, sections, equations) == ["9.9", "3.4", "5.7", "eq. 3.1.9"]


def test_every_theory_citation_resolves():
    text = THEORY.read_text()
    sections, equations = theory_sections(text), theory_equations(text)
    files = cited_files()
    assert len(files) > 50  # the walk found the project
    bad = {}
    n_cites = 0
    for path in files:
        body = path.read_text(errors="replace")
        n_cites += len(_SECTION_CITE.findall(body)) + len(_EQ_CITE.findall(body))
        if missing := unresolved_citations(body, sections, equations):
            bad[str(path.relative_to(ROOT))] = missing
    assert n_cites > 100  # the citations were found at all
    assert not bad, f"citations of docs/theory.md sections that do not exist: {bad}"


@pytest.mark.parametrize("bad", ["docs/theory.md 10.1", "docs/theory.md section 0"])
def test_citation_parser_flags_single_bad_numbers(bad):
    assert unresolved_citations(bad, {"1"}, set()) != []


# [text](target) and ![alt](target); the target ends at the first space or ")" (an optional "title" may follow).
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?(?P<target>[^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def github_anchor(heading: str) -> str:
    """GitHub's anchor for a markdown heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors_of(markdown: str) -> set[str]:
    """The anchors of a markdown file's headings (code blocks, whose '#' lines are comments, excluded)."""
    body = _FENCE.sub("", markdown)
    return {github_anchor(m[1]) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", body, re.M)}


def broken_links(path: Path) -> list[str]:
    """The relative links and images of a markdown file that point at no file, or at no heading of it."""
    body = _FENCE.sub("", path.read_text())
    bad = []
    for m in _LINK.finditer(body):
        target = m["target"]
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        check_anchor = dest.exists() and bool(anchor) and dest.suffix == ".md"
        if not dest.exists() or (check_anchor and anchor not in anchors_of(dest.read_text())):
            bad.append(target)
    return bad


def docs_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]


def test_readme_is_short():
    n = len((ROOT / "README.md").read_text())
    assert n <= README_MAX_CHARS, f"README.md has {n} characters; move detail into docs/ (limit {README_MAX_CHARS})"


def test_readme_links_the_docs():
    readme = (ROOT / "README.md").read_text()
    for page in ("docs/findings.md", "docs/scale-out.md", "docs/benchmarks.md", "docs/theory.md"):
        assert f"]({page})" in readme, page


@pytest.mark.parametrize("page", docs_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    assert page.exists()
    assert broken_links(page) == []


def test_link_checker_catches_a_broken_link(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "a.png").write_bytes(b"")
    (tmp_path / "other.md").write_text("# Other\n\n## W&B offline, then sync\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n![ok](figures/a.png) [ok](other.md#wb-offline-then-sync) [ok](#page) [web](https://x.org/y)\n"
        "![bad](docs/figures/a.png) [bad](missing.md) [bad](other.md#nope)\n\n```\n[not a link](nowhere.md)\n```\n"
    )
    assert broken_links(page) == ["docs/figures/a.png", "missing.md", "other.md#nope"]


def test_every_design_citation_resolves() -> None:
    """Code and docs cite docs/design.md by section title ("docs/design.md \"Failure model\""); each is a heading."""
    headings = set(re.findall(r"^#{2,3}\s+(.+?)\s*$", (ROOT / "docs" / "design.md").read_text(), re.M))
    cited: dict[str, str] = {}
    for path in ROOT.rglob("*"):
        if path.suffix not in (".py", ".yaml", ".md") or set(path.relative_to(ROOT).parts) & (SKIP_DIRS | {".venv"}):
            continue
        for m in re.finditer(r'docs/design\.md\s+"([^"]+)"', path.read_text(errors="replace")):
            cited[m[1]] = str(path.relative_to(ROOT))
    assert len(cited) >= 10
    assert {c: f for c, f in cited.items() if c not in headings} == {}
    assert not [
        p for p in ROOT.rglob("*.py") if ".venv" not in p.parts and re.search(r"\b(DESIGN|STYLE)\.md", p.read_text())
    ]


def test_no_internal_issue_numbers() -> None:
    """Code, configs and docs speak for themselves: no "issue 4", "issue #12" or "the issue's" references."""
    pattern = re.compile(r"\bissues? ?#?\d+\b|the issue's", re.I)
    hits = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if path.suffix not in (".py", ".yaml", ".md") or set(rel.parts) & (SKIP_DIRS | {".venv", ".git"}):
            continue
        if rel.as_posix() == "tests/test_docs.py":
            continue
        hits += [
            f"{rel}:{i + 1}"
            for i, line in enumerate(path.read_text(errors="replace").splitlines())
            if pattern.search(line)
        ]
    assert hits == []
    assert pattern.search("see issue 4") and pattern.search("Issue #12")  # the check can fail
