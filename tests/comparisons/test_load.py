"""comparisons.load: a finished run's trained members come back in a notebook, as they were at the end."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from comparisons.engine.members import loss_fn
from comparisons.engine.rundir import RunDirError
from comparisons.load import load, members, snapshots
from tests.conftest import compose_cfg


def test_loaded_members_reproduce_their_final_train_loss(tmp_path: Path) -> None:
    from comparisons.engine.run import run

    run_dir = tmp_path / "run"
    run(compose_cfg(["experiment=smoke", f"paths.run_dir={run_dir}", "train.progress=off"]))
    assert {"real", "twin"} <= set(members(run_dir))
    curves = pd.read_csv(run_dir / "curves.csv")
    for name in ("real", "twin"):
        model, cfg, task = load(run_dir, name)
        with torch.no_grad():
            loss = loss_fn(cfg.train.loss, model(task.x_train), task.y_train, task.labels_train)
        rec = curves[(curves.member == name) & (curves.metric == "train_loss")].sort_values("step").value.iloc[-1]
        assert float(loss) == pytest.approx(rec, rel=1e-4)  # the very weights the run ended with
    with pytest.raises(RunDirError, match="members: real, twin"):
        load(run_dir, "twin:oops")
    with pytest.raises(RunDirError, match="negative control"):
        load(run_dir, "real:control=shuffled_labels")


@pytest.mark.parametrize("vectorize", ["false", "true"])
def test_snapshots_hold_the_weights_at_their_step(tmp_path: Path, vectorize: str) -> None:
    """train.snapshot_every=N keeps every member's weights at steps 0, N, 2N, ... and the last; each one gives back
    the train loss the run recorded at that step, on the member-by-member and the vectorised loop alike."""
    from comparisons.engine.run import run

    run_dir = tmp_path / "run"
    over = ["experiment=smoke", f"paths.run_dir={run_dir}", "train.progress=off", "train.snapshot_every=7"]
    over += ["train.eval_grid=linear", "train.eval_points=11", "sweep.grid={optim.lr:[0.01,0.02]}"]
    run(compose_cfg([*over, f"sweep.vectorize={vectorize}"]))
    assert snapshots(run_dir) == [*range(0, 60, 7), 60]
    curves = pd.read_csv(run_dir / "curves.csv")
    loss = curves[(curves.metric == "train_loss") & (curves.member == "real:lr=0.02")].set_index("step").value
    shared = sorted(set(snapshots(run_dir)) & set(loss.index))
    assert len(shared) >= 3 and shared[0] == 0 and shared[-1] == 60 and any(0 < s < 60 for s in shared)
    for step in shared:
        model, cfg, task = load(run_dir, "real:lr=0.02", step=step)
        with torch.no_grad():
            got = loss_fn(cfg.train.loss, model(task.x_train), task.y_train, task.labels_train)
        assert float(got) == pytest.approx(loss[step], rel=1e-4), step
    final = load(run_dir, "real:lr=0.02")[0].state_dict()
    last = load(run_dir, "real:lr=0.02", step=60)[0].state_dict()
    assert all(torch.equal(final[k], last[k]) for k in final)
    with pytest.raises(RunDirError, match="no snapshot at step 5 .*snapshots at steps 0..60"):
        load(run_dir, "real:lr=0.02", step=5)


def test_no_snapshots_keeps_the_run_hash() -> None:
    """snapshot_every=0 (the default) hashes as the config did before the knob; asking for snapshots is another run."""
    from comparisons.engine.config import to_container
    from comparisons.engine.rundir import config_hash

    base = to_container(compose_cfg(["experiment=smoke"]))
    without = {**base, "train": {k: v for k, v in base["train"].items() if k != "snapshot_every"}}
    assert base["train"]["snapshot_every"] == 0 and config_hash(base) == config_hash(without)
    assert config_hash(to_container(compose_cfg(["experiment=smoke", "train.snapshot_every=5"]))) != config_hash(base)
