"""The default job (``lintwin`` = ``make demo``): it works every time, from a clean checkout, with overrides."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from comparisons.cli import DEFAULT_JOB, with_default_job
from tests.conftest import ROOT, SHARED_DATA


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], [DEFAULT_JOB]),
        (["seeds=[0,1,2]"], [DEFAULT_JOB, "seeds=[0,1,2]"]),
        (["logger=wandb", "paths.run_dir=x"], [DEFAULT_JOB, "logger=wandb", "paths.run_dir=x"]),
        (["--cfg", "job", "seeds=[3,4,5]"], ["--cfg", "job", DEFAULT_JOB, "seeds=[3,4,5]"]),
        (["-m", "seed=0,1"], ["-m", DEFAULT_JOB, "seed=0,1"]),
        (["experiment=smoke", "seed=1"], ["experiment=smoke", "seed=1"]),
        (["phenomenon=grokking", "task=modular"], ["phenomenon=grokking", "task=modular"]),
        (["+experiment=smoke"], ["+experiment=smoke"]),
    ],
)
def test_overrides_keep_the_default_job(argv: list[str], expected: list[str]) -> None:
    assert with_default_job(argv) == expected


def clean_checkout(dest: Path) -> Path:
    """The working tree's tracked and unignored files, as a clean clone of it would hold them (no runs/, no venv)."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def lintwin_in(checkout: Path, *args: str, data: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """``lintwin ARGS`` as a newcomer runs it inside ``checkout`` (its own code, its own runs/ folder)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LINTWIN_DATA": str(data), "PYTHONPATH": str(checkout)}
    cmd = [sys.executable, "-m", "comparisons.cli", *args]
    return subprocess.run(cmd, cwd=checkout, capture_output=True, text=True, timeout=timeout, env=env)


def scoreboard(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("phenomenon"))
    return [line for line in lines[start:] if line.strip() and not line.startswith("report:")]


def test_the_default_job_twice_from_a_clean_checkout(tmp_path: Path) -> None:
    """A small suite (the smoke preset and an MNIST preset) twice: the second run reuses and reprints the first's
    scoreboard; a dataset added after a first run without it is picked up by the next run."""
    checkout = clean_checkout(tmp_path / "lintwin")
    no_data = tmp_path / "empty"
    no_data.mkdir()
    suite = ["phenomenon.experiments=[smoke,nc_suite]", "seeds=null", "train.progress=off"]  # one seed: fast
    first = lintwin_in(checkout, *suite, data=no_data)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "nc_suite skipped: MNIST is not in the data root" in first.stdout
    board = scoreboard(first.stdout)
    assert [line.split()[1] for line in board[2:]] == ["smoke"]

    again = lintwin_in(checkout, *suite, data=no_data)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "lintwin: reused 1 finished run(s) (smoke)" in again.stdout
    assert scoreboard(again.stdout) == board

    with_data = lintwin_in(checkout, *suite, data=SHARED_DATA)
    assert with_data.returncode == 0, with_data.stderr[-2000:]
    assert "reused 1 finished run(s) (smoke)" in with_data.stdout
    settings = [line.split()[1] for line in scoreboard(with_data.stdout)[2:]]
    assert sorted(settings) == ["nc_suite", "smoke"]
    assert (checkout / "runs" / "suite").is_dir()


@pytest.mark.slow
def test_make_demo_twice_from_a_clean_checkout(tmp_path: Path) -> None:
    """The real default job, twice (minutes): same scoreboard, all four phenomena reused the second time."""
    checkout = clean_checkout(tmp_path / "lintwin")
    first = lintwin_in(checkout, data=SHARED_DATA, timeout=1200)
    assert first.returncode == 0, first.stderr[-2000:]
    again = lintwin_in(checkout, data=SHARED_DATA, timeout=1200)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "lintwin: reused 4 finished run(s)" in again.stdout
    assert scoreboard(again.stdout) == scoreboard(first.stdout)


@pytest.mark.slow
def test_the_default_jobs_verdicts_survive_another_seed_set(tmp_path: Path) -> None:
    """The default job over seeds 0-3 and over seeds 4-7 (minutes): every phenomenon gets the same verdict."""
    checkout = clean_checkout(tmp_path / "lintwin")
    verdicts = []
    for seeds in ("[0,1,2,3]", "[4,5,6,7]"):
        res = lintwin_in(checkout, f"seeds={seeds}", "train.progress=off", data=SHARED_DATA, timeout=1800)
        assert res.returncode == 0, res.stderr[-2000:]
        rows = [line.split() for line in scoreboard(res.stdout)[2:]]
        verdicts.append({r[0]: next(w for w in r if w in ("agree", "disagree", "inconclusive")) for r in rows})
    assert len(verdicts[0]) == 4 and verdicts[0] == verdicts[1]


def test_multirun_with_cfg_and_dotted_grid_keys(run_cli) -> None:
    """`-m ... --cfg job` prints the first job's config; a dotted sweep.grid key gets one line with the fix."""
    res = run_cli("--cfg", "job", "-m", "experiment=smoke", "seed=3,1")
    assert res.returncode == 0, res.stderr
    assert "\nseed: 3\n" in res.stdout and "first job" in res.stderr
    bad = run_cli("experiment=smoke", "sweep.grid.model.width=[8,16]")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "lintwin: sweep.grid.model.width=[8,16]: a sweep grid's keys are dotted names, not nested keys; write "
        "'sweep.grid={model.width:[8,16]}' (quoted for the shell)"
    ]
