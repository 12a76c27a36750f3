"""Checkpoint and resume (docs/design.md "Failure model"): a run killed at any point and rerun with the same command
ends with curves bit-identical (on CPU) to those of an uninterrupted run, and COMPLETE comes only after every output.

The kill -9 test kills a real ``lintwin`` subprocess right after its first checkpoint lands and reruns the command;
the in-process tests stop a run at chosen points (before any checkpoint, after the k-th, halfway through writing
one, just before COMPLETE) for the loop and the vectorised trainer, then rerun it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from comparisons.engine import rundir
from tests.conftest import ROOT, compose_cfg

SMOKE = ["experiment=smoke", "train.steps=400", "train.checkpoint_every=10", "train.eval_points=12"]


def test_kill_9_mid_run_then_rerun_is_bit_identical(tmp_path: Path, lintwin, monkeypatch) -> None:
    runs = tmp_path / "runs"
    cmd = [
        sys.executable,
        "-m",
        "comparisons.cli",
        *SMOKE,
        f"paths.runs_root={runs}",
        f"paths.hydra_root={tmp_path / 'outputs'}",
        "train.progress=off",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ckpt = None
    deadline = time.monotonic() + 300
    while ckpt is None and proc.poll() is None and time.monotonic() < deadline:
        ckpt = next(iter(runs.glob("smoke/*/checkpoint.pt")), None)
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert ckpt is not None, f"no checkpoint appeared (exit {proc.returncode}): {err[-2000:]}"
    run_dir = ckpt.parent
    assert not (run_dir / rundir.COMPLETE).exists(), "the run finished before the kill; raise train.steps"
    killed_at = torch.load(ckpt, weights_only=True)["step"]
    assert 0 < killed_at < 400

    _no_figures(monkeypatch)
    res = lintwin(*SMOKE)  # the same command, in the same runs root
    assert res.returncode == 0, res.stderr
    assert json.loads((run_dir / "status.json").read_text())["action"] == "resume"
    ref = lintwin(*SMOKE, f"paths.runs_root={tmp_path / 'reference'}")
    assert ref.returncode == 0, ref.stderr
    ref_dir = tmp_path / "reference" / "smoke" / run_dir.name  # the hash leaves the paths out
    assert (run_dir / "curves.csv").read_bytes() == (ref_dir / "curves.csv").read_bytes()
    assert _scored(run_dir) == _scored(ref_dir)


class Killed(BaseException):
    """Stands for kill -9: not an Exception, so nothing in lintwin catches it."""


CRASH_POINTS = [
    "before any checkpoint",
    "after checkpoint 1",
    "after checkpoint 3",
    "while writing checkpoint 3",
    "before COMPLETE",
]
TOY = [
    "train.steps=40",
    "train.checkpoint_every=10",
    "train.batch_size=16",
    "train.eval_points=8",
    "task.p=7",
    "model.width=16",
    "optim=sgd",
    "optim.lr=0.05",
    "optim.momentum=0.9",
    "optim.schedule=cosine",
    "sweep.grid={model.init_scale:[0.5,1.0]}",
]


@pytest.mark.parametrize("vectorize", ["false", "true"])
@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_anywhere_then_rerun_is_bit_identical(
    point: str, vectorize: str, tmp_path: Path, toy_phenomenon, monkeypatch
) -> None:
    from comparisons.engine.run import run
    from comparisons.engine.rundir import resolve_run_dir

    args = [*TOY, f"sweep.vectorize={vectorize}"]
    ref = compose_cfg([*args, f"paths.runs_root={tmp_path / 'reference'}"])
    run(ref)
    cfg = compose_cfg([*args, f"paths.runs_root={tmp_path / 'runs'}"])
    with monkeypatch.context() as m:
        _crash_at(m, point)
        with pytest.raises(Killed):
            run(cfg)
    run_dir = resolve_run_dir(cfg)
    assert not rundir.is_complete(run_dir)
    run(compose_cfg([*args, f"paths.runs_root={tmp_path / 'runs'}"]))  # the same command again
    assert rundir.is_complete(run_dir)
    assert (run_dir / "curves.csv").read_bytes() == (resolve_run_dir(ref) / "curves.csv").read_bytes()
    assert _scored(run_dir) == _scored(resolve_run_dir(ref))


def test_complete_is_written_after_every_output(tmp_path: Path, toy_phenomenon, monkeypatch) -> None:
    from comparisons.engine.run import run
    from comparisons.engine.rundir import resolve_run_dir

    seen = []
    original = rundir.mark_complete

    def checked(run_dir: Path) -> None:
        seen.append(sorted(p.name for p in run_dir.iterdir()))
        original(run_dir)

    monkeypatch.setattr(rundir, "mark_complete", checked)
    cfg = compose_cfg([*TOY, f"paths.runs_root={tmp_path}"])
    run(cfg)
    assert len(seen) == 1 and rundir.COMPLETE not in seen[0]
    assert {"config.yaml", "curves.csv", "summary.json", "checkpoint.pt"} <= set(seen[0])
    assert rundir.is_complete(resolve_run_dir(cfg))


def test_rerun_with_resume_false_is_not_complete_until_it_finishes(tmp_path: Path, toy_phenomenon, monkeypatch) -> None:
    from comparisons.engine.run import run
    from comparisons.engine.rundir import resolve_run_dir

    cfg = compose_cfg([*TOY, f"paths.runs_root={tmp_path}", "resume=false"])
    run(cfg)
    first = (resolve_run_dir(cfg) / "curves.csv").read_bytes()
    with monkeypatch.context() as m:
        _crash_at(m, "after checkpoint 1")
        with pytest.raises(Killed):
            run(cfg)
    assert not rundir.is_complete(resolve_run_dir(cfg))  # a half-redone run is never presented as done
    run(cfg)
    assert rundir.is_complete(resolve_run_dir(cfg)) and (resolve_run_dir(cfg) / "curves.csv").read_bytes() == first


def test_checkpoint_holds_models_optimizers_rng_step_and_curves(tmp_path: Path, toy_phenomenon) -> None:
    from comparisons.engine.run import run
    from comparisons.engine.rundir import resolve_run_dir

    cfg = compose_cfg([*TOY, f"paths.runs_root={tmp_path}", "sweep.grid=null"])
    run(cfg)
    ckpt = torch.load(resolve_run_dir(cfg) / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 40 and {"data_rng", "streams", "torch_rng", "order", "rows"} <= set(ckpt)
    assert set(ckpt["members"]) == {"real", "twin"}
    for member in ckpt["members"].values():
        assert {"model", "optimizer", "scheduler", "state", "diverged_at"} <= set(member)
        assert member["optimizer"]["state"] and member["scheduler"]["last_epoch"] == 40
    assert {r["step"] for r in ckpt["rows"]} == {r for r in _steps(resolve_run_dir(cfg))}


# --- helpers ---


def _crash_at(m: pytest.MonkeyPatch, point: str) -> None:
    """Make the next run stop with :class:`Killed` at ``point`` (patching the checkpoint writer or COMPLETE)."""
    import comparisons.engine.loop

    if point == "before COMPLETE":

        def no_complete(run_dir: Path) -> None:
            raise Killed

        m.setattr(rundir, "mark_complete", no_complete)
        return
    if point == "while writing checkpoint 3":  # the temp file is written, the rename never happens
        calls = []
        real_replace = os.replace

        def replace(src, dst):
            if str(dst).endswith("checkpoint.pt"):
                calls.append(dst)
                if len(calls) == 3:
                    raise Killed
            real_replace(src, dst)

        m.setattr(os, "replace", replace)
        return
    n = {"before any checkpoint": 1, "after checkpoint 1": 1, "after checkpoint 3": 3}[point]
    calls = []

    def save(path: Path, state: dict) -> None:
        calls.append(state["step"])
        if point == "before any checkpoint":
            raise Killed
        rundir.save_checkpoint(path, state)
        if len(calls) == n:
            raise Killed

    m.setattr(comparisons.engine.loop, "save_checkpoint", save)  # the one loop writes every checkpoint


def _scored(run_dir: Path) -> dict:
    s = json.loads((run_dir / "summary.json").read_text())
    return {k: s[k] for k in ("scores", "verdict", "diverged", "omitted_scores", "prediction")}


def _steps(run_dir: Path) -> set[int]:
    import pandas as pd

    c = pd.read_csv(run_dir / "curves.csv")
    return set(c[c.member != "theory"].step)


def _no_figures(monkeypatch) -> None:
    from comparisons.engine.phenomenon import get_phenomenon

    monkeypatch.setattr(get_phenomenon("grokking"), "figures", lambda run, out_dir: [])
