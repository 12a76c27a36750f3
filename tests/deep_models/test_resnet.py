"""CIFAR-style ResNets: stem, channels, stages, init, scales, norm (docs/theory.md 7.4)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deep_models import create_model


def make(name: str = "resnet_small", input_shape: tuple[int, ...] = (3, 8, 8), seed: int = 0, **kw) -> nn.Module:
    if name == "resnet_small":
        kw = {"width": 4, "blocks": [1, 1]} | kw
    g = torch.Generator().manual_seed(seed)
    return create_model(name, input_shape=input_shape, out_dim=3, generator=g, **kw)


def test_resnet18_cifar_layout() -> None:
    net = make("resnet18_cifar", input_shape=(3, 32, 32))
    stem = net.stem[0]
    assert (stem.kernel_size, stem.stride, stem.in_channels, stem.out_channels) == ((3, 3), (1, 1), 3, 64)
    assert not any(isinstance(m, nn.MaxPool2d) for m in net.modules())
    assert [len(s) for s in net.stages] == [2, 2, 2, 2]
    assert [s[0].conv1.out_channels for s in net.stages] == [64, 128, 256, 512]
    assert net.num_features == 512 and net.fc.in_features == 512
    assert 11.1e6 < sum(p.numel() for p in net.parameters()) < 11.2e6  # ResNet-18 has ~11.17M with 10 classes


def test_resnet_small_widths_blocks_and_spatial_sizes() -> None:
    net = make(width=16, blocks=[1, 2, 1], input_shape=(3, 32, 32))
    assert [len(s) for s in net.stages] == [1, 2, 1] and net.num_features == 64
    h = net.stem(torch.zeros(2, 3, 32, 32))
    sizes = []
    for stage in net.stages:
        h = stage(h)
        sizes.append(tuple(h.shape[1:]))
    assert sizes == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]


@pytest.mark.parametrize("input_shape", [(1, 28, 28), (28, 28)])
def test_mnist_single_channel(input_shape: tuple[int, ...]) -> None:
    net = make(input_shape=input_shape)
    assert net.stem[0].in_channels == 1
    x = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))
    assert net(x).shape == (2, 3)


def test_norm_none_has_no_batchnorm_and_conv_has_no_bias() -> None:
    net = make(norm="none")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert all(m.bias is None for m in net.modules() if isinstance(m, nn.Conv2d))
    assert sum(isinstance(m, nn.BatchNorm2d) for m in make().modules()) == 1 + 2 + 2 + 1  # stem, 2 blocks, 1 shortcut


@pytest.mark.parametrize("init_scale", [0.5, 2.0])
def test_conv_init_is_he_fan_out_times_init_scale(init_scale: float) -> None:
    net = make(width=32, blocks=[1, 1], init_scale=init_scale)
    conv = net.stages[1][0].conv2  # 64 x 64 x 3 x 3 = 36864 draws
    target = init_scale * math.sqrt(2.0 / (64 * 9))
    assert abs(conv.weight.double().std().item() - target) / target < 0.02
    bound = init_scale / math.sqrt(net.fc.in_features)  # fc: PyTorch default times init_scale
    assert net.fc.weight.abs().max() <= bound and net.fc.weight.abs().max() > 0.9 * bound


@pytest.mark.parametrize("name", ["resnet_small", "resnet18_cifar"])
def test_output_scale_multiplies_output_exactly(name: str) -> None:
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    one, scaled = make(name).eval(), make(name, output_scale=0.1).eval()
    assert torch.equal(scaled(x), one(x) * 0.1)


def test_init_scale_with_batchnorm_only_acts_through_fc() -> None:
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    a, b = make(), make(init_scale=3.0)
    torch.testing.assert_close(b.forward_features(x), a.forward_features(x), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(b.fc.weight, 3.0 * a.fc.weight)


BAD = [
    (dict(norm="layer"), "norm='layer' must be one of batch, none"),
    (dict(width=0), "width=0 must be >= 1"),
    (dict(blocks=[]), "blocks=[] must be a non-empty list"),
    (dict(blocks=[1, 0]), "blocks=[1, 0] must be a non-empty list"),
    (dict(input_shape=(784,)), "input_shape=(784,) must be (C, H, W) or (H, W)"),
    (dict(output_scale=-1.0), "output_scale=-1.0 must be finite and > 0"),
]


@pytest.mark.parametrize(("kw", "needle"), BAD, ids=[str(k) for k, _ in BAD])
def test_bad_kwargs(kw: dict, needle: str) -> None:
    with pytest.raises(ValueError) as err:
        make(**kw)
    assert needle in str(err.value)
