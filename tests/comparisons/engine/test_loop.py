from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from comparisons.engine.loop import train_members
from comparisons.engine.members import Context, Member, eval_steps, loss_fn, streams, time_factor
from tests.conftest import compose_cfg


def test_eval_grid_has_zero_and_last_and_is_log_spaced() -> None:
    g = eval_steps(10000, 20)
    assert g[0] == 0 and g[-1] == 10000 and g == sorted(set(g))
    ratios = np.diff(np.log(g[8:]))  # small steps are rounded to integers
    assert ratios.std() < 0.05 * ratios.mean() + 1e-9  # equal steps in log step
    assert eval_steps(100, 11, "linear") == list(range(0, 101, 10))


def test_suite_loss_is_half_sum_over_outputs_mean_over_samples() -> None:
    g = torch.Generator().manual_seed(0)
    f, y = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(7, 3, generator=g, dtype=torch.float64)
    ref = sum(0.5 * float(((f[n] - y[n]) ** 2).sum()) for n in range(7)) / 7
    assert float(loss_fn("mse", f, y, None)) == pytest.approx(ref, rel=1e-14)
    assert float(loss_fn("mse_mean", f, y, None)) == pytest.approx(ref * 2 / 3, rel=1e-14)  # L_torch = (2/c) L
    assert time_factor("mse_mean", 10) == pytest.approx(0.2) and time_factor("mse", 10) == 1.0


def test_streams_are_reproducible_and_independent() -> None:
    a, b = streams(3), streams(3)
    assert torch.equal(torch.rand(4, generator=a["init"]), torch.rand(4, generator=b["init"]))
    c = streams(3)
    assert not torch.equal(torch.rand(4, generator=c["init"]), torch.rand(4, generator=c["data"]))


def _members(cfg, ctx):
    from comparisons.engine.sweep import build_members

    return build_members(cfg, ctx)


def test_pair_shares_init_and_identical_members_get_identical_curves(tmp_path) -> None:
    cfg = compose_cfg(
        [
            "train.steps=40",
            "train.batch_size=32",
            "train.eval_points=5",
            "task.p=7",
            "model.width=16",
            f"paths.runs_root={tmp_path}",
        ]
    )
    ctx = Context(cfg=cfg, device=torch.device("cpu"), dtype=torch.float32, run_dir=tmp_path, streams=streams(0))
    real, twin = _members(cfg, ctx)
    for (n1, p1), (n2, p2) in zip(real.model.named_parameters(), twin.model.named_parameters(), strict=True):
        assert n1 == n2 and torch.equal(p1, p2)  # the twin starts from the real net's weights
    clone = Member(name="clone", role="real", model=copy.deepcopy(real.model), task=real.task)
    rows = pd.DataFrame(train_members([real, twin, clone], ctx))
    a = rows[rows.member == "real"].reset_index(drop=True)
    b = rows[rows.member == "clone"].reset_index(drop=True)
    assert len(a) > 0 and a["value"].equals(b["value"])  # same batches, same updates
    t = rows[rows.member == "twin"]
    assert not np.allclose(a["value"].to_numpy(), t["value"].to_numpy())  # the twin is a different network
    assert set(rows["step"]) == set(eval_steps(40, 5))


def test_progress_outside_a_terminal_is_a_log_line_with_step_and_eta(caplog) -> None:
    import logging

    from comparisons.engine.members import LogProgress

    bar = LogProgress("smoke", total=100, initial=0, every_s=0.0)  # every update logs
    bar.set_postfix_str("train_loss=0.5")
    with caplog.at_level(logging.INFO, logger="comparisons.engine.members"):
        bar.update(25)
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("smoke: step 25/100 (25%) train_loss=0.5 ETA ")
    quiet = LogProgress("smoke", total=100, initial=0, every_s=3600.0)
    caplog.clear()
    quiet.update(50)
    assert caplog.records == []
