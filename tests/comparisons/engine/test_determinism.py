"""Determinism: the same config and seed give byte-identical curves on CPU (docs/design.md "Randomness"); a
different seed gives different ones. On CUDA the curves agree to float tolerance only (docs/scale-out.md "Determinism").
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import compose_cfg

SETTINGS = {
    "smoke": ["experiment=smoke"],
    "minibatch sweep, vectorised": [
        "experiment=smoke",
        "train.batch_size=16",
        "sweep.vectorize=true",
        "sweep.grid={model.init_scale:[0.5,2.0]}",
    ],
}


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_same_config_and_seed_give_identical_curves(setting: str, tmp_path: Path, monkeypatch) -> None:
    a, b = (_curves(SETTINGS[setting], tmp_path / name, monkeypatch) for name in ("a", "b"))
    assert a == b


def test_online_task_is_deterministic(toy_phenomenon, tmp_path: Path, monkeypatch) -> None:
    online = [
        "task=sparse_parity",
        "task.n_bits=8",
        "task.n_skills=2",
        "task.n_test=200",
        "task.n_probe=200",
        "train.batch_size=64",
        "model.width=16",
        "train.steps=30",
        "train.eval_points=5",
    ]
    a, b = (_curves(online, tmp_path / name, monkeypatch) for name in ("a", "b"))
    assert a == b


def test_another_seed_gives_other_curves(tmp_path: Path, monkeypatch) -> None:
    assert _curves(["experiment=smoke"], tmp_path / "a", monkeypatch) != _curves(
        ["experiment=smoke", "seed=1"], tmp_path / "b", monkeypatch
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_runs_agree_to_float_tolerance(tmp_path: Path, monkeypatch) -> None:
    runs = [pd.read_csv(_curves_path(["experiment=smoke", "device=cuda"], tmp_path / n, monkeypatch)) for n in "ab"]
    np.testing.assert_allclose(runs[0].value.to_numpy(), runs[1].value.to_numpy(), rtol=1e-4, atol=1e-6)


def _curves(overrides: list[str], root: Path, monkeypatch) -> bytes:
    return _curves_path(overrides, root, monkeypatch).read_bytes()


def _curves_path(overrides: list[str], root: Path, monkeypatch) -> Path:
    from comparisons.engine.phenomenon import get_phenomenon
    from comparisons.engine.run import run
    from comparisons.engine.rundir import resolve_run_dir

    monkeypatch.setattr(get_phenomenon("grokking"), "figures", lambda run, out_dir: [])  # curves are the subject
    cfg = compose_cfg([*overrides, "train.progress=off", f"paths.runs_root={root}"])
    run(cfg)
    run_dir = resolve_run_dir(cfg)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "complete"
    return run_dir / "curves.csv"
