"""Image classification tasks: mnist, fashion_mnist, cifar10, loaded with ``torchvision.datasets``.

Data root: the ``data_root`` key, else the environment variable ``LINTWIN_DATA``, else ``./data``
(docs/design.md "Data"). Nothing is written into the root unless ``download=true``.

Pipeline, in this order: pixels / 255 in [0, 1] -> class-balanced seeded subsets (``n_train``, ``n_test``)
-> optional per-channel standardization with train-subset statistics (``normalize``) -> optional whitening
fit on train (``whiten``, docs/theory.md 2.5) -> times ``input_scale`` (docs/theory.md 6.4 uses raw pixels times
input_scale) -> optional flattening. Targets: ``target_scale`` * one-hot (docs/theory.md 2.3, 6.4), centred
one-hot, or the class index.
"""

from __future__ import annotations

import inspect
import logging
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision import datasets

from tasks.base import (
    TARGETS,
    Task,
    TaskError,
    base_meta,
    check_bool,
    check_choice,
    check_float,
    check_int,
    encode_targets,
    spawn,
    target_out_dim,
)
from tasks.registry import register_task
from tasks.whitening import METHODS, fit_whitener

log = logging.getLogger(__name__)

ENV_VAR = "LINTWIN_DATA"


class _UncheckedCIFAR10:
    """CIFAR-10 from ``cifar-10-batches-py/`` without torchvision's md5 checks, and without ``pickle.load``.

    torchvision's CIFAR10 checks each batch file's md5 before it unpickles it; the shared re-encoded copy fails
    that check, so this loader reads the same files (the layout of torchvision 0.29.1, datasets/cifar.py) through
    :class:`_ArrayUnpickler`, which builds numpy arrays, lists, dicts, bytes and str and nothing else: an
    unverified file can hold data but never run code.
    """

    def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
        folder = Path(root) / datasets.CIFAR10.base_folder
        names = [n for n, _ in (datasets.CIFAR10.train_list if train else datasets.CIFAR10.test_list)]
        data, targets = [], []
        for name in names:
            entry = _unpickle_arrays(folder / name)
            data.append(entry["data"])
            targets.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
        self.data = np.vstack(data).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))  # (N, H, W, C), as torchvision
        self.targets = targets
        self.classes = _unpickle_arrays(folder / datasets.CIFAR10.meta["filename"])[datasets.CIFAR10.meta["key"]]


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals a numpy array needs (no callable of any other module)."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),  # pickles written by numpy < 2 (the original CIFAR-10 files)
        ("numpy._core.multiarray", "_reconstruct"),  # numpy >= 2
    }

    def find_class(self, module: str, name: str) -> Any:
        """Resolve ``module.name`` if it is one of :attr:`ALLOWED`, else refuse."""
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"the file asks for {module}.{name}, which lintwin never unpickles")
        return super().find_class(module, name)


