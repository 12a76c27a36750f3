"""Empirical NTK (comparisons/ntk.py) against hand-computed Jacobians and the 2-layer linear closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from comparisons.engine.ntk import empirical_ntk, jacobian, kernel_distance, summed_logit_ntk
from linear_models import two_layer


def tiny_tanh_net(seed: int = 0) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    return net


def hand_jacobian(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """d f_i / d theta for f = W2 tanh(W1 x + b1) + b2, params in named_parameters order (W1, b1, W2, b2)."""
    w1, b1, w2 = net[0].weight, net[0].bias, net[2].weight
    rows = []
    for xn in x:
        a = torch.tanh(w1 @ xn + b1)  # (3,)
        da = 1 - a**2
        per_out = []
        for i in range(2):
            d_w1 = torch.outer(w2[i] * da, xn)  # d f_i / d W1[k, l] = W2[i, k] (1 - a_k^2) x_l
            d_b1 = w2[i] * da
            d_w2 = torch.zeros(2, 3, dtype=torch.float64)
            d_w2[i] = a  # d f_i / d W2[j, k] = delta_ij a_k
            d_b2 = torch.zeros(2, dtype=torch.float64)
            d_b2[i] = 1.0
            per_out.append(torch.cat([d_w1.ravel(), d_b1, d_w2.ravel(), d_b2]))
        rows.append(torch.stack(per_out))
    return torch.stack(rows).detach()  # (N, c, P)


def test_jacobian_matches_hand_computed_jacobian_of_a_tiny_tanh_net() -> None:
    net = tiny_tanh_net()
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(jacobian(net, x, chunk_size=2), hand_jacobian(net, x), rtol=1e-12, atol=1e-12)


def test_ntk_is_the_output_major_gram_of_the_hand_jacobian() -> None:
    net = tiny_tanh_net()
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    j = hand_jacobian(net, x)  # (N, c, P)
    n, c = j.shape[:2]
    k = empirical_ntk(net, x, chunk_size=2)
    assert k.shape == (c * n, c * n) and k.dtype == torch.float64
    for i, nn_, jj, m in [(0, 0, 0, 0), (1, 3, 0, 4), (0, 2, 1, 2), (1, 4, 1, 1)]:
        assert k[i * n + nn_, jj * n + m].item() == pytest.approx(float(j[nn_, i] @ j[m, jj]), rel=1e-12)
    torch.testing.assert_close(k, torch.einsum("nip,mjp->injm", j, j).reshape(c * n, c * n), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("chunk", "max_bytes"), [(1, 2**30), (3, 2**30), (2, 0), (64, 0)])
def test_chunking_and_block_recomputation_do_not_change_the_kernel(chunk: int, max_bytes: int) -> None:
    net = tiny_tanh_net(2)
    x = torch.randn(7, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ref = torch.einsum("nip,mjp->injm", *(2 * (hand_jacobian(net, x),))).reshape(14, 14)
    torch.testing.assert_close(
        empirical_ntk(net, x, chunk_size=chunk, max_bytes=max_bytes), ref, rtol=1e-12, atol=1e-12
    )


def test_ntk_of_a_two_layer_linear_net_equals_the_closed_form_in_float64() -> None:
    g = torch.Generator().manual_seed(4)
    net = nn.Sequential(nn.Linear(4, 3, bias=False), nn.Linear(3, 2, bias=False)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    closed = two_layer.ntk_two_layer(net[0].weight.detach().numpy(), net[1].weight.detach().numpy(), x.numpy())
    np.testing.assert_allclose(empirical_ntk(net, x, chunk_size=4).numpy(), closed, rtol=1e-12, atol=1e-12)


def test_summed_logit_kernel_is_the_sum_of_the_output_blocks() -> None:
    net = tiny_tanh_net(5)
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    full = empirical_ntk(net, x).reshape(2, 4, 2, 4)
    torch.testing.assert_close(summed_logit_ntk(net, x, chunk_size=3), full.sum(dim=(0, 2)), rtol=1e-12, atol=1e-12)


def test_ntk_uses_eval_mode_and_restores_train_mode() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).double()
    net.train()
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    k = empirical_ntk(net, x)
    assert net.training and torch.isfinite(k).all()
    assert torch.allclose(k, k.T) and torch.linalg.eigvalsh(k).min() > -1e-10


def test_kernel_distance_values() -> None:
    k = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    assert kernel_distance(k, k) == pytest.approx(0.0, abs=1e-15)
    assert kernel_distance(k, 7.5 * k) == pytest.approx(0.0, abs=1e-15)  # scale-free (docs/theory.md 2.6)
    a, b = torch.eye(2, dtype=torch.float64), torch.diag(torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert kernel_distance(a, b) == pytest.approx(1 - 1 / math.sqrt(2), rel=1e-14)
    assert kernel_distance(a, b) == pytest.approx(float(two_layer.kernel_distance(a.numpy(), b.numpy())), rel=1e-12)
    assert math.isnan(kernel_distance(a, torch.zeros(2, 2)))


def test_kernel_distance_resolves_tiny_changes_of_large_kernels() -> None:
    k0 = 1e6 * torch.eye(3, dtype=torch.float64)
    k1 = k0.clone()
    k1[0, 1] = k1[1, 0] = 1e6 * 1e-4  # KD = 1 - 1/sqrt(1 + 2e-8/3) ~ 3.3e-9
    assert kernel_distance(k0, k1) == pytest.approx(1 - 1 / math.sqrt(1 + 2e-8 / 3), rel=1e-4)
