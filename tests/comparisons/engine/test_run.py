"""One end-to-end run with W&B offline, and the report rebuilt from the run dirs alone."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from comparisons.engine import rundir
from comparisons.engine.phenomenon import Outcome, Phenomenon, Prediction
from tests.conftest import compose_cfg


def _observe(member, step):
    return {"weight_norm": float(sum(float(p.detach().pow(2).sum()) for p in member.model.parameters()))}


def _predict(cfg, members):
    rows = [{"member": "theory", "step": s, "time": 0.0, "metric": "weight_norm", "value": 1.0} for s in (0, 10)]
    return Prediction(curves=pd.DataFrame(rows), numbers={"predicted_norm": 1.0})


def _score(curves, prediction, cfg):
    final = curves[(curves.member == "real") & (curves.metric == "train_loss")].value.iloc[-1]
    first = curves[(curves.member == "real") & (curves.metric == "train_loss")].value.iloc[0]
    return Outcome(
        scores={"loss_ratio": float(final / first)},
        negative_controls={"shuffled": {"score": 1.0, "rejected": True, "note": ""}},
        criteria={"loss_ratio": ("<", 1.0)},
        headline={"observed": f"ratio={final / first:.2f}"},
    )


def _figures(run, out_dir: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots()
    c = run.curves[run.curves.metric == "train_loss"]
    for m, g in c.groupby("member"):
        ax.plot(g.step, g.value, label=m)
    fig.savefig(out_dir / "loss.png")
    plt.close(fig)
    return [out_dir / "loss.png"]


FAKE = Phenomenon("grokking", _observe, _predict, _score, _figures)


@pytest.fixture
def fake_phenomenon(monkeypatch):
    import comparisons.engine.report
    import comparisons.engine.run

    monkeypatch.setattr(comparisons.engine.run, "get_phenomenon", lambda name: FAKE)
    monkeypatch.setattr("comparisons.engine.phenomenon.get_phenomenon", lambda name: FAKE)
    return FAKE


def _cfg(tmp_path, *extra):
    return compose_cfg(
        [
            "train.steps=30",
            "train.eval_points=6",
            "task.p=7",
            "model.width=8",
            f"paths.runs_root={tmp_path / 'runs'}",
            "train.checkpoint_every=10",
            *extra,
        ]
    )


def test_end_to_end_run_with_wandb_offline(tmp_path, fake_phenomenon) -> None:
    from comparisons.engine.run import run
    from comparisons.engine.rundir import resolve_run_dir

    cfg = _cfg(tmp_path, "logger=wandb", "logger.mode=offline")
    summary = run(cfg)
    d = resolve_run_dir(cfg)
    for f in ("config.yaml", "curves.csv", "summary.json", "checkpoint.pt", "COMPLETE", "figures/loss.png"):
        assert (d / f).exists(), f
    s = json.loads((d / "summary.json").read_text())
    for key in (
        "phenomenon",
        "scores",
        "verdict",
        "negative_controls",
        "seed",
        "git_commit",
        "versions",
        "wall_time_s",
    ):
        assert key in s
    assert s == summary and s["scores"]["loss_ratio"] < 1
    curves = pd.read_csv(d / "curves.csv")
    assert list(curves.columns) == rundir.CURVE_COLUMNS
    assert {"real", "twin", "theory"} <= set(curves.member)
    assert {"train_loss", "test_loss", "train_acc", "test_acc", "weight_norm"} <= set(curves.metric)
    offline = list((d / "wandb").glob("offline-run-*/run-*.wandb"))
    assert offline, "W&B offline wrote no run file"


def test_wandb_failure_warns_and_run_completes(tmp_path, fake_phenomenon, monkeypatch, caplog) -> None:
    import wandb

    from comparisons.engine.run import run
    from comparisons.engine.rundir import resolve_run_dir

    calls = []

    def boom(*a, **k):
        calls.append(k["mode"])
        raise RuntimeError("no network")

    monkeypatch.setattr(wandb, "init", boom)
    cfg = _cfg(tmp_path, "logger=wandb", "logger.mode=online")
    run(cfg)
    assert rundir.is_complete(resolve_run_dir(cfg))
    assert calls == ["online", "offline"]  # online failed, retried offline, then gave up with a warning
    assert sum("W&B init" in r.message for r in caplog.records) == 2


def test_unreachable_server_times_out_fast_then_offline_with_one_warning(
    tmp_path, fake_phenomenon, monkeypatch, caplog
) -> None:
    import logging

    import wandb

    from comparisons.engine.run import run
    from comparisons.engine.rundir import resolve_run_dir

    real_init, calls = wandb.init, []

    def unreachable_online(*a, **k):
        calls.append((k["mode"], k["settings"].init_timeout))
        if k["mode"] == "online":
            raise TimeoutError(f"wandb.init timed out after {k['settings'].init_timeout}s")  # what W&B raises
        return real_init(*a, **k)

    monkeypatch.setattr(wandb, "init", unreachable_online)
    cfg = _cfg(tmp_path, "logger=wandb", "logger.mode=online")
    with caplog.at_level(logging.WARNING):
        run(cfg)
    d = resolve_run_dir(cfg)
    assert rundir.is_complete(d)
    assert [m for m, _ in calls] == ["online", "offline"] and calls[0][1] <= 10
    warnings = [r.message for r in caplog.records if "W&B" in r.message]
    assert len(warnings) == 1 and "retrying offline" in warnings[0]
    assert list((d / "wandb").glob("offline-run-*/run-*.wandb"))  # logged offline after all


def test_complete_run_is_not_retrained(tmp_path, fake_phenomenon) -> None:
    from comparisons.engine.run import run
    from comparisons.engine.rundir import resolve_run_dir

    cfg = _cfg(tmp_path)
    first = run(cfg)
    mtime = (resolve_run_dir(cfg) / "curves.csv").stat().st_mtime_ns
    assert run(cfg) == first
    assert (resolve_run_dir(cfg) / "curves.csv").stat().st_mtime_ns == mtime


def test_seeds_are_aggregated_and_report_renders(tmp_path, fake_phenomenon) -> None:
    from comparisons.engine.report import report_main
    from comparisons.engine.run import run
    from comparisons.engine.rundir import resolve_run_dir

    cfg = _cfg(tmp_path, "seeds=[0,1,2]")
    summary = run(cfg)
    assert summary["n"] == 3 and summary["seeds"] == [0, 1, 2]
    lo, hi = summary["score_intervals"]["loss_ratio"]
    assert lo <= summary["scores"]["loss_ratio"] <= hi
    parent = resolve_run_dir(cfg)
    assert report_main([str(parent)]) == 0
    md = (parent / "report.md").read_text()
    assert "| grokking |" in md and "n=3" in md and (parent / "report.html").exists()
    assert (parent / "figures" / "evidence.png").exists()
    assert "data:image/png;base64," in (parent / "report.html").read_text()


def test_wandb_is_live_bounded_and_labelled(tmp_path, fake_phenomenon, monkeypatch) -> None:
    """init before training with the config, job type and tags; metrics at every eval step as they are measured;
    then the evidence, figures at the last step and the run dir as an artifact."""
    import wandb

    from comparisons.engine.members import eval_steps
    from comparisons.engine.run import run

    events: list[tuple] = []

    class FakeRun:
        dir = str(tmp_path / "wandb" / "run" / "files")
        summary: dict = {}

        def define_metric(self, name, **k):
            events.append(("define", name, k.get("step_metric")))

        def log(self, d, **k):
            events.append(("log", dict(d)))

        def log_artifact(self, art):
            events.append(("artifact", art.type))

        def finish(self):
            events.append(("finish",))

    def fake_init(**k):
        events.append(("init", k["job_type"], tuple(k["tags"]), k["name"], k["config"]["seed"]))
        return FakeRun()

    monkeypatch.setattr(wandb, "init", fake_init)
    cfg = _cfg(tmp_path, "logger=wandb", "logger.mode=offline")
    run(cfg)
    assert events[0][0] == "init" and events[0][1] == cfg.phenomenon["name"] and cfg.phenomenon["name"] in events[0][2]
    assert ("define", "*", "step") in events
    steps = [e[1]["step"] for e in events if e[0] == "log" and "real/train_loss" in e[1]]
    assert steps == eval_steps(cfg.train.steps, cfg.train.eval_points, cfg.train.eval_grid)  # every eval step, live
    final = [e[1] for e in events if e[0] == "log" and "evidence" in e[1]]
    assert len(final) == 1 and final[0]["step"] == cfg.train.steps  # media at the last real step, not past it
    assert ("artifact", "lintwin-run") in events and events[-1] == ("finish",)


def test_a_run_finished_without_wandb_can_be_logged_later(tmp_path, fake_phenomenon) -> None:
    from comparisons.engine.run import run
    from comparisons.engine.rundir import resolve_run_dir
    from comparisons.engine.tracking import wandb_main

    cfg = _cfg(tmp_path)  # logger=none
    run(cfg)
    d = resolve_run_dir(cfg)
    assert not (d / "wandb").exists()
    assert wandb_main([str(tmp_path / "runs")]) == 0
    assert list((d / "wandb").glob("offline-run-*/run-*.wandb"))
    assert wandb_main([str(tmp_path / "nowhere")]) == 2


def test_flush_denormal_holds_while_training_only(tmp_path, monkeypatch) -> None:
    """train.flush_denormal=true: a float32 denormal (1e-39) computed during training reads 0, at the default it
    stays 1e-39, and after the run the process is back to IEEE arithmetic. At the default the key is not hashed."""
    import torch

    from comparisons.engine import run as run_mod
    from comparisons.engine.config import to_container

    def observe(member, step):
        return {"tiny": float(torch.tensor([1e-39], dtype=torch.float32) * 1.0)}

    fake = Phenomenon("grokking", observe, _predict, _score, _figures)
    monkeypatch.setattr(run_mod, "get_phenomenon", lambda name: fake)
    monkeypatch.setattr("comparisons.engine.phenomenon.get_phenomenon", lambda name: fake)
    seen = {}
    for flush in (False, True):
        cfg = _cfg(tmp_path, f"train.flush_denormal={str(flush).lower()}")
        run_mod.run(cfg)
        curves = pd.read_csv(rundir.resolve_run_dir(cfg) / "curves.csv")
        seen[flush] = curves[curves.metric == "tiny"].value
    assert len(seen[True]) > 1 and (seen[True] == 0.0).all()
    assert len(seen[False]) > 1 and ((seen[False] - 1e-39).abs() < 1e-42).all()
    assert float(torch.tensor([1e-39], dtype=torch.float32) * 1.0) > 0  # IEEE again after the run
    base = to_container(_cfg(tmp_path))
    without = {**base, "train": {k: v for k, v in base["train"].items() if k != "flush_denormal"}}
    assert rundir.config_hash(base) == rundir.config_hash(without)
    assert rundir.config_hash(to_container(_cfg(tmp_path, "train.flush_denormal=true"))) != rundir.config_hash(base)
