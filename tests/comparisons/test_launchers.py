"""Launchers (docs/design.md "Scale"): Hydra's own joblib and submitit plugins as presets in conf/hydra/launcher/, a
2-job multirun through submitit_local, and the W&B sweep file that drives lintwin with Hydra-style overrides.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from comparisons.engine import rundir
from tests.conftest import ROOT, compose_cfg

PRESETS = {
    "local_parallel": ("hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", {"n_jobs": 2}),
    "local_submitit": (
        "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
        {"cpus_per_task": 1, "gpus_per_node": 0, "tasks_per_node": 1},
    ),
    "slurm": (
        "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
        {"partition": None, "timeout_min": 240, "gpus_per_node": 0, "array_parallelism": 64, "max_num_timeout": 3},
    ),
}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_extends_the_plugin_config(preset: str) -> None:
    launcher = _launcher([f"hydra/launcher={preset}"])
    target, values = PRESETS[preset]
    assert launcher["_target_"] == target
    assert {k: launcher[k] for k in values} == values


def test_slurm_preset_takes_partition_time_gpus_and_array_parallelism() -> None:
    launcher = _launcher(
        [
            "hydra/launcher=slurm",
            "hydra.launcher.partition=gpu",
            "hydra.launcher.timeout_min=30",
            "hydra.launcher.gpus_per_node=1",
            "hydra.launcher.array_parallelism=8",
            "hydra.launcher.cpus_per_task=4",
        ],
        resolve=True,
    )
    assert (launcher["partition"], launcher["timeout_min"], launcher["gpus_per_node"]) == ("gpu", 30, 1)
    assert launcher["array_parallelism"] == 8
    assert launcher["setup"] == ["export OMP_NUM_THREADS=4", "export WANDB_MODE=offline"]


def test_seed_lists_pack_several_runs_into_one_array_task() -> None:
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = OverridesParser.create().parse_overrides(["seeds=[0,1,2,3],[4,5,6,7]", "experiment=smoke"])
    (jobs,) = BasicSweeper.split_arguments(overrides, None)
    assert len(jobs) == 2  # two Hydra jobs = two array tasks, four seeded runs each
    assert [compose_cfg(job).seeds for job in jobs] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_submitit_local_runs_a_two_job_multirun(lintwin, monkeypatch, tmp_path: Path) -> None:
    from comparisons.engine.phenomenon import get_phenomenon

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the job processes inherit the environment
    monkeypatch.setattr(get_phenomenon("grokking"), "figures", lambda run, out_dir: [])  # parent only: no effect
    sweep = tmp_path / "sweep"
    res = lintwin(
        "-m",
        "hydra/launcher=local_submitit",
        "experiment=smoke",
        "seed=0,1",
        "train.steps=10",
        "train.eval_points=4",
        f"hydra.sweep.dir={sweep}",
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert len(list((sweep / ".submitit").glob("*/*_log.out"))) == 2  # each job ran in its own submitit process
    manifest = json.loads((sweep / "manifest.json").read_text())
    assert manifest["counts"]["done"] == 2
    for job in manifest["jobs"].values():
        assert job["state"] == "done" and rundir.is_complete(Path(job["run_dir"]))
        assert job["pid"] != os.getpid()


def test_wandb_sweep_drives_lintwin_with_hydra_overrides() -> None:
    sweep = yaml.safe_load((ROOT / "conf" / "wandb_sweep.yaml").read_text())
    command = sweep["command"]
    assert "lintwin" in command and command[-1] == "${args_no_hyphens}"  # key=value: Hydra's override syntax
    fixed = [c for c in command if "=" in c and not c.startswith("$")]
    grid = {k: v["values"] for k, v in sweep["parameters"].items()}
    assert sweep["method"] in ("grid", "random", "bayes") and grid
    first = [f"{k}={v[0]}" for k, v in grid.items()]
    cfg = compose_cfg([*fixed, *first])  # every parameter is a real config key, and the command validates
    assert cfg.logger.name == "wandb" and cfg.optim.lr == grid["optim.lr"][0]
    assert sweep["metric"]["name"].startswith("score/")


# --- helpers ---


def _launcher(overrides: list[str], resolve: bool = False) -> dict:
    from omegaconf import OmegaConf

    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf"), job_name="test"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    return OmegaConf.to_container(cfg.hydra.launcher, resolve=resolve)
