"""tasks/registry.py and tasks/base.py: names, keys, one-line errors, common meta, device/dtype."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tasks import Task, TaskError, build, list_tasks, register_task, task_keys

NAMES = ["cifar10", "fashion_mnist", "mnist", "modular", "sparse_parity", "teacher_student"]

# small, fast configs for the synthetic tasks (the image tasks are covered in test_images.py)
SMALL = {
    "modular": {"p": 7},
    "sparse_parity": {"n_bits": 8, "n_skills": 2, "bits_per_skill": 2, "n_test": 16, "n_probe": 4},
    "teacher_student": {"d_in": 5, "out_dim": 3, "singular_values": [2.0, 1.0], "n_train": 20, "n_test": 10},
}
META_KEYS = {"input_shape", "out_dim", "num_classes", "target_scale", "n_train", "n_test"}


def test_list_tasks() -> None:
    assert list_tasks() == NAMES


def test_task_error_is_value_error_and_one_line() -> None:
    err = TaskError("task.x: bad\nvalue;  fix it")
    assert isinstance(err, ValueError) and str(err) == "task.x: bad value; fix it"


BAD = [
    ({"name": "mnsit"}, "task.name='mnsit' is not a known task; did you mean mnist?"),
    ({"p": 7}, "task.name: missing; set task.name to one of cifar10, fashion_mnist"),
    ({"name": "modular", "pp": 7}, "task.pp: unknown key for task modular; did you mean task.p? known: p, op,"),
    ({"name": "modular", "p": 1}, "task.p=1 must be >= 2"),
    ({"name": "modular", "p": 7.5}, "task.p=7.5 must be an integer"),
    ({"name": "sparse_parity", "target_scale": 0}, "task.target_scale=0 must be > 0"),
    ({"name": "teacher_student", "noise_std": float("nan")}, "task.noise_std=nan must be a finite number"),
]


@pytest.mark.parametrize(("cfg", "needle"), BAD, ids=[str(c) for c, _ in BAD])
def test_bad_config_is_one_line_task_error(cfg, needle, gen) -> None:
    with pytest.raises(TaskError) as e:
        build(cfg, generator=gen(0))
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_none_keeps_default_and_dictconfig_accepted(gen) -> None:
    cfg = OmegaConf.create({"name": "teacher_student", **SMALL["teacher_student"], "noise_std": None})
    t = build(cfg, generator=gen(0))
    assert t.meta["noise_std"] == 0.0 and t.meta["singular_values"] == [2.0, 1.0]
    assert task_keys("modular") == ["p", "op", "train_fraction", "encoding", "target", "target_scale"]


def test_register_twice_refused() -> None:
    def modular() -> Task:  # same name as the registered task
        raise AssertionError

    with pytest.raises(ValueError, match="registered twice"):
        register_task(modular)


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_common_meta_device_dtype(name, dtype, gen) -> None:
    t = build({"name": name, **SMALL[name]}, device="cpu", dtype=dtype, generator=gen(0))
    assert t.meta.keys() >= META_KEYS and isinstance(t.meta["input_shape"], tuple)
    assert t.x_train.shape[1:] == t.meta["input_shape"] and t.y_train.shape[1] == t.meta["out_dim"]
    assert t.x_test.shape[1:] == t.meta["input_shape"] and t.y_test.shape[1] == t.meta["out_dim"]
    assert t.x_train.dtype == dtype and t.y_train.dtype == t.y_test.dtype == dtype
    assert t.x_train.device.type == "cpu"
    if t.meta["num_classes"] is None:
        assert t.labels_train is None
    else:
        assert t.labels_train.dtype == torch.long and t.labels_train.shape == (t.x_train.shape[0],)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_seeding_same_and_different(name, gen) -> None:
    a, b, c = (build({"name": name, **SMALL[name]}, generator=gen(s)) for s in (3, 3, 4))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not (torch.equal(a.x_train, c.x_train) and torch.equal(a.y_train, c.y_train))


def test_offline_task_has_no_sample(gen) -> None:
    t = build({"name": "modular", "p": 5}, generator=gen(0))
    with pytest.raises(TaskError, match="is not online"):
        t.sample(4, gen(1))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", sorted(SMALL))
def test_cuda_device(name, gen) -> None:
    t = build({"name": name, **SMALL[name]}, device="cuda", generator=gen(0))
    assert t.x_train.is_cuda and t.y_test.is_cuda
    if t.online:
        x, y, _ = t.sample(8, gen(1))
        assert x.is_cuda and y.is_cuda


CONF = Path(__file__).resolve().parents[2] / "conf" / "task"


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_task_yaml_builds(path, gen, request) -> None:
    cfg = OmegaConf.to_container(OmegaConf.load(path))
    assert cfg["name"] == path.stem and set(cfg) - {"name"} == set(task_keys(path.stem))  # every key, no extra
    if path.stem == "cifar10":
        cfg["verify_checksums"] = False  # the shared copy is re-encoded (shared/data/README.md)
    if path.stem == "fashion_mnist":
        pytest.skip("Fashion-MNIST is not in the shared data; test_images.py loads a tiny IDX copy instead")
    if "data_root" in cfg:
        cfg["data_root"] = str(request.getfixturevalue("data_root"))  # the runner fills it from paths.data_root
    t = build(cfg, generator=gen(0))
    assert t.x_train.shape[1:] == t.meta["input_shape"]
