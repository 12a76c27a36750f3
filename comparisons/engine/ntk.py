"""Empirical neural tangent kernel of any ``nn.Module`` and the kernel distance (docs/theory.md 2.6, 3.3, 5.5).

The empirical NTK on a probe batch x_1..x_N of a network f: R^d -> R^c with parameters theta is

    K[(i, n), (j, m)] = sum_p  d f_i(x_n) / d theta_p  *  d f_j(x_m) / d theta_p          (cN x cN)

stored output-major: row ``i * N + n`` is output i at sample n, so K = I_c (x) A + G (x) B for the two-layer
linear net of docs/theory.md 3.3 (Kronecker factor over outputs outside). Jacobians come from ``torch.func``
(``functional_call`` + ``vmap`` + ``jacrev``), chunked over samples so that only a few (chunk, c, P) blocks live
in memory at once; the Gram products run in float64. The kernel distance is Fort et al. 2020, arXiv:2010.15110:
KD(K0, K1) = 1 - <K0, K1>_F / (||K0||_F ||K1||_F).

The model is evaluated in ``eval()`` mode (BatchNorm uses running statistics, dropout is off), and buffers are held
fixed, so the kernel is that of the deterministic map the probe batch sees.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from linear_models.ntk import kernel_distance as lm_kernel_distance

__all__ = ["empirical_ntk", "jacobian", "kernel_distance", "summed_logit_ntk"]

DEFAULT_MAX_BYTES = 256 * 2**20  # keep every Jacobian block in memory below this, else recompute blocks


def jacobian(model: nn.Module, x: torch.Tensor, chunk_size: int = 32) -> torch.Tensor:
    """Per-sample Jacobian of the outputs with respect to all trainable parameters.

    Args:
        model: Any module mapping (N, *input_shape) -> (N, c). Evaluated in eval mode, then restored.
        x: Probe inputs, shape (N, *input_shape).
        chunk_size: Samples per vmap call (bounds peak memory to about chunk_size * c * P numbers).

    Returns:
        J, shape (N, c, P), in the model's dtype; P counts the parameters with ``requires_grad``, in
        ``named_parameters`` order, each flattened row-major.
    """
    return torch.cat([_jac_chunk(model, x[i : i + chunk_size]) for i in range(0, len(x), chunk_size)])


def empirical_ntk(
    model: nn.Module, x: torch.Tensor, chunk_size: int = 32, max_bytes: int = DEFAULT_MAX_BYTES
) -> torch.Tensor:
    """Full empirical NTK on a probe batch, output-major (docs/theory.md 2.6, 3.3, 5.5).

    Memory: the Jacobian blocks of all chunks are kept when N * c * P numbers fit in ``max_bytes``; otherwise each
    off-diagonal block K_ab = J_a J_b^T recomputes J_b (time grows with the number of chunks, memory does not).

    Args:
        model: Module mapping (N, *input_shape) -> (N, c).
        x: Probe inputs, shape (N, *input_shape).
        chunk_size: Samples per Jacobian chunk.
        max_bytes: Budget for keeping all Jacobian blocks at once.

    Returns:
        K, shape (c N, c N), float64, on ``x``'s device; K[i * N + n, j * N + m] = <df_i(x_n), df_j(x_m)>.

    Example:
        >>> net = nn.Linear(3, 2, bias=False)
        >>> x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
        >>> k = empirical_ntk(net, x)  # d f_i / d W[j, l] = delta_ij x_l, so K = I_2 (x) x x^T
        >>> torch.allclose(k, torch.kron(torch.eye(2, dtype=torch.float64), x.double() @ x.double().T))
        True
    """
    n = len(x)
    starts = list(range(0, n, chunk_size))
    first = _jac_chunk(model, x[:chunk_size]).double()  # (b, c, P)
    c, p = first.shape[1], first.shape[2]
    k = torch.zeros(n, c, n, c, dtype=torch.float64, device=x.device)
    keep = n * c * p * 8 <= max_bytes
    cache: dict[int, torch.Tensor] = {0: first}

    def block(s: int) -> torch.Tensor:
        if s in cache:
            return cache[s]
        j = _jac_chunk(model, x[s : s + chunk_size]).double()
        if keep:
            cache[s] = j
        return j

    for a, sa in enumerate(starts):
        ja = block(sa).reshape(-1, p)  # (b*c, P)
        for sb in starts[a:]:
            jb = ja if sb == sa else block(sb).reshape(-1, p)
            kab = (ja @ jb.T).reshape(-1, c, jb.shape[0] // c, c)  # (ba, c, bb, c)
            k[sa : sa + kab.shape[0], :, sb : sb + kab.shape[2], :] = kab
            if sb != sa:
                k[sb : sb + kab.shape[2], :, sa : sa + kab.shape[0], :] = kab.permute(2, 3, 0, 1)
        if not keep:
            cache.clear()
    return k.permute(1, 0, 3, 2).reshape(c * n, c * n)  # (n, i, m, j) -> output-major (i, n, j, m)


def summed_logit_ntk(model: nn.Module, x: torch.Tensor, chunk_size: int = 32) -> torch.Tensor:
    """The cheaper summed-logit kernel: the NTK of g(x) = sum_i f_i(x) (docs/theory.md 5.5; report it as such).

    It equals the sum over output blocks of the full kernel, sum_ij K[(i, n), (j, m)], at 1/c of the memory.

    Args:
        model: Module mapping (N, *input_shape) -> (N, c).
        x: Probe inputs, shape (N, *input_shape).
        chunk_size: Samples per Jacobian chunk.

    Returns:
        K_sum, shape (N, N), float64.
    """
    blocks = [_jac_chunk(model, x[i : i + chunk_size], summed=True).double() for i in range(0, len(x), chunk_size)]
    j = torch.cat(blocks)[:, 0, :]  # (N, P)
    return j @ j.T


def kernel_distance(k0: torch.Tensor, k1: torch.Tensor) -> float:
    """Kernel distance of Fort et al. 2020 (docs/theory.md 2.6) of two empirical kernels, as a Python float.

    The one implementation is :func:`linear_models.ntk.kernel_distance` (float64, normalised first, NaN for a zero
    kernel); this adapter takes torch kernels of any shape (flattened to one row).
    """
    a = k0.detach().double().cpu().reshape(1, -1).numpy()
    b = k1.detach().double().cpu().reshape(1, -1).numpy()
    return float(lm_kernel_distance(a, b))


def _jac_chunk(model: nn.Module, x: torch.Tensor, summed: bool = False) -> torch.Tensor:
    """Jacobian of one chunk: (b, c, P), or (b, 1, P) of the summed output."""
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    frozen = {k: v.detach() for k, v in model.named_parameters() if not v.requires_grad}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    was_training = model.training
    model.eval()

    def f(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, {**p, **frozen, **buffers}, (xi.unsqueeze(0),)).squeeze(0)  # (c,)
        return out.sum(0, keepdim=True) if summed else out

    try:
        jac = vmap(jacrev(f), in_dims=(None, 0))(params, x)  # name -> (b, c, *shape)
    finally:
        model.train(was_training)
    return torch.cat([j.reshape(j.shape[0], j.shape[1], -1) for j in jac.values()], dim=2)
