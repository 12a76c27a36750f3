"""comparisons.load: a finished run's trained members come back in a notebook, as they were at the end."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from comparisons.engine.members import loss_fn
from comparisons.engine.rundir import RunDirError
from comparisons.load import load, members
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
