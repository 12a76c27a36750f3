"""Linear teacher-student regression with Gaussian inputs (Saxe, McClelland & Ganguli 2014, arXiv:1312.6120).

The teacher is W* = U diag(s) V^T, (out_dim, d_in), with chosen singular values s and random orthonormal
U, V. Inputs x ~ N(0, Sigma), Sigma = diag(input eigenvalues) (isotropic: v I). Targets y = W* x + noise_std * eps.
With whitened inputs (docs/theory.md 2.5) Sigma_xx = I exactly on the sample and Sigma_yx = (1/N) Y^T X = W*
up to the noise, so the deep linear mode solution (docs/theory.md 3.2) applies with mode strengths s.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tasks.base import Task, TaskError, base_meta, check_float, check_int, spawn
from tasks.registry import register_task
from tasks.whitening import METHODS, fit_whitener


@register_task
def teacher_student(
    *,
    device: torch.device,
    dtype: torch.dtype,
    generator: torch.Generator,
    d_in: int = 16,
    out_dim: int = 4,
    singular_values: list[float] | tuple[float, ...] = (4.0, 3.0, 2.0, 1.0),
    input_variance: float = 1.0,
    input_eigenvalues: list[float] | tuple[float, ...] | None = None,
    n_train: int = 1000,
    n_test: int = 1000,
    noise_std: float = 0.0,
    whiten: str | None = None,
) -> Task:
    """Gaussian inputs, linear teacher with prescribed singular values.

    Random streams (children of ``generator``): teacher, train inputs, test inputs, train noise, test noise.

    Args:
        device: Where the tensors live.
        dtype: Float dtype of x and y.
        generator: The run's data stream.
        d_in: Input dimension d.
        out_dim: Output dimension c.
        singular_values: s_1..s_r of W*, r <= min(d_in, out_dim), each >= 0 (order kept: mode alpha has s_alpha).
        input_variance: v, isotropic input covariance v I (used when input_eigenvalues is None).
        input_eigenvalues: Diagonal of Sigma, d_in values > 0 (overrides input_variance).
        n_train: Training samples N.
        n_test: Test samples.
        noise_std: Standard deviation of the Gaussian label noise added to y.
        whiten: None, "pca" or "zca": whiten the inputs with a map fit on the training inputs (needs
            n_train >= d_in) and compute y from the whitened inputs, so the sample Sigma_xx = I and
            Sigma_yx = W* (noise aside). "pca" rotates inputs by V of the sample, so W* acts on the rotated x.

    Returns:
        Task, x (N, d_in), y (N, out_dim), no labels; meta adds ``teacher`` (W*, (out_dim, d_in)),
        ``teacher_u`` (out_dim, r), ``teacher_v`` (d_in, r), ``singular_values``, ``input_eigenvalues``,
        ``noise_std``, ``whiten``.

    Raises:
        TaskError: Wrong list lengths, negative values, or N < d with whitening.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> t = teacher_student(device=torch.device("cpu"), dtype=torch.float64, generator=g, singular_values=[2.0])
        >>> round(torch.linalg.svdvals(t.meta["teacher"])[0].item(), 6), t.x_train.shape
        (2.0, torch.Size([1000, 16]))
    """
    d_in = check_int("d_in", d_in, low=1)
    out_dim = check_int("out_dim", out_dim, low=1)
    n_train = check_int("n_train", n_train, low=1)
    n_test = check_int("n_test", n_test, low=1)
    noise_std = check_float("noise_std", noise_std, nonneg=True)
    s = _float_list("singular_values", singular_values, nonneg=True)
    if not 1 <= len(s) <= min(d_in, out_dim):
        raise TaskError(
            f"task.singular_values has {len(s)} values; a ({out_dim} x {d_in}) teacher takes 1 to "
            f"{min(d_in, out_dim)}, so shorten the list or raise task.d_in/task.out_dim"
        )
    if input_eigenvalues is None:
        eig = [check_float("input_variance", input_variance, positive=True)] * d_in
    else:
        eig = _float_list("input_eigenvalues", input_eigenvalues, positive=True)
        if len(eig) != d_in:
            raise TaskError(f"task.input_eigenvalues has {len(eig)} values; give exactly task.d_in={d_in}")
    if whiten is not None and whiten not in METHODS:
        raise TaskError(f"task.whiten={whiten!r} is not allowed; use null, 'pca' or 'zca'")

    g_teacher, g_xtr, g_xte, g_ntr, g_nte = spawn(generator, 5)
    r = len(s)
    u = _orthonormal(out_dim, r, g_teacher)  # (c, r)
    v = _orthonormal(d_in, r, g_teacher)  # (d, r)
    w = u @ torch.diag(torch.tensor(s, dtype=torch.float64)) @ v.T  # (c, d)
    scale = torch.tensor(eig, dtype=torch.float64).sqrt()  # (d,)
    x_tr = _normal((n_train, d_in), g_xtr) * scale  # (N, d)
    x_te = _normal((n_test, d_in), g_xte) * scale
    rank = None
    if whiten is not None:
        fitted = fit_whitener(x_tr, whiten)
        x_tr, x_te, rank = fitted(x_tr), fitted(x_te), fitted.rank
    y_tr = x_tr @ w.T + noise_std * _normal((n_train, out_dim), g_ntr)  # (N, c)
    y_te = x_te @ w.T + noise_std * _normal((n_test, out_dim), g_nte)

    to = {"device": device, "dtype": dtype}
    meta = base_meta(
        input_shape=(d_in,),
        out_dim=out_dim,
        num_classes=None,
        target_scale=max(s),
        n_train=n_train,
        n_test=n_test,
        teacher=w.to(**to),
        teacher_u=u.to(**to),
        teacher_v=v.to(**to),
        singular_values=s,
        input_eigenvalues=eig,
        noise_std=noise_std,
        whiten=whiten,
    )
    if rank is not None:
        meta["whiten_rank"] = rank
    return Task(
        name="teacher_student",
        x_train=x_tr.to(**to),
        y_train=y_tr.to(**to),
        x_test=x_te.to(**to),
        y_test=y_te.to(**to),
        meta=meta,
    )


def _orthonormal(n: int, r: int, g: torch.Generator) -> Tensor:
    """A random (n, r) matrix with orthonormal columns (QR of a Gaussian, signs fixed), float64 on CPU."""
    q, rr = torch.linalg.qr(_normal((n, r), g))
    return q * torch.sign(torch.diagonal(rr)).where(torch.diagonal(rr) != 0, torch.ones(()))


def _normal(shape: tuple[int, ...], g: torch.Generator) -> Tensor:
    """Standard normal float64 draw on the generator's device, returned on CPU."""
    return torch.randn(shape, generator=g, device=g.device, dtype=torch.float64).cpu()


def _float_list(key: str, values: object, *, nonneg: bool = False, positive: bool = False) -> list[float]:
    """Validate a list of numbers from the config."""
    if isinstance(values, int | float) and not isinstance(values, bool):
        values = [values]
    if not isinstance(values, list | tuple) or not values:
        raise TaskError(f"task.{key}={values!r} must be a non-empty list of numbers, e.g. task.{key}=[3.0,1.0]")
    return [check_float(key, v, nonneg=nonneg, positive=positive) for v in values]
