"""SIGTERM and SIGINT: the current step finishes, a checkpoint is written, one line, exit 143/130, and the rerun
resumes to the very curves of an uninterrupted run (docs/design.md "Failure model")."""

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

from comparisons.engine import interrupt
from comparisons.engine.interrupt import Interrupted
from tests.conftest import ROOT, compose_cfg

SMALL = [
    "phenomenon=grokking",
    "train.steps=30",
    "train.eval_points=6",
    "task.p=7",
    "model.width=8",
    "train.checkpoint_every=0",
]
TRAINERS = {
    "loop": ("comparisons.engine.loop", "_train_step", []),
    "vectorised": (
        "comparisons.engine.vectorized",
        "_Group.train_step",
        ["sweep.vectorize=true", "sweep.grid={model.init_scale:[0.5,2.0]}"],
    ),
}


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_signal_mid_training_checkpoints_and_resumes_identically(
    trainer: str, toy_phenomenon, tmp_path: Path, monkeypatch
) -> None:
    from comparisons.engine.run import run
    from comparisons.engine.rundir import resolve_run_dir

    module, attr, extra = TRAINERS[trainer]
    ref_cfg = compose_cfg([*SMALL, *extra, f"paths.runs_root={tmp_path / 'ref'}"])
    run(ref_cfg)
    cfg = compose_cfg([*SMALL, *extra, f"paths.runs_root={tmp_path / 'cut'}"])
    owner = sys.modules[module]
    if "." in attr:
        owner, attr = getattr(owner, attr.split(".")[0]), attr.split(".")[1]
    original = getattr(owner, attr)

    sent = []

    def step_then_signal(*args, **kwargs):
        out = original(*args, **kwargs)
        step = next(a for a in args if isinstance(a, int) and not isinstance(a, bool))
        if step == 7 and not sent:  # once: the vectorised step runs once per batched group
            sent.append(step)
            os.kill(os.getpid(), signal.SIGTERM)  # arrives inside step 7, as from `kill`
        return out

    monkeypatch.setattr(owner, attr, step_then_signal)
    with interrupt.handlers(), pytest.raises(Interrupted) as e:
        run(cfg)
    assert (e.value.step, e.value.exit_code) == (8, 143)  # step 7 finished, checkpoint before step 8
    run_dir = resolve_run_dir(cfg)
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"] == 8
    assert not (run_dir / "COMPLETE").exists()
    monkeypatch.setattr(owner, attr, original)
    run(cfg)  # the rerun resumes at step 8
    ref = (resolve_run_dir(ref_cfg) / "curves.csv").read_bytes()
    assert (run_dir / "curves.csv").read_bytes() == ref


def test_signal_outside_training_stops_at_once() -> None:
    with interrupt.handlers(), pytest.raises(Interrupted) as e:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # never reached: the handler raises at the next bytecode
    assert (e.value.step, e.value.exit_code) == (None, 130)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


@pytest.mark.slow
def test_cli_sigterm_and_sigint_checkpoint_one_line_and_resume(tmp_path: Path) -> None:
    args = ["experiment=smoke", "train.steps=1500", "train.checkpoint_every=20", "train.progress=off"]
    ref = _cli(tmp_path, "ref", args)
    assert ref.returncode == 0, ref.stderr
    for sig, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        run_dir = tmp_path / sig.name
        proc = subprocess.Popen(
            _cmd(tmp_path, sig.name, args), cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 120
        while not (run_dir / "checkpoint.pt").exists():  # training has started once the first checkpoint exists
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it was signalled"
            time.sleep(0.02)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
        lines = err.decode().strip().splitlines()
        assert proc.returncode == code, err.decode()[-2000:]
        assert len(lines) == 1 and "Traceback" not in out.decode() + err.decode(), lines
        step = int(lines[0].split("at step ")[1].split(";")[0])
        assert lines[0] == f"lintwin: interrupted at step {step}; rerun the same command to resume"
        assert 20 <= step < 1500 and torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"] == step
        assert json.loads((run_dir / "status.json").read_text())["state"] == "interrupted"
        again = _cli(tmp_path, sig.name, args)
        assert again.returncode == 0, again.stderr
        assert (run_dir / "curves.csv").read_bytes() == (tmp_path / "ref" / "curves.csv").read_bytes()


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}


def _cmd(tmp: Path, name: str, args: list[str]) -> list[str]:
    paths = [f"paths.run_dir={tmp / name}", f"paths.hydra_root={tmp / 'outputs'}"]
    return [sys.executable, "-m", "comparisons.cli", *args, *paths]


def _cli(tmp: Path, name: str, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(tmp, name, args), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
