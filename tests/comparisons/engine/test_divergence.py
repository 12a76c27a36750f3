"""Divergence (docs/design.md "Failure model"): NaN or inf in a member's loss or weights stops that member alone; it is
recorded as diverged at a step, in the curves and in summary.json; its scores are omitted with the reason; the twin
and the other sweep members train on to the last step and the run completes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from comparisons.engine.members import Member, eval_steps
from comparisons.engine.phenomenon import Outcome, Prediction
from comparisons.engine.stats import passes
from tests.conftest import compose_cfg

COMMON = [
    "phenomenon=grokking",
    "train.steps=40",
    "train.eval_points=6",
    "task.p=7",
    "model.width=16",
    "train.checkpoint_every=10",
]


def test_real_net_with_nan_weights_stops_alone_and_its_scores_are_omitted(
    lintwin, toy_phenomenon, monkeypatch, tmp_path: Path
) -> None:
    observe = toy_phenomenon.observe

    def poisoned(member, step):  # a NaN lands in the real net's weights at its first eval after step 5
        out = observe(member, step)
        if member.role == "real" and step > 5:
            with torch.no_grad():
                next(member.model.parameters()).view(-1)[0] = math.nan
        return out

    monkeypatch.setattr(toy_phenomenon, "observe", poisoned)
    res = lintwin(*COMMON)
    assert res.returncode == 0, res.stderr
    run_dir = next((tmp_path / "runs").glob("grokking/*/"))
    summary = json.loads((run_dir / "summary.json").read_text())
    curves = pd.read_csv(run_dir / "curves.csv")
    step = summary["diverged"]["real"]
    poisoned_at = min(s for s in eval_steps(40, 6) if s > 5)
    assert set(summary["diverged"]) == {"real"} and step == poisoned_at  # caught at the very next training step
    marked = curves[(curves.member == "real") & (curves.metric == "diverged")]
    assert marked.value.tolist() == [step] and marked.step.tolist() == [step]
    assert curves[curves.member == "real"].step.max() == step  # nothing after it stopped
    assert curves[(curves.member == "twin") & (curves.metric == "train_loss")].step.max() == 40  # the twin went on
    assert curves.value.map(math.isfinite).all()
    assert "final_loss[real]" not in summary["scores"] and "final_loss[twin]" in summary["scores"]
    assert summary["omitted_scores"] == {"final_loss[real]": f"real diverged at step {step} (NaN/inf loss or weights)"}
    assert summary["verdict"] == "inconclusive"  # its criterion lost its score
    assert any("real diverged at step" in n for n in summary["notes"])
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "done" and status["reason"] == f"real diverged at step {step}"


@pytest.mark.parametrize("vectorize", ["false", "true"])
def test_diverging_sweep_point_stops_alone(vectorize: str, toy_phenomenon, tmp_path: Path) -> None:
    from comparisons.engine.run import run
    from comparisons.engine.rundir import resolve_run_dir

    cfg = compose_cfg(
        [
            *COMMON,
            "optim=sgd",
            "sweep.grid={optim.lr:[0.05,1e6]}",
            f"sweep.vectorize={vectorize}",
            f"paths.runs_root={tmp_path}",
        ]
    )
    summary = run(cfg)
    curves = pd.read_csv(resolve_run_dir(cfg) / "curves.csv")
    bad = {"real:lr=1000000.0", "twin:lr=1000000.0"}
    assert set(summary["diverged"]) == bad and all(0 <= s < 40 for s in summary["diverged"].values())
    for member in ("real:lr=0.05", "twin:lr=0.05"):
        ok = curves[(curves.member == member) & (curves.metric == "train_loss")]
        assert ok.step.max() == 40 and ok.value.map(math.isfinite).all()
    for member in bad:
        assert curves[(curves.member == member) & (curves.metric == "diverged")].shape[0] == 1
    assert set(summary["omitted_scores"]) == {f"final_loss[{m}]" for m in bad}
    assert set(summary["scores"]) == {"final_loss[real:lr=0.05]", "final_loss[twin:lr=0.05]"}


def test_score_of_the_twin_survives_the_real_divergence_only_when_it_names_the_twin() -> None:
    from comparisons.engine.run import score_with_divergence

    names = ["real/t_fit", "twin/t_fit", "twin_vs_real_r2", "delay_r2", "real:p=2/t_fit", "twin:p=2/t_fit"]

    class Phen:
        @staticmethod
        def score(curves, prediction, cfg):
            return Outcome(
                scores=dict.fromkeys(names, 1.0) | {"nan_score": math.nan},
                criteria={"delay_r2": (">", 0.5), "twin/t_fit": (">", 5.0)},
            )

    members = [
        _member("real:p=1", "real", 12),
        _member("twin:p=1", "twin", None),
        _member("real:p=2", "real", None),
        _member("twin:p=2", "twin", None),
    ]
    outcome, omitted = score_with_divergence(Phen, pd.DataFrame(), Prediction(), None, members)
    assert set(omitted) == {"real/t_fit", "twin_vs_real_r2", "delay_r2", "nan_score"}
    assert set(outcome.scores) == {"twin/t_fit", "real:p=2/t_fit", "twin:p=2/t_fit"}
    calls = passes(outcome.scores, outcome.criteria)  # delay_r2 is gone, and the twin's criterion (1 > 5) fails
    assert calls["delay_r2"] is None and False in calls.values()


def _member(name: str, role: str, diverged_at: int | None) -> Member:
    return Member(name=name, role=role, model=torch.nn.Linear(1, 1), task=None, diverged_at=diverged_at)
