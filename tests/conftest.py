"""Shared fixtures: composing configs in-process and running the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
os.environ.setdefault("LINTWIN_DATA", str(SHARED_DATA))
os.environ.setdefault("WANDB_SILENT", "true")


def compose_cfg(overrides: list[str]):
    """Compose conf/config.yaml with overrides and validate it into a RunCfg."""
    from hydra import compose, initialize_config_dir

    from comparisons.cli import replace_grid_overrides
    from comparisons.engine.config import validate

    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf"), job_name="test"):
        return validate(compose(config_name="config", overrides=replace_grid_overrides(overrides)))


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run ``lintwin ARGS`` in a subprocess writing under tmp_path; returns the CompletedProcess (text)."""

    def _run(*args: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
        defaults = [f"paths.runs_root={tmp_path / 'runs'}", f"paths.hydra_root={tmp_path / 'outputs'}"]
        if args and args[0] in ("report", "status"):
            defaults = []
        cmd = [sys.executable, "-m", "comparisons.cli", *args, *defaults]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd or ROOT, env=env)

    return _run


# --- in-process CLI (reliability tests): the console script's code path without a new interpreter per call ---


@pytest.fixture
def lintwin(
    tmp_path: Path, capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., subprocess.CompletedProcess]:
    """Run ``comparisons.cli.entry()`` in-process with ``ARGS`` (plus runs/outputs under tmp_path, no progress bar).

    Hydra starts in this process (the basic launcher runs a multirun's jobs here too); its global state and the
    log handlers it installs are reset afterwards. Pass ``defaults=False`` for ``status``/``report`` or to set the
    paths yourself.
    """
    import logging

    from hydra.core.global_hydra import GlobalHydra

    from comparisons import cli

    def _run(*args: str, defaults: bool = True) -> subprocess.CompletedProcess:
        extra = (
            [f"paths.runs_root={tmp_path / 'runs'}", f"paths.hydra_root={tmp_path / 'outputs'}", "train.progress=off"]
            if defaults
            else []
        )
        flags = [a for a in args if a in ("-m", "--multirun")]  # Hydra wants flags before the overrides
        argv = [*flags, *extra, *[a for a in args if a not in flags]]  # the test's own paths.* come last and win
        monkeypatch.setattr(sys, "argv", ["lintwin", *argv])
        root = logging.getLogger()
        before = list(root.handlers)
        code = 0
        try:
            cli.entry()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            GlobalHydra.instance().clear()
            for h in root.handlers[:]:
                if h not in before:  # Hydra's console/file handlers would outlive this test's capture
                    root.removeHandler(h)
                    h.close()
        out, err = capfd.readouterr()
        return subprocess.CompletedProcess(["lintwin", *argv], code, out, err)

    return _run


@pytest.fixture
def toy_phenomenon(monkeypatch: pytest.MonkeyPatch):
    """A fast stand-in phenomenon ("grokking" to the runner), for tests of the run machinery rather than the science.

    observe: the squared distance of the weights from their step-0 values, cached in ``member.state`` (so a resume
    that loses the state shows up in the curves). score: the final train loss of every member, as
    ``final_loss[<member>]``. No figures.
    """
    import pandas as pd

    import comparisons.engine.phenomenon
    import comparisons.engine.run
    from comparisons.engine.phenomenon import Outcome, Phenomenon, Prediction

    def observe(member, step):
        params = [p.detach().clone() for p in member.model.parameters()]
        init = member.state.setdefault("init", params)
        return {"dist_from_init": float(sum(float((p - q).pow(2).sum()) for p, q in zip(params, init, strict=True)))}

    def predict(cfg, members):
        rows = [{"member": "theory", "step": 0, "time": 0.0, "metric": "dist_from_init", "value": 0.0}]
        return Prediction(curves=pd.DataFrame(rows), numbers={"toy": 1.0})

    def score(curves, prediction, cfg):
        loss = curves[(curves.metric == "train_loss") & ~curves.member.str.startswith("theory")]
        scores = {f"final_loss[{m}]": float(g.sort_values("step").value.iloc[-1]) for m, g in loss.groupby("member")}
        return Outcome(scores=scores, criteria={k: ("<", 1e6) for k in scores})

    toy = Phenomenon("grokking", observe, predict, score, lambda run, out_dir: [])
    monkeypatch.setattr(comparisons.engine.run, "get_phenomenon", lambda name: toy)
    monkeypatch.setattr(comparisons.engine.phenomenon, "get_phenomenon", lambda name: toy)
    return toy
