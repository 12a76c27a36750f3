"""The package boundaries of docs/design.md "Layout": imports run one way, with no circles, and every config composes.

Every module of the project is parsed, and every import counts: module-level, function-local and those under
``if TYPE_CHECKING:`` alike (a circle that only type hints close is still a circle a reader has to untangle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT, compose_cfg

PACKAGES = ("linear_models", "deep_models", "tasks", "comparisons", "benchmarks")
PHENOMENA = sorted(p.parent.name for p in (ROOT / "comparisons").glob("*/phenomenon.py"))


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, known: set[str], root: Path = ROOT) -> set[str]:
    """The project modules that ``path`` imports (``from a.b import c`` is ``a.b.c`` when that is a module)."""
    tree = ast.parse(path.read_text())
    me = module_name(path, root)
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                pkg = me.split(".")[: len(me.split(".")) - node.level + (path.name == "__init__.py")]
                base = ".".join([*pkg, base] if base else pkg)
            subs = {f"{base}.{a.name}" for a in node.names} & known
            out |= subs or {base}  # `from pkg import module` imports the module; `from pkg import name`, pkg
    return {m for m in out if m in known} - {me}


def project_graph(root: Path = ROOT) -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (root / pkg).rglob("*.py") if (root / pkg).exists()]
    known = {module_name(p, root) for p in files}
    return {module_name(p, root): imports_of(p, known, root) for p in files}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            # a package's __init__ is imported with its submodules: only edges between real modules count
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def layer(module: str) -> tuple[int, str]:
    """(rank, group): a module may import only from groups of lower rank, or from its own group."""
    top = module.split(".")[0]
    if top in ("linear_models", "deep_models", "tasks"):
        return 0, top
    if top == "benchmarks":
        return 6, top
    parts = module.split(".")
    if len(parts) == 1:
        return 1, "comparisons"  # the package's own __init__
    if parts[1] == "engine":
        return 2, "engine"
    if parts[1] in PHENOMENA:
        return 3, parts[1]
    return (5 if parts[1] == "cli" else 4), parts[1]  # the entry points: cli -> suite -> engine


def violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for src, deps in graph.items():
        rank, group = layer(src)
        for dst in deps:
            r, g = layer(dst)
            if g == group or dst == "comparisons":
                continue
            if r >= rank or (rank == 3 and dst in ("comparisons.engine.run", "comparisons.cli")):
                bad.append(f"{src} -> {dst}")
            if rank == 0 and r == 0:  # linear_models, deep_models and tasks import none of each other
                bad.append(f"{src} -> {dst}")
    return sorted(set(bad))


def test_no_import_circles() -> None:
    assert cycles(project_graph()) == []


def test_no_import_against_the_layers() -> None:
    assert violations(project_graph()) == []


def test_the_checks_can_fail(tmp_path: Path) -> None:
    for rel, text in {
        "linear_models/__init__.py": "",
        "linear_models/a.py": "from linear_models import b\n",
        "linear_models/b.py": "def f():\n    from linear_models.a import x\n",
        "comparisons/__init__.py": "",
        "comparisons/engine/__init__.py": "",
        "comparisons/engine/run.py": "",
        "comparisons/engine/loop.py": "import comparisons.grokking.scores\n",
        "comparisons/grokking/__init__.py": "",
        "comparisons/grokking/phenomenon.py": "from comparisons.engine.run import run\n",
        "comparisons/grokking/scores.py": "",
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    graph = project_graph(tmp_path)
    assert cycles(graph) == [["linear_models.a", "linear_models.b"]]
    bad = violations(graph)
    assert "comparisons.engine.loop -> comparisons.grokking.scores" in bad
    assert "comparisons.grokking.phenomenon -> comparisons.engine.run" in bad


EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
GROUPS = {g: sorted(p.stem for p in (ROOT / "conf" / g).glob("*.yaml")) for g in ("task", "model", "optim", "logger")}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_validates(experiment: str) -> None:
    cfg = compose_cfg([f"experiment={experiment}"])
    assert cfg.phenomenon["name"]


@pytest.mark.parametrize(("group", "option"), [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_group_option_composes(group: str, option: str) -> None:
    cfg = compose_cfg([f"{group}={option}"])
    section = getattr(cfg, group)
    name = section["name"] if isinstance(section, dict) else section.name
    assert name == option or group == "task" and name == option
