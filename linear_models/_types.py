"""The result type shared by every ``simulate`` and ``predictor`` in :mod:`linear_models`.

A simulation records gradient descent at some steps; a predictor is evaluated at the same continuous times
t = lr * step (docs/theory.md 2.1). Both return a :class:`Trajectory`, so the two can be diffed key by key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Trajectory:
    """Named quantities recorded at a sequence of continuous times.

    Attributes:
        t: Continuous times, shape (T,), float64, in units of lr * step (docs/theory.md 2.1).
        values: Quantity name -> array whose first axis has length T (e.g. ``"s"``: (T, n) mode strengths,
            ``"loss"``: (T,)). The keys and trailing shapes of each family are listed in its docstrings.
        step: The GD steps at which a simulation recorded, shape (T,), int64; None for a predictor.
    """

    t: np.ndarray
    values: Mapping[str, np.ndarray]
    step: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        """Check that every value has one row per time."""
        t = np.asarray(self.t, dtype=np.float64)
        if t.ndim != 1:
            raise ValueError(f"Trajectory.t must be 1-D, got shape {t.shape}")
        object.__setattr__(self, "t", t)
        for key, val in self.values.items():
            if np.shape(val)[:1] != (t.size,):
                raise ValueError(f"Trajectory value {key!r} has shape {np.shape(val)}, expected leading axis {t.size}")
        if self.step is not None:
            object.__setattr__(self, "step", np.asarray(self.step, dtype=np.int64))

    def __getitem__(self, key: str) -> np.ndarray:
        """Return ``values[key]``."""
        return self.values[key]

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is a recorded quantity."""
        return key in self.values

    def keys(self) -> Iterable[str]:
        """The recorded quantity names."""
        return self.values.keys()

    def max_error(
        self, other: Trajectory, keys: Iterable[str] | None = None, relative: bool = False
    ) -> dict[str, float]:
        """Largest difference to another trajectory at the same times, per quantity.

        Args:
            other: A trajectory on the same time grid (checked to 1e-12 relative).
            keys: Quantities to compare; default all that both hold.
            relative: If True, divide by max(|other[key]|) (the reference scale), so 1e-3 means 0.1 % of the range.

        Returns:
            key -> max |self[key] - other[key]| (or its relative version), float.

        Raises:
            ValueError: If the time grids differ.
        """
        if self.t.shape != other.t.shape or not np.allclose(self.t, other.t, rtol=1e-12, atol=1e-15):
            raise ValueError("max_error needs both trajectories on the same time grid")
        keys = [k for k in self.values if k in other.values] if keys is None else list(keys)
        out = {}
        for k in keys:
            err = float(np.max(np.abs(np.asarray(self[k]) - np.asarray(other[k])), initial=0.0))
            if relative:
                err /= max(float(np.max(np.abs(other[k]), initial=0.0)), np.finfo(np.float64).tiny)
            out[k] = err
        return out


Predictor = Callable[[Any], Trajectory]
"""A function of continuous time: ``predictor(t)`` with t of shape (T,) returns a :class:`Trajectory` on t."""


def as_f64(x: Any) -> np.ndarray:
    """Convert an array-like (including a CPU or CUDA torch tensor, without importing torch) to float64 numpy."""
    if hasattr(x, "detach"):  # torch.Tensor: leave autograd and the device without importing torch here
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def record_steps_array(record_steps: Iterable[int] | int | None, steps: int) -> np.ndarray:
    """Validate the steps at which a simulation records.

    Args:
        record_steps: Steps in [0, steps], any order (sorted and deduplicated here); an int k means every k-th
            step plus the last; None means every step.
        steps: Number of GD updates.

    Returns:
        Sorted unique steps, shape (R,), int64.
    """
    if steps < 0:
        raise ValueError(f"steps={steps} must be >= 0")
    if record_steps is None:
        return np.arange(steps + 1, dtype=np.int64)
    if np.isscalar(record_steps):
        every = int(record_steps)  # type: ignore[arg-type]
        if every < 1:
            raise ValueError(f"record_steps={every} must be >= 1 when given as an interval")
        return np.unique(np.append(np.arange(0, steps + 1, every), steps)).astype(np.int64)
    rec = np.unique(np.asarray(list(record_steps), dtype=np.int64))  # type: ignore[arg-type]
    if rec.size == 0 or rec[0] < 0 or rec[-1] > steps:
        raise ValueError(f"record_steps must lie in [0, {steps}], got {rec[:1]}..{rec[-1:]}")
    return rec


def times_array(t: Any) -> np.ndarray:
    """Validate continuous times: float64, 1-D (a scalar becomes shape (1,)), finite and >= 0."""
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    if t.ndim != 1:
        raise ValueError(f"times must be a scalar or 1-D, got shape {t.shape}")
    if np.any(~np.isfinite(t)) or np.any(t < 0):
        raise ValueError("times must be finite and >= 0")
    return t
