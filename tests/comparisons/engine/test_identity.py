"""A run dir belongs to one run: another config or changed data is refused, another commit is reused with a notice
(or retrained with rerun=stale), and the data root is part of the config hash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comparisons.engine import identity, rundir, status
from comparisons.engine.config import to_container
from tests.conftest import compose_cfg

BASE = ["phenomenon=grokking", "train.steps=5", "train.eval_points=3", "train.progress=off"]


def test_another_config_in_the_same_run_dir_is_refused(lintwin, toy_phenomenon, tmp_path: Path) -> None:
    d = tmp_path / "D"
    assert lintwin(*BASE, "optim.lr=0.01", f"paths.run_dir={d}").returncode == 0
    before = {f: (d / f).read_bytes() for f in ("curves.csv", "summary.json", "status.json", "identity.json")}
    res = lintwin(*BASE, "optim.lr=0.05", f"paths.run_dir={d}")
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        f"lintwin: run dir {d} holds another run (optim.lr: 0.01 there, 0.05 here); use another paths.run_dir, "
        "or resume=false to retrain it with this config, or resume=force to keep it as this config's"
    ]
    assert {f: (d / f).read_bytes() for f in before} == before  # nothing of the owner's run was touched
    forced = lintwin(*BASE, "optim.lr=0.05", f"paths.run_dir={d}", "resume=force")
    assert forced.returncode == 0 and (d / "curves.csv").read_bytes() == before["curves.csv"]  # kept, not retrained
    assert json.loads((d / "identity.json").read_text())["config"]["optim"]["lr"] == 0.05
    assert lintwin(*BASE, "optim.lr=0.05", f"paths.run_dir={d}").returncode == 0  # now it is this config's


def test_a_checkpoint_of_another_config_is_not_resumed(lintwin, toy_phenomenon, tmp_path: Path) -> None:
    d = tmp_path / "D"
    assert lintwin(*BASE, "model.width=8", f"paths.run_dir={d}").returncode == 0
    (d / "COMPLETE").unlink()  # an interrupted run: checkpoint.pt, no COMPLETE
    res = lintwin(*BASE, "model.width=9", f"paths.run_dir={d}")
    assert res.returncode == 2 and "holds another run (model.width: 8 there, 9 here)" in res.stderr
    retrain = lintwin(*BASE, "model.width=9", f"paths.run_dir={d}", "resume=false")
    assert retrain.returncode == 0 and (d / "COMPLETE").exists()


def test_the_data_root_is_part_of_the_hash_of_file_tasks_only(tmp_path: Path) -> None:
    a, b = (compose_cfg(["task=mnist", f"paths.data_root={tmp_path / r}"]) for r in ("a", "b"))
    assert rundir.config_hash(to_container(a)) != rundir.config_hash(to_container(b))
    assert rundir.hashed_config(to_container(a))["task"]["data_root"] == str(tmp_path / "a")
    x, y = (compose_cfg(["experiment=smoke", f"paths.data_root={tmp_path / r}"]) for r in ("a", "b"))
    # modular reads no files: its hash ignores the data root
    assert rundir.config_hash(to_container(x)) == rundir.config_hash(to_container(y))


def test_a_changed_data_file_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "MNIST" / "raw").mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (root / "MNIST" / "raw" / name).write_bytes(b"\0" * 64)
    cfg = compose_cfg(["task=mnist", f"paths.data_root={root}", f"paths.run_dir={tmp_path / 'D'}"])
    run_dir = tmp_path / "D"
    ident = identity.run_identity(cfg)
    assert [f["path"] for f in ident["data"]["files"]] == [
        "MNIST/raw/train-images-idx3-ubyte",
        "MNIST/raw/train-labels-idx1-ubyte",
    ]
    identity.write_identity(run_dir, ident)
    rundir.mark_complete(run_dir)
    assert identity.check(run_dir, cfg, identity.run_identity(cfg)) == ident  # unchanged data: accepted
    (root / "MNIST" / "raw" / "train-labels-idx1-ubyte").write_bytes(b"\0" * 65)
    with pytest.raises(identity.RunDirTaken, match=r"data file MNIST/raw/train-labels-idx1-ubyte: changed since"):
        identity.check(run_dir, cfg, identity.run_identity(cfg))


def test_a_run_of_another_commit_is_reused_with_a_notice_or_retrained(
    lintwin, toy_phenomenon, tmp_path: Path, monkeypatch
) -> None:
    import comparisons.engine.run

    d = tmp_path / "D"
    _commit(monkeypatch, "a" * 40)
    assert lintwin(*BASE, f"paths.run_dir={d}").returncode == 0
    curves = (d / "curves.csv").read_bytes()
    _commit(monkeypatch, "b" * 40)
    res = lintwin(*BASE, f"paths.run_dir={d}")
    assert res.returncode == 0 and res.stderr.strip().splitlines() == [
        f"lintwin: note: reused {d}, complete since commit {'a' * 12} (this checkout: {'b' * 12}); "
        "rerun=stale retrains it"
    ]
    cfg = compose_cfg([*BASE, f"paths.run_dir={d}", "name=grokking"])  # the name cli.main gives it
    assert comparisons.engine.run.run(cfg)["reused_from_commit"] == "a" * 40
    jobs = status.collect(d)
    assert [j["state"] for j in jobs.values()] == ["done"] and all(j.get("stale") for j in jobs.values())
    assert "stale: made by commit aaaaaaaaaaaa, this checkout is bbbbbbbbbbbb" in status.format_status(jobs)
    assert (d / "curves.csv").read_bytes() == curves
    assert lintwin(*BASE, f"paths.run_dir={d}", "rerun=stale").returncode == 0
    assert json.loads((d / "summary.json").read_text())["git_commit"] == "b" * 40  # retrained by this checkout
    assert not any(j.get("stale") for j in status.collect(d).values())


def test_status_does_not_call_a_run_without_complete_done(lintwin, toy_phenomenon, tmp_path: Path) -> None:
    d = tmp_path / "D"
    assert lintwin(*BASE, f"paths.run_dir={d}").returncode == 0
    assert [j["state"] for j in status.collect(d).values()] == ["done"]
    (d / "COMPLETE").unlink()
    (job,) = status.collect(d).values()
    assert job["state"] == "interrupted" and "COMPLETE marker is missing" in job["reason"]


def _commit(monkeypatch, sha: str) -> None:
    import comparisons.engine.run

    monkeypatch.setattr(rundir, "git_commit", lambda: sha)
    monkeypatch.setattr(comparisons.engine.run, "git_commit", lambda: sha)
