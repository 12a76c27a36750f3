"""Every command the README and docs/ tell a user to type still works, so the documentation cannot go stale.

- every ``lintwin`` / ``.venv/bin/lintwin`` line of a bash block composes and validates through the CLI's own
  pre-flight (multiruns through the sweep pre-flight);
- the README's "Running one pair" block is executed, with small settings (``train.steps=3``);
- the theory-library example of docs/findings.md is executed as written;
- every ``make <target>`` named exists in the Makefile.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from comparisons.cli import replace_grid_overrides, with_default_job
from comparisons.engine.config import CONF_DIR, _compose, validate
from comparisons.engine.preflight import check_groups, check_sweep
from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(page: Path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", page.read_text(), re.S)


def commands(text: str) -> list[str]:
    """The command lines of a bash block: continuations joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [re.split(r"\s+#", line)[0].strip() for line in joined.splitlines() if line.strip()]


def lintwin_commands() -> list[tuple[str, str]]:
    out = []
    for page in PAGES:
        for block in blocks(page, "bash"):
            for cmd in commands(block):
                if re.match(r"(\.venv/bin/)?lintwin\s", cmd) and not re.match(
                    r"\S*lintwin\s+(report|status|wandb)\b", cmd
                ):
                    out.append((page.name, cmd))
    return out


@pytest.mark.parametrize(("page", "cmd"), lintwin_commands())
def test_documented_lintwin_command_composes(page: str, cmd: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SCRATCH", str(tmp_path))
    argv = [a for a in shlex.split(os.path.expandvars(cmd))[1:] if a not in ("--cfg", "job")]
    argv = replace_grid_overrides(with_default_job(argv))
    if "-m" in argv:
        check_sweep([a for a in argv if a != "-m"], CONF_DIR)
        return
    check_groups(argv, CONF_DIR)
    validate(_compose([a for a in argv if not a.startswith("hydra")]))


def test_the_documented_commands_are_found() -> None:
    found = [c for _, c in lintwin_commands()]
    assert len(found) >= 8 and any(" -m " in c for c in found)


def test_readme_running_one_pair_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Running one pair") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S)[1]
    small = ["train.steps=3", "train.eval_points=2", "train.progress=off", f"paths.runs_root={tmp_path / 'runs'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for cmd in commands(block):
        args = [*shlex.split(cmd)[1:], *small]
        res = subprocess.run(
            [sys.executable, "-m", "comparisons.cli", *args], cwd=ROOT, capture_output=True, text=True, env=env
        )
        assert res.returncode == 0, f"{cmd}: {res.stderr[-2000:]}"
    assert len(list((tmp_path / "runs").rglob("COMPLETE"))) >= 2


def test_theory_library_example_runs() -> None:
    (code,) = blocks(ROOT / "docs" / "findings.md", "python")
    exec(compile(code, "docs/findings.md", "exec"), {})  # noqa: S102 - the documented example, run as written


def test_make_targets_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    named = {m for page in PAGES for m in re.findall(r"(?:`|^)make (\w+)", page.read_text(), re.M)}
    assert named and named <= targets, named - targets
