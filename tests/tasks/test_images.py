"""tasks/images.py: torchvision loading of the shared MNIST / CIFAR-10 copies, subsets, preprocessing, errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from tasks import TaskError, build
from tasks.images import balanced_subset, channel_stats

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # shared/data/README.md


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("task."), msg
    return msg


def test_mnist_shapes_and_balanced_subset(data_root, gen) -> None:
    t = build({"name": "mnist", "data_root": str(data_root), "n_train": 1000, "n_test": 205}, generator=gen(0))
    assert t.x_train.shape == (1000, 1, 28, 28) and t.y_train.shape == (1000, 10)
    assert t.x_test.shape == (205, 1, 28, 28) and t.labels_test.dtype == torch.long
    assert t.labels_train.bincount(minlength=10).tolist() == [100] * 10
    counts = t.labels_test.bincount(minlength=10)
    assert counts.sum() == 205 and counts.max() - counts.min() == 1  # 20 or 21 each
    assert t.meta["input_shape"] == (1, 28, 28) and t.meta["num_classes"] == 10 and t.meta["out_dim"] == 10
    assert (t.meta["n_train"], t.meta["n_test"], t.meta["target_scale"]) == (1000, 205, 1.0)
    assert t.x_train.min() >= 0.0 and t.x_train.max() <= 1.0 and t.x_train.dtype == torch.float32
    torch.testing.assert_close(t.y_train, torch.nn.functional.one_hot(t.labels_train, 10).float())
    assert len(set(t.labels_train[:20].tolist())) > 1  # shuffled, not sorted by class


def test_mnist_full_matches_published_counts(data_root, gen, monkeypatch) -> None:
    monkeypatch.setenv("LINTWIN_DATA", str(data_root))
    t = build({"name": "mnist"}, generator=gen(0))  # data root from $LINTWIN_DATA
    assert t.x_train.shape == (60000, 1, 28, 28) and t.x_test.shape[0] == 10000
    assert t.labels_train.bincount().tolist() == MNIST_TRAIN_COUNTS
    assert t.labels_train[:5].tolist() == [5, 0, 4, 1, 9]  # stored order when n_train is None
    assert abs(t.x_train.mean().item() - 0.1307) < 1e-4


def test_mnist_seeding(data_root, gen) -> None:
    cfg = {"name": "mnist", "data_root": str(data_root), "n_train": 200, "n_test": 50}
    a, b, c = build(cfg, generator=gen(1)), build(cfg, generator=gen(1)), build(cfg, generator=gen(2))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.labels_test, b.labels_test)
    assert not torch.equal(a.x_train, c.x_train)


def test_mnist_preprocessing_order(data_root, gen) -> None:
    base = {"name": "mnist", "data_root": str(data_root), "n_train": 300, "n_test": 30}
    raw = build(base, generator=gen(0))
    t = build(
        {**base, "flatten": True, "input_scale": 0.01, "target": "centered_onehot", "target_scale": 3.0},
        generator=gen(0),
        dtype=torch.float64,
    )
    assert t.x_train.shape == (300, 784) and t.meta["input_shape"] == (784,)
    torch.testing.assert_close(t.x_train, 0.01 * raw.x_train.double().flatten(1))
    torch.testing.assert_close(t.y_train, 3.0 * (torch.nn.functional.one_hot(t.labels_train, 10).double() - 0.1))
    lab = build({**base, "target": "label", "target_scale": 2.0}, generator=gen(0))
    assert lab.y_train.shape == (300, 1) and lab.meta["out_dim"] == 1
    torch.testing.assert_close(lab.y_train[:, 0], 2.0 * lab.labels_train.float())


def test_normalize_uses_train_subset_stats(data_root, gen) -> None:
    t = build(
        {"name": "mnist", "data_root": str(data_root), "n_train": 500, "n_test": 50, "normalize": True},
        generator=gen(0),
        dtype=torch.float64,
    )
    x = t.x_train
    assert abs(x.mean().item()) < 1e-12 and abs(x.std().item() - 1.0) < 1e-9
    assert abs(t.x_test.mean().item()) > 1e-4  # test set uses the train statistics, not its own


def test_channel_stats_exact() -> None:
    imgs = torch.randint(0, 256, (7, 3, 4, 5), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    mean, std = channel_stats(imgs)
    ref = imgs.double().div(255).transpose(0, 1).reshape(3, -1)
    torch.testing.assert_close(mean, ref.mean(1))
    torch.testing.assert_close(std, ref.std(1))


def test_balanced_subset_water_fills_short_classes(gen) -> None:
    labels = torch.tensor([0] * 3 + [1] * 50 + [2] * 50)
    idx = balanced_subset(labels, 60, gen(0), key="n_train", what="images")
    assert idx.unique().numel() == 60
    assert labels[idx].bincount().tolist() in ([3, 28, 29], [3, 29, 28])


def test_cifar10_default_rejects_reencoded_copy(data_root, gen) -> None:
    with pytest.raises(TaskError) as e:
        build({"name": "cifar10", "data_root": str(data_root)}, generator=gen(0))
    msg = one_line(e)
    assert msg.startswith("task.verify_checksums") and "task.verify_checksums=false" in msg and "md5" in msg


def test_cifar10_unverified_loads_with_one_warning(data_root, gen, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="tasks"):
        t = build(
            {"name": "cifar10", "data_root": str(data_root), "verify_checksums": False, "n_test": 100, "flatten": True},
            generator=gen(0),
        )
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "verify_checksums=false" in warnings[0].getMessage()
    assert t.x_train.shape == (10000, 3072) and t.x_test.shape == (100, 3072)
    assert t.labels_train.bincount().tolist() == [1000] * 10 and t.labels_test.bincount().tolist() == [10] * 10
    assert t.meta["classes"][0] == "airplane" and t.meta["input_shape"] == (3072,)
    red = t.x_train.reshape(-1, 3, 32, 32)[:, 0]
    assert abs(red.mean().item() - 0.4934) < 1e-3  # README channel statistics


def test_fashion_mnist_through_torchvision(tmp_path, gen, idx_writer) -> None:
    rng = np.random.default_rng(0)
    raw = tmp_path / "FashionMNIST" / "raw"
    idx_writer(raw, "train", rng.integers(0, 256, (40, 28, 28)), np.arange(40) % 10)
    idx_writer(raw, "t10k", rng.integers(0, 256, (20, 28, 28)), np.arange(20) % 10)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    t = build({"name": "fashion_mnist", "data_root": str(tmp_path), "n_train": 20}, generator=gen(0))
    assert t.x_train.shape == (20, 1, 28, 28) and t.x_test.shape == (20, 1, 28, 28)
    assert t.labels_train.bincount().tolist() == [2] * 10 and t.meta["classes"][0] == "T-shirt/top"
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # download=false wrote nothing


def test_missing_data_error_names_place_and_fixes(tmp_path, gen, monkeypatch) -> None:
    monkeypatch.setenv("LINTWIN_DATA", str(tmp_path))
    with pytest.raises(TaskError) as e:
        build({"name": "mnist"}, generator=gen(0))
    msg = one_line(e)
    assert str(tmp_path / "MNIST" / "raw") in msg and "$LINTWIN_DATA" in msg
    assert "set LINTWIN_DATA" in msg and "task.download=true" in msg
    monkeypatch.delenv("LINTWIN_DATA")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TaskError, match=r"default \./data") as e:
        build({"name": "fashion_mnist"}, generator=gen(0))
    assert list(tmp_path.iterdir()) == []  # nothing created without download=true


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_truncated_file_is_one_line_error(tmp_path, gen, idx_writer, dataset) -> None:
    if dataset == "mnist":
        raw = tmp_path / "MNIST" / "raw"
        idx_writer(raw, "train", np.zeros((10, 28, 28)), np.zeros(10))
        idx_writer(raw, "t10k", np.zeros((10, 28, 28)), np.zeros(10))
        f = raw / "train-images-idx3-ubyte"
        f.write_bytes(f.read_bytes()[:-300])
        cfg = {"name": "mnist"}
    else:
        folder = tmp_path / "cifar-10-batches-py"
        folder.mkdir()
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
            (folder / name).write_bytes(b"\x80\x04\x95 truncated")
        cfg = {"name": "cifar10", "verify_checksums": False}
    with pytest.raises(TaskError) as e:
        build({**cfg, "data_root": str(tmp_path)}, generator=gen(0))
    assert "corrupt or truncated" in one_line(e)


BAD = [
    ({"n_train": 70000}, "task.n_train=70000 exceeds the 60000 MNIST training images; use task.n_train<=60000"),
    ({"n_test": 0}, "task.n_test=0 must be >= 1"),
    ({"whiten": "pcaa"}, "task.whiten='pcaa' is not allowed"),
    ({"target": "onehott"}, "task.target='onehott' is not allowed"),
    ({"flatten": "yes"}, "task.flatten='yes' must be true or false"),
    ({"whiten": "pca", "n_train": 100}, "n_train=100 < d=784; use task.n_train>=784"),
    ({"verify_checksums": False}, "task.verify_checksums: unknown key for task mnist"),
]


@pytest.mark.parametrize(("override", "needle"), BAD, ids=[next(iter(o)) for o, _ in BAD])
def test_bad_image_options(data_root, gen, override, needle) -> None:
    with pytest.raises(TaskError) as e:
        build({"name": "mnist", "data_root": str(data_root), **override}, generator=gen(0))
    assert needle in one_line(e)


class _Exploit:
    def __init__(self, target) -> None:
        self.target = target

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (self.target,))


def test_unverified_cifar_pickle_runs_no_code(tmp_path, gen, data_root) -> None:
    import pickle

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for f in (data_root / "cifar-10-batches-py").iterdir():
        (folder / f.name).symlink_to(f)
    (folder / "data_batch_2").unlink()
    payload = {"data": _Exploit(tmp_path / "PWNED"), "labels": [0]}
    (folder / "data_batch_2").write_bytes(pickle.dumps(payload))
    with pytest.raises(TaskError) as e:
        build({"name": "cifar10", "data_root": str(tmp_path), "verify_checksums": False}, generator=gen(0))
    msg = one_line(e)
    assert "corrupt or truncated" in msg and "pathlib" in msg and "which lintwin never unpickles" in msg
    assert not (tmp_path / "PWNED").exists()
    pickle.loads((folder / "data_batch_2").read_bytes())  # the control: the payload is live
    assert (tmp_path / "PWNED").exists()
