"""Input whitening (docs/theory.md 2.5): zero mean and (1/N) sum_n x_n x_n^T = I_d on the training inputs.

Recipe: centre X (N x d), take the thin SVD X_c = U S V^T, and set X_w = sqrt(N) U ("pca"). "zca" rotates
back into input space, X_w = sqrt(N) U V^T, which keeps pixel layout. The map is fit on the training set
and applied unchanged to the test set (and to fresh online samples).

Rank-deficient data (e.g. MNIST's always-black border pixels) has directions of zero variance. They are
mapped to zero, so the covariance is the projector onto the data's span (I_r padded with zeros), the
input keeps its dimension d (the twin shares the real network's first layer), and ``meta["whiten_rank"]``
records r. With full column rank the covariance is exactly I_d.
"""

from __future__ import annotations

import dataclasses
import logging
from math import prod, sqrt

import torch
from torch import Tensor

from tasks.base import Task, TaskError, check_choice

log = logging.getLogger(__name__)

METHODS = ("pca", "zca")


@dataclasses.dataclass(frozen=True)
class Whitener:
    """An affine whitening map x -> (x - mean) @ W, fit in float64.

    Attributes:
        mean: Training mean, (d,), float64.
        matrix: W, (d, d), float64: sqrt(N) V_r S_r^{-1} padded with zero columns ("pca"), or
            sqrt(N) V_r S_r^{-1} V_r^T ("zca").
        rank: r, the number of directions kept (singular values above the numerical-rank tolerance).
    """

    mean: Tensor
    matrix: Tensor
    rank: int

    def __call__(self, x: Tensor) -> Tensor:
        """Whiten x, (N, *shape) with prod(shape) = d; returns the same shape and dtype."""
        flat = x.reshape(x.shape[0], -1).to(torch.float64)
        out = (flat - self.mean.to(flat.device)) @ self.matrix.to(flat.device)
        return out.reshape(x.shape).to(x.dtype)


def fit_whitener(x: Tensor, method: str = "pca", key: str = "whiten") -> Whitener:
    """Fit the docs/theory.md 2.5 whitening map on training inputs.

    Args:
        x: Training inputs, float (N, *shape), d = prod(shape).
        method: "pca" or "zca".
        key: Config key named in errors (``task.<key>``).

    Returns:
        The fitted :class:`Whitener`; ``fit_whitener(x)(x)`` equals sqrt(N) U (pca) exactly in exact arithmetic.

    Raises:
        TaskError: Unknown method, integer (token) inputs, or N < d.
    """
    check_choice(key, method, METHODS)
    if not x.dtype.is_floating_point:
        raise TaskError(
            f"task.{key}={method} needs float inputs, but this task has {x.dtype} tokens; use task.{key}=null"
        )
    n, d = x.shape[0], prod(x.shape[1:])
    if n < d:
        raise TaskError(
            f"task.{key}={method} needs at least as many training inputs as input dimensions (docs/theory.md 2.5), "
            f"got n_train={n} < d={d}; use task.n_train>={d} or task.{key}=null"
        )
    flat = x.reshape(n, d).to(torch.float64)
    mean = flat.mean(0)
    _, s, vh = torch.linalg.svd(flat - mean, full_matrices=False)  # s: (d,), vh: (d, d)
    tol = s.max() * max(n, d) * torch.finfo(torch.float64).eps  # numpy.linalg.matrix_rank's default
    r = int((s > tol).sum())
    v_r = vh[:r].T  # (d, r)
    w = v_r * (sqrt(n) / s[:r])  # (d, r): sqrt(N) V_r S_r^{-1}
    # zca rotates back into input space; pca keeps principal coordinates and maps null directions to 0
    w = w @ v_r.T if method == "zca" else torch.cat([w, w.new_zeros(d, d - r)], dim=1)  # (d, d)
    if r < d:
        log.warning("whitening: inputs have rank %d < d=%d; the %d null directions map to 0", r, d, d - r)
    return Whitener(mean=mean, matrix=w, rank=r)


def whiten(task: Task, method: str = "pca") -> Task:
    """Return a whitened copy of ``task`` (the linear twin trains on it; docs/theory.md 2.5).

    The map is fit on ``task.x_train`` and applied to ``x_train``, ``x_test``, every probe input in
    ``meta["probes"]`` and, for online tasks, to each fresh batch from :meth:`Task.sample`. Targets and
    labels are unchanged. The original task is not modified.

    Args:
        task: A task with float inputs.
        method: "pca" (X_w = sqrt(N) U) or "zca" (X_w = sqrt(N) U V^T).

    Returns:
        The whitened task, same shapes, dtype and device; ``meta["whiten"] = method`` and
        ``meta["whiten_rank"] = r``.

    Raises:
        TaskError: Token inputs, an unknown method, or fewer training inputs than input dimensions.

    Example:
        >>> from tasks import build
        >>> g = torch.Generator().manual_seed(0)
        >>> t = build({"name": "teacher_student", "d_in": 4, "singular_values": [1.0], "n_train": 64}, generator=g)
        >>> w = whiten(t).x_train.double()
        >>> torch.allclose(w.T @ w / 64, torch.eye(4, dtype=torch.float64), atol=1e-5)
        True
    """
    fitted = fit_whitener(task.x_train, method)
    meta = {**task.meta, "whiten": method, "whiten_rank": fitted.rank}
    if "probes" in meta:
        meta["probes"] = [(fitted(x), g) for x, g in meta["probes"]]
    sampler = task.sampler
    if sampler is not None:
        inner = sampler

        def sampler(batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor | None]:
            x, y, labels = inner(batch_size, generator)
            return fitted(x), y, labels

    return dataclasses.replace(
        task, x_train=fitted(task.x_train), x_test=fitted(task.x_test), meta=meta, sampler=sampler
    )
