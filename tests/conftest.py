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

    from comparisons.config import validate

    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf"), job_name="test"):
        return validate(compose(config_name="config", overrides=overrides))


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
