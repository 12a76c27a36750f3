"""MLP: init statistics, the layer/output scales, depth 1, bad kwargs (docs/theory.md 2.4, 4.7, 6.4, 6.6)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deep_models import create_model, linear_twin


def make(seed: int = 0, input_shape: tuple[int, ...] = (1, 10, 10), out_dim: int = 3, **kw) -> nn.Module:
    kw = {"depth": 3, "width": 400} | kw
    return create_model(
        "mlp", input_shape=input_shape, out_dim=out_dim, generator=torch.Generator().manual_seed(seed), **kw
    )


def rel_err(t: torch.Tensor, target: float) -> float:
    return abs(t.double().std().item() - target) / target


@pytest.mark.parametrize("init_scale", [0.5, 2.0])
def test_fan_in_init_std(init_scale: float) -> None:
    ls = [3.0, 1.0, 0.5]
    net = make(init="fan_in", init_scale=init_scale, layer_scales=ls)
    for layer, s in zip(net.linear_layers(), ls, strict=True):
        fan = layer.in_features
        assert rel_err(layer.weight, init_scale * s / math.sqrt(fan)) < 0.03  # >= 1200 draws per tensor
        assert abs(layer.weight.double().mean().item()) < 0.1 * init_scale * s / math.sqrt(fan)
        bound = 1 / math.sqrt(fan)  # PyTorch's default bias, not scaled (docs/theory.md 6.4)
        assert layer.bias.abs().max() <= bound
        if layer.bias.numel() > 100:  # the head's 3 biases are too few for a std
            assert rel_err(layer.bias, bound / math.sqrt(3)) < 0.15


def test_normal_init_std_weights_and_biases() -> None:
    ls = [2.0, 1.0, 0.25]
    net = make(init="normal", init_scale=0.01, layer_scales=ls)  # docs/theory.md 4.7: all N(0, 0.01^2)
    for layer, s in zip(net.linear_layers(), ls, strict=True):
        assert rel_err(layer.weight, 0.01 * s) < 0.03
        if layer.bias.numel() > 100:  # the head's 3 biases are too few for a std
            assert rel_err(layer.bias, 0.01 * s) < 0.15


def test_torch_init_scales_weights_and_biases() -> None:
    net = make(init="torch", init_scale=8.0)  # Omnigrok, docs/theory.md 6.6
    for layer in net.linear_layers():
        bound = 8.0 / math.sqrt(layer.in_features)
        assert layer.weight.abs().max() <= bound and rel_err(layer.weight, bound / math.sqrt(3)) < 0.03
        assert layer.bias.abs().max() <= bound


@pytest.mark.parametrize("init", ["fan_in", "normal", "torch"])
def test_layer_scales_multiply_weights_exactly(init: str) -> None:
    base = make(init=init, init_scale=1.5)
    ls = [4.0, 1.0, 0.25]
    scaled = make(init=init, init_scale=1.5, layer_scales=ls)
    for a, b, s in zip(base.linear_layers(), scaled.linear_layers(), ls, strict=True):
        torch.testing.assert_close(b.weight, a.weight * s, rtol=1e-6, atol=0)
        expected_bias = a.bias if init == "fan_in" else a.bias * s  # fan_in keeps torch-default biases
        torch.testing.assert_close(b.bias, expected_bias, rtol=1e-6, atol=0)


def test_imbalance_keeps_the_twins_end_to_end_map() -> None:
    r = 3.0
    base = linear_twin(make(bias=False, depth=2, width=50)).double()
    imb = linear_twin(make(bias=False, depth=2, width=50, layer_scales=[r, 1 / r])).double()
    w1, w2 = (lay.weight for lay in imb.linear_layers())
    assert not torch.allclose(w1, base.linear_layers()[0].weight)
    x = torch.randn(6, 1, 10, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(imb(x), base(x), rtol=1e-5, atol=1e-7)  # float32 init, so ~1e-7 relative


@pytest.mark.parametrize("c", [0.1, 3.0])
def test_output_scale_multiplies_output_exactly(c: float) -> None:
    x = torch.randn(5, 1, 10, 10, generator=torch.Generator().manual_seed(1))
    one, scaled = make(depth=2, width=20), make(depth=2, width=20, output_scale=c)
    assert torch.equal(scaled(x), one(x) * c)
    assert torch.equal(scaled.forward_features(x), one.forward_features(x))  # features are not scaled


def test_depth_one_is_a_single_linear_on_the_flat_input() -> None:
    net = make(depth=1, input_shape=(2, 3), out_dim=4)
    x = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(0))
    assert net.num_features == 6 and net.linear_layers() == [net.head]
    assert torch.equal(net.forward_features(x), x.flatten(1))
    torch.testing.assert_close(net(x), x.flatten(1) @ net.head.weight.T + net.head.bias)


@pytest.mark.parametrize(
    ("act", "cls"), [("relu", nn.ReLU), ("tanh", nn.Tanh), ("gelu", nn.GELU), ("identity", nn.Identity)]
)
def test_activation_modules_one_per_position(act: str, cls: type) -> None:
    net = make(activation=act, depth=3, width=4)
    acts = [m for m in net.features if isinstance(m, cls)]
    assert len(acts) == 2 and acts[0] is not acts[1]


BAD = [
    (dict(depth=0), "depth=0 must be >= 1"),
    (dict(width=0), "width=0 must be >= 1"),
    (dict(activation="sigmoid"), "activation='sigmoid' must be one of relu, tanh, gelu, identity"),
    (dict(init="xavier"), "init='xavier' must be one of fan_in, normal, torch"),
    (dict(layer_scales=[1.0, 2.0]), "layer_scales has 2 entries, needs one per Linear layer (depth=3)"),
    (dict(layer_scales=[1.0, 0.0, 1.0]), "layer_scales[1]=0.0 must be finite and > 0"),
    (dict(init_scale=-1.0), "init_scale=-1.0 must be finite and >= 0"),
    (dict(output_scale=0.0), "output_scale=0.0 must be finite and > 0"),
]


@pytest.mark.parametrize(("kw", "needle"), BAD, ids=[str(k) for k, _ in BAD])
def test_bad_kwargs(kw: dict, needle: str) -> None:
    with pytest.raises(ValueError) as err:
        make(**({"width": 4} | kw))
    assert needle in str(err.value)


@pytest.mark.parametrize("threads", [1, 2])  # 1: torch's GEMM-based 1x1 conv; 2: oneDNN's 1x1 kernels
def test_conv1x1_linear_impl_equals_default(threads: int) -> None:
    kw = dict(depth=3, width=48, activation="gelu", output_scale=2.0)
    ref, fast = make(**kw), make(linear_impl="conv1x1", **kw)
    assert fast.state_dict().keys() == ref.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(ref.parameters(), fast.parameters(), strict=True))
    x = torch.randn(64, 1, 10, 10, generator=torch.Generator().manual_seed(1))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        outs = [net(x) for net in (ref, fast)]
        for out in outs:
            out.pow(2).sum().backward()
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    for a, b in zip(ref.parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5)
    assert linear_twin(fast).linear_impl == "conv1x1"
    with pytest.raises(ValueError, match="linear_impl='gemm' must be one of default, conv1x1"):
        make(width=4, linear_impl="gemm")
