from __future__ import annotations

import json
from pathlib import Path

import pytest

from comparisons.engine import rundir


def test_find_runs_sees_children_of_a_folder_that_is_itself_a_run(tmp_path) -> None:
    for d in (tmp_path, tmp_path / "a", tmp_path / "b" / "c"):  # a suite dir holds a summary.json and child runs
        d.mkdir(parents=True, exist_ok=True)
        (d / "summary.json").write_text("{}")
    assert rundir.find_runs(tmp_path) == sorted([tmp_path, tmp_path / "a", tmp_path / "b" / "c"])


def test_atomic_write_leaves_no_temp_file_and_replaces(tmp_path) -> None:
    p = tmp_path / "x" / "summary.json"
    rundir.write_json(p, {"a": 1})
    rundir.write_json(p, {"a": 2})
    assert json.loads(p.read_text()) == {"a": 2} and not list(p.parent.glob("*.tmp"))


def test_config_hash_ignores_output_settings_only() -> None:
    base = {"seed": 0, "optim": {"lr": 0.1}, "paths": {"runs_root": "a"}, "logger": {"name": "none"}}
    moved = {**base, "paths": {"runs_root": "b"}, "logger": {"name": "wandb"}}
    assert rundir.config_hash(base) == rundir.config_hash(moved)
    assert rundir.config_hash(base) != rundir.config_hash({**base, "optim": {"lr": 0.2}})


def test_load_run_names_the_missing_file(tmp_path) -> None:
    (tmp_path / "config.yaml").write_text("seed: 0\n")
    with pytest.raises(rundir.RunDirError, match="summary.json is missing"):
        rundir.load_run(tmp_path)


def test_checkpoint_holds_data_only_and_member_state_round_trips(tmp_path: Path) -> None:
    import numpy as np
    import torch

    from comparisons.engine import rundir
    from comparisons.engine.members import _safe, _unsafe

    state = {"theta0": [torch.arange(3.0)], "modes": np.eye(2), "S": np.float64(0.25), "steps": {0, 5, 60}}
    rundir.save_checkpoint(tmp_path / "c.pt", {"step": 1, "state": _safe(state)})
    back = _unsafe(rundir.load_checkpoint(tmp_path / "c.pt")["state"])  # weights_only=True inside
    assert isinstance(back["modes"], np.ndarray) and np.array_equal(back["modes"], np.eye(2))
    assert type(back["S"]) is np.float64 and back["S"] == 0.25 and back["steps"] == {0, 5, 60}
    assert torch.equal(back["theta0"][0], torch.arange(3.0))
    with pytest.raises(TypeError, match="cannot store as data"):
        _safe({"gen": torch.Generator()})
    with pytest.raises(TypeError, match="a checkpoint cannot hold a Generator"):
        rundir.save_checkpoint(tmp_path / "d.pt", {"gen": torch.Generator()})