def _unpickle_arrays(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        entry = _ArrayUnpickler(f, encoding="latin1").load()
    if not isinstance(entry, dict):
        raise pickle.UnpicklingError(f"{path.name} holds a {type(entry).__name__}, not a dict of arrays")
    return entry


def data_files(dataset: str, data_root: str | os.PathLike | None) -> tuple[Path, list[Path]]:
    """The data root and the files of ``dataset`` that a run reads (those present), for the run's identity.

    Args:
        dataset: ``mnist``, ``fashion_mnist`` or ``cifar10``.
        data_root: ``task.data_root`` (None: ``$LINTWIN_DATA``, else ``./data``).

    Returns:
        (the data root as an absolute path, the existing data files under it, sorted).
    """
    root = Path(os.path.abspath(resolve_root(data_root)[0]))
    _, _, folder, files = _SOURCES[dataset]
    return root, sorted(p for p in (root / folder / f for f in files) if p.is_file())


# name -> (torchvision class, pretty name, folder under the root, files that must exist in it)
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_CIFAR_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
_SOURCES: dict[str, tuple[type, str, str, tuple[str, ...]]] = {
    "mnist": (datasets.MNIST, "MNIST", "MNIST/raw", _IDX_FILES),
    "fashion_mnist": (datasets.FashionMNIST, "Fashion-MNIST", "FashionMNIST/raw", _IDX_FILES),
    "cifar10": (datasets.CIFAR10, "CIFAR-10", "cifar-10-batches-py", _CIFAR_FILES),
}


def load_images(
    dataset: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    generator: torch.Generator,
    data_root: str | None = None,
    download: bool = False,
    n_train: int | None = None,
    n_test: int | None = None,
    normalize: bool = False,
    input_scale: float = 1.0,
    flatten: bool = False,
    whiten: str | None = None,
    target: str = "onehot",
    target_scale: float = 1.0,
    verify_checksums: bool = True,
) -> Task:
    """Load an image dataset as tensors.

    Args:
        dataset: "mnist", "fashion_mnist" or "cifar10".
        device: Where the tensors live.
        dtype: Float dtype of x and y.
        generator: Stream for the subsets (child 0: train subset, child 1: test subset).
        data_root: Folder holding ``MNIST/raw/``, ``FashionMNIST/raw/`` or ``cifar-10-batches-py/``;
            None -> $LINTWIN_DATA -> ./data.
        download: Let torchvision download into ``data_root`` when the files are missing.
        n_train: Size of a class-balanced random training subset (class counts differ by at most one when
            every class has enough images); None = all training images.
        n_test: The same for the test set; None = all test images.
        normalize: Standardize each channel with the mean/std of the training subset (applied to both splits).
        input_scale: Multiplies the inputs (after normalization/whitening).
        flatten: Return x as (N, C*H*W) instead of (N, C, H, W).
        whiten: None, "pca" or "zca": whitening fit on the training subset (docs/theory.md 2.5), needs n_train >= C*H*W.
        target: "onehot" (y = S e_c, (N, 10)), "centered_onehot" (S (e_c - 1/10)) or "label" (y = S c, (N, 1)).
        target_scale: S.
        verify_checksums: CIFAR-10 only. Check torchvision's md5 of every batch file (keep it on for real
            downloads). The shared re-encoded copy (shared/data/README.md) fails it; false loads it anyway and
            logs one warning.

    Returns:
        Task with x (N, *input_shape), y (N, out_dim), labels long (N,); meta adds ``classes`` (names),
        ``channel_mean``/``channel_std`` (when normalize), ``whiten``/``whiten_rank`` (when whitened), ``data_root``.

    Raises:
        TaskError: Missing or corrupt files, a subset larger than the split, or a bad option.
    """
    download, verify_checksums = check_bool("download", download), check_bool("verify_checksums", verify_checksums)
    normalize, flatten = check_bool("normalize", normalize), check_bool("flatten", flatten)
    input_scale = check_float("input_scale", input_scale)
    target_scale = check_float("target_scale", target_scale, positive=True)
    check_choice("target", target, TARGETS)
    if whiten is not None:
        check_choice("whiten", whiten, METHODS)
    root, source = resolve_root(data_root)

    if dataset == "cifar10" and not verify_checksums:
        log.warning("CIFAR-10 md5 checks are off (task.verify_checksums=false): loading %s unverified", root)
    x_tr, lab_tr, classes = _load_split(dataset, root, source, True, download, verify_checksums)
    x_te, lab_te, _ = _load_split(dataset, root, source, False, download, verify_checksums)
    g_train, g_test = spawn(generator, 2)
    pretty = _SOURCES[dataset][1]
    idx_tr = balanced_subset(lab_tr, n_train, g_train, key="n_train", what=f"{pretty} training images")
    idx_te = balanced_subset(lab_te, n_test, g_test, key="n_test", what=f"{pretty} test images")
    if n_train is not None:
        x_tr, lab_tr = x_tr[idx_tr], lab_tr[idx_tr]
    if n_test is not None:
        x_te, lab_te = x_te[idx_te], lab_te[idx_te]

    extra: dict[str, Any] = {"classes": list(classes), "data_root": str(root), "whiten": whiten}
    if normalize:
        mean, std = channel_stats(x_tr)  # (C,) float64, exact from the uint8 histogram
        extra |= {"channel_mean": mean.tolist(), "channel_std": std.tolist()}
    # uint8 -> [0, 1] directly in the run's dtype (a float64 copy of all of MNIST would take 376 MB)
    x_tr, x_te = x_tr.to(dtype).div_(255.0), x_te.to(dtype).div_(255.0)  # (N, C, H, W), in place: fresh copies
    if normalize:
        mean, std = mean.to(dtype).view(1, -1, 1, 1), std.to(dtype).view(1, -1, 1, 1)
        x_tr, x_te = x_tr.sub_(mean).div_(std), x_te.sub_(mean).div_(std)
    if whiten is not None:
        fitted = fit_whitener(x_tr, whiten)
        x_tr, x_te = fitted(x_tr), fitted(x_te)
        extra["whiten_rank"] = fitted.rank
    if input_scale != 1.0:
        x_tr, x_te = x_tr.mul_(input_scale), x_te.mul_(input_scale)
    if flatten:
        x_tr, x_te = x_tr.flatten(1), x_te.flatten(1)

    num_classes = len(classes)
    y_tr = encode_targets(lab_tr, num_classes, target, target_scale, dtype)
    y_te = encode_targets(lab_te, num_classes, target, target_scale, dtype)
    meta = base_meta(
        input_shape=tuple(x_tr.shape[1:]),
        out_dim=target_out_dim(target, num_classes),
        num_classes=num_classes,
        target_scale=target_scale,
        n_train=len(idx_tr),
        n_test=len(idx_te),
        target=target,
        input_scale=input_scale,
        **extra,
    )
    to = {"device": device, "dtype": dtype}
    return Task(
        name=dataset,
        x_train=x_tr.to(**to),
        y_train=y_tr.to(**to),
        x_test=x_te.to(**to),
        y_test=y_te.to(**to),
        labels_train=lab_tr.to(device),
        labels_test=lab_te.to(device),
        meta=meta,
    )


def _entry(dataset: str, doc: str) -> Callable[..., Task]:
    """A registered entry point ``dataset(**keys)`` whose signature lists exactly the keys it accepts."""

    def entry(**kwargs: Any) -> Task:
        return load_images(dataset, **kwargs)

    params = inspect.signature(load_images).parameters.values()
    keep = [p for p in params if p.name != "dataset" and (dataset == "cifar10" or p.name != "verify_checksums")]
    entry.__signature__ = inspect.Signature(keep)  # read by registry.task_keys to reject unknown keys
    entry.__name__ = entry.__qualname__ = dataset
    entry.__doc__ = doc
    return register_task(entry)


mnist = _entry("mnist", "MNIST digits, (1, 28, 28) or (784,) flattened; 10 classes. Keys: see load_images.")
fashion_mnist = _entry(
    "fashion_mnist", "Fashion-MNIST, (1, 28, 28) or (784,) flattened; 10 classes. Keys: see load_images."
)
cifar10 = _entry(
    "cifar10",
    "CIFAR-10, (3, 32, 32) or (3072,) flattened; 10 classes. Keys: see load_images (verify_checksums too).",
)


def resolve_root(data_root: str | os.PathLike | None) -> tuple[Path, str]:
    """The data root and where it came from: ``task.data_root``, ``$LINTWIN_DATA`` or the ``./data`` default."""
    if data_root is not None:
        return Path(data_root).expanduser(), "task.data_root"
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser(), f"${ENV_VAR}"
    return Path("data"), "the default ./data"


def balanced_subset(labels: Tensor, n: int | None, generator: torch.Generator, *, key: str, what: str) -> Tensor:
    """Indices of a class-balanced random subset of size n, in random order.

    Each class gets floor(n / C) or one more (the extra ones go to randomly chosen classes); a class with
    too few examples gives all it has and the rest is spread over the others (water-filling).

    Args:
        labels: Long (M,), class of each example.
        n: Subset size in [1, M]; None = all M examples in their stored order.
        generator: Stream for the draw.
        key: Config key named in errors (``n_train`` / ``n_test``).
        what: Noun for errors, e.g. "MNIST training images".

    Returns:
        Long (n,) indices into ``labels``.
    """
    total = labels.numel()
    if n is None:
        return torch.arange(total)
    n = check_int(key, n, low=1)
    if n > total:
        raise TaskError(f"task.{key}={n} exceeds the {total} {what}; use task.{key}<={total}")
    classes, counts = torch.unique(labels, return_counts=True)
    quota = torch.zeros_like(counts)
    remaining = n
    open_ = counts > quota
    while remaining > 0:  # water-filling: equal shares, capped by what each class holds
        k = int(open_.sum())
        share = remaining // k
        if share == 0:  # fewer left than open classes: one more each for randomly chosen classes
            pick = torch.nonzero(open_).flatten()
            pick = pick[torch.randperm(k, generator=generator, device=generator.device)[:remaining].cpu()]
            quota[pick] += 1
            break
        quota = torch.where(open_, torch.minimum(quota + share, counts), quota)
        remaining = n - int(quota.sum())
        open_ = counts > quota
    chosen = []
    for c, q in zip(classes.tolist(), quota.tolist(), strict=True):
        members = torch.nonzero(labels == c).flatten()
        perm = torch.randperm(members.numel(), generator=generator, device=generator.device).cpu()
        chosen.append(members[perm[:q]])
    idx = torch.cat(chosen)
    return idx[torch.randperm(idx.numel(), generator=generator, device=generator.device).cpu()]


def channel_stats(images: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and (unbiased) std of pixel / 255, exact, from a histogram of the uint8 values.

    Args:
        images: uint8 (N, C, H, W).

    Returns:
        mean, std: float64 (C,); std is clamped at 1e-12 so a constant channel does not divide by zero.
    """
    values = torch.arange(256, dtype=torch.float64) / 255.0
    hist = torch.stack([torch.bincount(images[:, c].flatten().long(), minlength=256) for c in range(images.shape[1])])
    hist = hist.to(torch.float64)  # (C, 256)
    count = hist.sum(1)  # (C,)
    mean = hist @ values / count
    var = (hist * (values - mean[:, None]) ** 2).sum(1) / (count - 1).clamp_min(1)
    return mean, var.sqrt().clamp_min(1e-12)


def _load_split(
    dataset: str, root: Path, source: str, train: bool, download: bool, verify_checksums: bool
) -> tuple[Tensor, Tensor, list[str]]:
    """Read one split with torchvision: uint8 images (N, C, H, W), long labels (N,), class names."""
    cls, pretty, folder, files = _SOURCES[dataset]
    where = root / folder
    missing = [f for f in files if not (where / f).is_file()]
    if missing and not download:
        raise TaskError(
            f"task.data_root: {pretty} not found: looked in {where} (data root {root}, from {source}; missing "
            f"{', '.join(missing[:2])}{', ...' if len(missing) > 2 else ''}); set {ENV_VAR} (or task.data_root) "
            f"to a folder holding {folder}/, or set task.download=true to fetch it into {root}"
        )
    if dataset == "cifar10" and not verify_checksums:
        cls = _UncheckedCIFAR10
    try:
        ds = cls(str(root), train=train, download=download)
        images, labels = ds.data, ds.targets
    except Exception as e:  # torchvision raises RuntimeError/AssertionError/ValueError/EOFError/... on bad files
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if dataset == "cifar10" and verify_checksums and "corrupted" in first:
            raise TaskError(
                f"task.verify_checksums: {pretty} files in {where} fail torchvision's md5 check ({first}); "
                f"re-download with task.download=true into a writable task.data_root, or set "
                f"task.verify_checksums=false to load this copy anyway (e.g. the re-encoded shared subset)"
            ) from None
        raise TaskError(
            f"task.data_root: {pretty} files in {where} are corrupt or truncated ({type(e).__name__}: {first}); "
            f"replace them, or set task.download=true with a fresh task.data_root"
        ) from None
    images = torch.as_tensor(np.asarray(images))
    images = images.permute(0, 3, 1, 2) if images.ndim == 4 else images.unsqueeze(1)  # (N, C, H, W)
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if images.shape[0] != labels.shape[0] or images.shape[0] == 0:
        raise TaskError(
            f"task.data_root: {pretty} files in {where} are inconsistent ({images.shape[0]} images, "
            f"{labels.shape[0]} labels); replace them, or set task.download=true with a fresh task.data_root"
        )
    return images.contiguous(), labels, list(ds.classes)
