"""The package boundaries of DESIGN.md: no import against the arrows, and every config composes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT, compose_cfg

ALLOWED = {"linear_models": set(), "deep_models": set(), "tasks": set(),
           "comparisons": {"linear_models", "deep_models", "tasks"}}


def imported_top_level(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("pkg", sorted(ALLOWED))
def test_import_direction(pkg: str) -> None:
    files = list((ROOT / pkg).rglob("*.py"))
    assert files, f"package {pkg} has no files"
    bad = {p: imported_top_level(p) & (ALLOWED.keys() - ALLOWED[pkg] - {pkg}) for p in files}
    assert not any(bad.values()), f"imports against the arrows: { {str(p): m for p, m in bad.items() if m} }"


def test_import_direction_check_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("from comparisons import run\nimport tasks.base\n")
    assert imported_top_level(bad) == {"comparisons", "tasks"}


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
