"""Resumable sweeps (docs/design.md "Scale", "Failure model"): jobs keyed by config hash, a relaunch skips the complete
jobs, resumes the interrupted ones and reruns the failed ones; one failure never stops the sweep; ``manifest.json``
and ``lintwin status PATH`` list every job's state with its one-line reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from comparisons.engine import rundir, status
from comparisons.engine.config import to_container
from tests.conftest import compose_cfg

COMMON = [
    "phenomenon=grokking",
    "train.steps=40",
    "train.checkpoint_every=10",
    "train.eval_points=5",
    "task.p=7",
    "model.width=16",
]
JOBS = "optim.lr=0.01,-1,0.03,0.02"  # ok; invalid; fails once (a flaky node); killed after its first checkpoint


class Killed(BaseException):
    """Stands for kill -9 of the whole sweep: not an Exception, so nothing catches it."""


def test_relaunch_skips_done_resumes_interrupted_reruns_failed(
    lintwin, toy_phenomenon, monkeypatch, tmp_path: Path
) -> None:
    import comparisons.engine.loop

    done_dir, flaky_dir, killed_dir = (_run_dir(tmp_path, lr) for lr in (0.01, 0.03, 0.02))
    with monkeypatch.context() as m:  # launch 1: lr=0.03 hits a transient error, lr=0.02 is killed mid-run
        score = toy_phenomenon.score

        def flaky(curves, prediction, cfg):
            if cfg.optim.lr == 0.03:
                raise OSError("scratch disk vanished")
            return score(curves, prediction, cfg)

        def save(path: Path, state: dict) -> None:
            rundir.save_checkpoint(path, state)
            if path.parent == killed_dir:
                raise Killed

        m.setattr(toy_phenomenon, "score", flaky)
        m.setattr(comparisons.engine.loop, "save_checkpoint", save)
        with pytest.raises(Killed):
            lintwin("-m", JOBS, *COMMON, f"hydra.sweep.dir={tmp_path / 'sweep1'}")
    first = _states(tmp_path / "sweep1")
    assert first[_hash(tmp_path, 0.01)]["state"] == "done"
    assert first[_hash(tmp_path, 0.03)]["state"] == "failed"
    assert "OSError: scratch disk vanished" in first[_hash(tmp_path, 0.03)]["reason"]
    assert first[_hash(tmp_path, 0.02)]["state"] == "running"  # killed: left running, with a checkpoint
    assert (killed_dir / "checkpoint.pt").exists() and not rundir.is_complete(killed_dir)
    invalid = [j for j in first.values() if j["run_dir"] is None]
    assert len(invalid) == 1 and invalid[0]["reason"] == "optim.lr=-1.0 must be > 0 (e.g. optim.lr=0.01)"
    mtime = (done_dir / "curves.csv").stat().st_mtime_ns

    res = lintwin("-m", JOBS, *COMMON, f"hydra.sweep.dir={tmp_path / 'sweep2'}")  # launch 2: same command
    assert res.returncode == 1  # one job still fails; every other one is done
    manifest = json.loads((tmp_path / "sweep2" / "manifest.json").read_text())
    jobs = manifest["jobs"]
    assert manifest["counts"] == {"running": 0, "interrupted": 0, "failed": 1, "done": 3}
    assert jobs[_hash(tmp_path, 0.01)]["action"] == "skip"
    assert (done_dir / "curves.csv").stat().st_mtime_ns == mtime  # not retrained
    assert jobs[_hash(tmp_path, 0.02)]["action"] == "resume" and rundir.is_complete(killed_dir)
    flaky = jobs[_hash(tmp_path, 0.03)]  # rerun; it failed after training, so only scoring is redone
    assert flaky["state"] == "done" and flaky["action"] == "resume" and flaky["attempts"] == 2
    assert rundir.is_complete(flaky_dir)
    assert "failed (1):" in res.stderr and "optim.lr=-1: optim.lr=-1.0 must be > 0" in res.stderr
    assert "Traceback" not in res.stdout + res.stderr

    res = lintwin("status", str(tmp_path / "runs"), defaults=False)  # the runs root: every job with a run dir
    assert res.returncode == 0 and "3 jobs: 3 done" in res.stdout
    assert set(json.loads((tmp_path / "runs" / "manifest.json").read_text())["jobs"]) == {
        _hash(tmp_path, lr) for lr in (0.01, 0.02, 0.03)
    }


def test_one_failure_does_not_stop_the_sweep_and_is_listed_at_the_end(lintwin, toy_phenomenon, tmp_path: Path) -> None:
    res = lintwin("-m", "optim.lr=-1,0.01", *COMMON, f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert res.returncode == 1
    assert rundir.is_complete(_run_dir(tmp_path, 0.01))  # the job after the failing one ran
    tail = res.stderr.strip().splitlines()
    assert tail[-1].startswith("sweep manifest: ") and "failed (1):" in tail[-3]
    assert tail[-2].endswith("optim.lr=-1.0 must be > 0 (e.g. optim.lr=0.01)")


def test_status_command_prints_the_table_and_writes_the_manifest(lintwin, toy_phenomenon, tmp_path: Path) -> None:
    assert lintwin("-m", "optim.lr=0.01,0.02", *COMMON, f"hydra.sweep.dir={tmp_path / 'sweep'}").returncode == 0
    res = lintwin("status", str(tmp_path / "sweep"), defaults=False)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0].split() == ["state", "hash", "action", "job", "detail"]
    assert lines[-1] == "2 jobs: 2 done"
    assert {ln.split()[1] for ln in lines[1:3]} == {_hash(tmp_path, 0.01), _hash(tmp_path, 0.02)}
    res = lintwin("status", str(tmp_path / "sweep"), "--json", defaults=False)
    assert {j["state"] for j in json.loads(res.stdout).values()} == {"done"}


def test_dead_running_job_shows_as_interrupted(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run_dir = tmp_path / "runs" / "x" / "abc"
    run_dir.mkdir(parents=True)
    (run_dir / "checkpoint.pt").write_bytes(b"")
    rec = {
        "state": "running",
        "reason": "",
        "config_hash": "abc",
        "name": "x",
        "run_dir": str(run_dir),
        "host": status.socket.gethostname(),
        "pid": gone.pid,
        "updated": status._now(),
    }
    rundir.write_json(run_dir / status.STATUS, rec)
    (job,) = status.collect(tmp_path).values()
    assert job["state"] == "interrupted" and "resume from checkpoint.pt" in job["reason"]
    rundir.mark_complete(run_dir)  # finished after all (its status file was not updated): done wins
    assert status.collect(tmp_path)["abc"]["state"] == "done"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [([], "status takes one PATH"), (["/no/such/dir"], "is not a folder"), (["{tmp}"], "no lintwin job under")],
)
def test_status_bad_path_is_one_line_exit_2(argv: list[str], needle: str, lintwin, tmp_path: Path) -> None:
    res = lintwin("status", *[a.replace("{tmp}", str(tmp_path)) for a in argv], defaults=False)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and needle in res.stderr


def test_config_hash_ignores_output_paths_only() -> None:
    base = compose_cfg(COMMON)
    same = compose_cfg(
        [
            *COMMON,
            "paths.runs_root=/elsewhere",
            "paths.hydra_root=/x",
            "logger=wandb",
            "train.progress=on",
            "resume=false",
        ]
    )
    other = compose_cfg([*COMMON, "optim.lr=0.02"])
    assert _key(base) == _key(same) and _key(base) != _key(other)
    assert _key(base) != _key(compose_cfg([*COMMON, "seed=1"]))


# --- helpers ---


def _key(cfg) -> str:
    return rundir.config_hash(to_container(cfg))


def _cfg(tmp: Path, lr: float):
    cfg = compose_cfg([*COMMON, f"optim.lr={lr}", f"paths.runs_root={tmp / 'runs'}"])
    cfg.name = "grokking"  # as cli.main names a run without an experiment
    return cfg


def _hash(tmp: Path, lr: float) -> str:
    return _key(_cfg(tmp, lr))


def _run_dir(tmp: Path, lr: float) -> Path:
    from comparisons.engine.rundir import resolve_run_dir

    return resolve_run_dir(_cfg(tmp, lr))


def _states(path: Path) -> dict:
    return status.collect(path)
