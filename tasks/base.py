"""The Task container, the one-line TaskError, and helpers shared by every task.

A task is a set of tensors on one device plus a ``meta`` dict (docs/design.md "Data"). Every task fills
``meta`` with ``input_shape``, ``out_dim``, ``num_classes`` (None for regression), ``target_scale``,
``n_train`` and ``n_test``; regression targets use the suite's loss 1/(2N) sum ||f - y||^2 (docs/theory.md 2.2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

TARGETS = ("onehot", "centered_onehot", "label")

Sampler = Callable[[int, torch.Generator], tuple[Tensor, Tensor, "Tensor | None"]]


class TaskError(ValueError):
    """Bad task config or data: one line naming the config key and the fix.

    Example: ``task.n_train=70000 exceeds the 60000 MNIST training images; use task.n_train<=60000``.
    """

    def __init__(self, message: str) -> None:
        """Store ``message`` with any newlines folded into spaces."""
        # one line is the contract (cli.py prints it after "lintwin: "), so fold any stray newline
        super().__init__(" ".join(str(message).split()))


@dataclass
class Task:
    """Tensors of one task, already on the run's device and dtype.

    Attributes:
        name: Registry name, e.g. ``"mnist"``.
        x_train: Inputs, float (N, *input_shape), or long tokens (N, T) for a transformer.
        y_train: Regression/MSE targets, float (N, out_dim).
        x_test: Held-out inputs, same layout as ``x_train``, (N_test, ...).
        y_test: Held-out targets, (N_test, out_dim).
        labels_train: Class labels, long (N,); None for regression tasks.
        labels_test: Class labels, long (N_test,); None for regression tasks.
        meta: input_shape (tuple), out_dim (int), num_classes (int | None), target_scale (float),
            n_train (int | None), n_test (int), plus task-specific entries (see each task's docstring).
        online: True when training draws fresh samples with :meth:`sample`; ``x_train`` then holds a
            fixed monitor sample from the training distribution, for evaluating the train loss.
        sampler: Draws a fresh batch (online tasks only); use :meth:`sample`.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    labels_train: Tensor | None = None
    labels_test: Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    online: bool = False
    sampler: Sampler | None = field(default=None, repr=False)

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor | None]:
        """Draw a fresh batch from the training distribution (online tasks only).

        Args:
            batch_size: Number of samples B >= 1.
            generator: Random stream for the draw (e.g. the run's "data" stream).

        Returns:
            (x, y, labels): x (B, *input_shape), y (B, out_dim), labels long (B,) or None, on the task's device.

        Raises:
            TaskError: The task is not online, or batch_size < 1.
        """
        if not self.online or self.sampler is None:
            raise TaskError(
                f"task {self.name} is not online, so it has no sample(); index x_train/y_train instead "
                "(for sparse_parity, leave task.n_train unset to train online)"
            )
        if int(batch_size) < 1:
            raise TaskError(f"batch_size={batch_size} must be >= 1 for {self.name}.sample()")
        return self.sampler(int(batch_size), generator)


def spawn(generator: torch.Generator, n: int) -> list[torch.Generator]:
    """Derive ``n`` independent child streams from ``generator`` (one draw of n seeds).

    Each part of a task (split, subset, probes, ...) gets its own child, so changing the size of one
    part (say ``n_train``) leaves the others identical (docs/design.md "Randomness").

    Args:
        generator: Parent stream; advanced by one draw.
        n: Number of children.

    Returns:
        ``n`` generators on the parent's device.
    """
    seeds = torch.randint(0, 2**62, (n,), generator=generator, device=generator.device)
    return [torch.Generator(device=generator.device).manual_seed(int(s)) for s in seeds.tolist()]


def encode_targets(labels: Tensor, num_classes: int, target: str, target_scale: float, dtype: torch.dtype) -> Tensor:
    """Encode integer class labels as float regression targets.

    - ``onehot``: S * e_c, shape (N, C) (docs/theory.md 2.3: S is the one-hot multiplier ``target_scale``).
    - ``centered_onehot``: S * (e_c - 1/C), i.e. (I - J) applied to the one-hot, shape (N, C).
    - ``label``: S * c as a single float column, shape (N, 1) (scalar regression onto the class index).

    Args:
        labels: Long (N,), values in [0, C).
        num_classes: C.
        target: One of :data:`TARGETS`.
        target_scale: S > 0.
        dtype: Float dtype of the result.

    Returns:
        Float targets on ``labels.device``, (N, C) or (N, 1).
    """
    if target == "label":
        return (target_scale * labels.to(dtype)).unsqueeze(1)
    y = torch.nn.functional.one_hot(labels, num_classes).to(dtype)
    if target == "centered_onehot":
        y = y - 1.0 / num_classes
    return target_scale * y


def target_out_dim(target: str, num_classes: int) -> int:
    """Width of the targets :func:`encode_targets` makes: C, or 1 for ``label``."""
    return 1 if target == "label" else num_classes


def check_choice(key: str, value: Any, choices: Sequence[Any]) -> None:
    """Raise a TaskError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise TaskError(f"task.{key}={value!r} is not allowed; use one of {', '.join(repr(c) for c in choices)}")


def check_int(key: str, value: Any, *, low: int | None = None, high: int | None = None, hint: str = "") -> int:
    """Return ``value`` as an int, raising a one-line TaskError if it is not an integer in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise TaskError(f"task.{key}={value!r} must be an integer{hint and '; ' + hint}")
    value = int(value)
    if low is not None and value < low:
        raise TaskError(f"task.{key}={value} must be >= {low}{hint and '; ' + hint}")
    if high is not None and value > high:
        raise TaskError(f"task.{key}={value} must be <= {high}{hint and '; ' + hint}")
    return value


def check_float(key: str, value: Any, *, positive: bool = False, nonneg: bool = False) -> float:
    """Return ``value`` as a finite float, raising a one-line TaskError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or abs(value) == float("inf"):
        raise TaskError(f"task.{key}={value!r} must be a finite number")
    if positive and not value > 0:
        raise TaskError(f"task.{key}={value} must be > 0")
    if nonneg and not value >= 0:
        raise TaskError(f"task.{key}={value} must be >= 0")
    return float(value)


def check_bool(key: str, value: Any) -> bool:
    """Return ``value`` if it is a bool, raising a one-line TaskError otherwise."""
    if not isinstance(value, bool):
        raise TaskError(f"task.{key}={value!r} must be true or false")
    return value


def base_meta(
    *,
    input_shape: tuple[int, ...],
    out_dim: int,
    num_classes: int | None,
    target_scale: float,
    n_train: int | None,
    n_test: int,
    **extra: Any,
) -> dict[str, Any]:
    """The meta entries every task carries (contracts.md "tasks"), plus task-specific ``extra``."""
    return {
        "input_shape": tuple(int(s) for s in input_shape),
        "out_dim": int(out_dim),
        "num_classes": num_classes,
        "target_scale": float(target_scale),
        "n_train": n_train,
        "n_test": int(n_test),
        **extra,
    }
