"""with_nonlinearity: the twin-to-real homotopy, exact at both ends, in between in between (docs/theory.md 1.5)."""

from __future__ import annotations

import copy
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deep_models import create_model, is_layerwise_linear, linear_twin, list_models, nonlinear_modules
from deep_models import with_nonlinearity as wn
from deep_models.homotopy import ConvexActivation, MixedPool, ScaledTanh

SMALL = {  # one small instance of every registered model: (input_shape, kwargs)
    "mlp": ((1, 4, 4), dict(depth=3, width=16)),
    "resnet18_cifar": ((3, 8, 8), {}),
    "resnet_small": ((3, 8, 8), dict(width=4, blocks=[1, 1])),
    "transformer": ((3,), dict(d_model=16, n_heads=2, d_mlp=32)),
}
MIDDLE = (0.25, 0.5, 0.9)


def small(name: str, seed: int = 0, **extra: object) -> nn.Module:
    shape, kw = SMALL[name]
    g = torch.Generator().manual_seed(seed)
    return create_model(name, input_shape=shape, out_dim=3, generator=g, **{**kw, **extra})


def inputs(name: str, n: int = 4, dtype: torch.dtype = torch.float64, seed: int = 1) -> torch.Tensor:
    shape, _ = SMALL[name]
    g = torch.Generator().manual_seed(seed)
    if name == "transformer":
        return torch.randint(0, 4, (n, *shape), generator=g)
    return torch.randn(n, *shape, generator=g, dtype=dtype)


def test_small_table_covers_registry() -> None:
    assert sorted(SMALL) == list_models()


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_endpoints_are_the_twin_and_the_real_net_bitwise(name: str, dtype: torch.dtype, mode: str) -> None:
    real = small(name).to(dtype).train(mode == "train")
    x = inputs(name, dtype=dtype)
    twin = linear_twin(real)
    with torch.no_grad():
        assert torch.equal(wn(real, 0.0)(x), twin(x))
        assert torch.equal(wn(real, 0)(x), twin(x))  # an int strength too
        assert torch.equal(wn(real, 1.0)(x), real(x))
    assert is_layerwise_linear(wn(real, 0.0)) and nonlinear_modules(wn(real, 1.0)) == nonlinear_modules(real)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("strength", [0.0, *MIDDLE, 1.0])
def test_weights_are_the_inputs_and_a_separate_copy(name: str, strength: float) -> None:
    real = small(name)
    before = {k: v.clone() for k, v in real.state_dict().items()}
    path = wn(real, strength)
    st = path.state_dict()
    assert st.keys() == before.keys() and all(torch.equal(st[k], before[k]) for k in before)
    assert type(path) is type(real) and path.num_features == real.num_features and path.num_classes == 3
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(real.parameters(), path.parameters(), strict=True))
    with torch.no_grad():
        next(path.parameters()).add_(1.0)
    assert all(torch.equal(v, before[k]) for k, v in real.state_dict().items())
    assert path.training == real.training and all(m.training == real.training for m in path.modules())


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("strength", MIDDLE)
def test_middle_is_nonlinear_strictly_between_and_continuous(name: str, strength: float) -> None:
    real = small(name).double().eval()
    x = inputs(name)
    with torch.no_grad():
        f0, f1, fs = linear_twin(real)(x), real(x), wn(real, strength)(x)
        near0, near1 = wn(real, 1e-9)(x), wn(real, 1 - 1e-9)(x)
    assert torch.isfinite(fs).all()
    scale = (f1 - f0).abs().max().item()
    assert scale > 1e-3  # real and twin differ, so "between" has content
    assert (fs - f0).abs().max() > 1e-3 * scale and (fs - f1).abs().max() > 1e-3 * scale
    assert (near0 - f0).abs().max() < 1e-6 * scale and (near1 - f1).abs().max() < 1e-6 * scale
    path = wn(real, strength)
    assert not is_layerwise_linear(path) and nonlinear_modules(path)
    twin_again = linear_twin(path)  # the twin of any point of the path is the twin (up to rounding)
    assert is_layerwise_linear(twin_again)
    with torch.no_grad():
        torch.testing.assert_close(twin_again(x), f0, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list_models())
def test_every_path_module_lies_between_its_twin_and_real_module(name: str) -> None:
    """Elementwise, at every replaced module, f_s(x) is between the twin's value and the real one, and moves."""
    real = small(name).double().eval()
    twin = linear_twin(real)
    path = wn(real, 0.5)
    reals, twins = dict(real.named_modules()), dict(twin.named_modules())
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(key: str):  # noqa: ANN202
        def hook(_m: nn.Module, args: tuple, out: torch.Tensor) -> None:
            seen[key] = (args[0], out)

        return hook

    replaced = [(k, m) for k, m in path.named_modules() if k in reals and type(m) is not type(reals[k])]
    hooks = [mod.register_forward_hook(record(key)) for key, mod in replaced]
    with torch.no_grad():
        path(inputs(name))
        assert hooks and len(seen) == len(hooks)  # every replaced module ran
        for key, (x, y) in seen.items():
            lo_hi = torch.stack([twins[key](x), reals[key](x)])
            lo, hi = lo_hi.min(0).values, lo_hi.max(0).values
            ok = torch.isfinite(lo) & torch.isfinite(hi)
            tol = 1e-12 * (1 + hi.abs())
            assert ((y >= lo - tol) & (y <= hi + tol))[ok].all(), key
            gap = (hi - lo)[ok]
            assert ((y - lo)[ok][gap > 1e-6] > 0).all() and ((hi - y)[ok][gap > 1e-6] > 0).all(), key
    for h in hooks:
        h.remove()


def _hand_mlp(net: nn.Module, x: torch.Tensor, act) -> torch.Tensor:  # noqa: ANN001
    h = x.flatten(1)
    layers = net.linear_layers()
    for layer in layers[:-1]:
        h = act(h @ layer.weight.T + layer.bias)
    return (h @ layers[-1].weight.T + layers[-1].bias) * net.output_scale


@pytest.mark.parametrize(
    ("activation", "act"),
    [
        ("relu", lambda s: lambda z: torch.where(z > 0, z, (1 - s) * z)),
        ("tanh", lambda s: lambda z: torch.tanh(s * z) / s),
        ("gelu", lambda s: lambda z: (1 - s) * z + s * 0.5 * z * (1 + torch.erf(z / math.sqrt(2)))),
    ],
)
@pytest.mark.parametrize("strength", MIDDLE)
def test_mlp_at_strength_s_is_the_network_computed_by_hand(activation: str, act, strength: float) -> None:  # noqa: ANN001
    """ReLU: the leaky-ReLU net of slope 1 - s; tanh: tanh(s z)/s; GELU: (1 - s) z + s gelu(z); float64."""
    real = small("mlp", activation=activation, output_scale=2.0).double()
    x = inputs("mlp")
    with torch.no_grad():
        torch.testing.assert_close(wn(real, strength)(x), _hand_mlp(real, x, act(strength)), rtol=0, atol=1e-12)


@pytest.mark.parametrize("strength", MIDDLE)
def test_transformer_at_strength_s_is_the_network_computed_by_hand(strength: float) -> None:
    """Attention pattern mask * ((1 - s) S + s softmax(S)), S = Q K^T / sqrt(d_head); MLP leaky ReLU of slope 1 - s."""
    net = small("transformer").double()
    tok = inputs("transformer")
    s, a = strength, net.attn
    r = net.embed.weight[tok] + net.pos[: tok.shape[1]]
    n, t, d = r.shape
    heads = [(r @ lin.weight.T).view(n, t, a.n_heads, a.d_head).transpose(1, 2) for lin in (a.q, a.k, a.v)]
    scores = heads[0] @ heads[1].transpose(-2, -1) / math.sqrt(a.d_head)
    mask = torch.ones(t, t, dtype=torch.bool).tril()
    soft = torch.softmax(scores.masked_fill(~mask, float("-inf")), -1)
    pattern = torch.where(mask, (1 - s) * scores + s * soft, 0.0)
    r = r + ((pattern @ heads[2]).transpose(1, 2).reshape(n, t, d)) @ a.o.weight.T
    z = r @ net.mlp_in.weight.T
    r = r + torch.where(z > 0, z, (1 - s) * z) @ net.mlp_out.weight.T
    expected = r[:, -1] @ net.unembed.weight.T * net.output_scale
    with torch.no_grad():
        torch.testing.assert_close(wn(net, s)(tok), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_resnet_at_strength_s_is_the_network_computed_by_hand(norm: str) -> None:
    """Every ReLU of the stem and the blocks becomes a leaky ReLU of slope 1 - s (BatchNorm in eval mode)."""
    s = 0.4
    net = small("resnet_small", norm=norm).double().eval()
    x = inputs("resnet_small")

    def bn(mod: nn.Module, h: torch.Tensor) -> torch.Tensor:
        if isinstance(mod, nn.Identity):
            return h
        return F.batch_norm(h, mod.running_mean, mod.running_var, mod.weight, mod.bias, False, 0.0, mod.eps)

    def leaky(h: torch.Tensor) -> torch.Tensor:
        return torch.where(h > 0, h, (1 - s) * h)

    h = leaky(bn(net.stem[1], F.conv2d(x, net.stem[0].weight, padding=1)))
    for stage in net.stages:
        for blk in stage:
            c1, c2 = blk.conv1, blk.conv2
            out = leaky(bn(blk.norm1, F.conv2d(h, c1.weight, stride=c1.stride, padding=1)))
            out = bn(blk.norm2, F.conv2d(out, c2.weight, padding=1))
            sc = h
            if isinstance(blk.shortcut, nn.Sequential):
                sc = bn(blk.shortcut[1], F.conv2d(h, blk.shortcut[0].weight, stride=blk.shortcut[0].stride))
            h = leaky(out + sc)
    expected = (h.mean((2, 3)) @ net.fc.weight.T + net.fc.bias) * net.output_scale
    with torch.no_grad():
        torch.testing.assert_close(wn(net, s)(x), expected, rtol=0, atol=1e-12)


ELEMENTWISE = [nn.ReLU(), nn.LeakyReLU(0.1), nn.Tanh(), nn.GELU(), nn.GELU("tanh"), nn.SiLU(), nn.Sigmoid(), nn.ELU()]
ELEMENTWISE += [nn.Softplus(), nn.ReLU6(), nn.Hardtanh(), nn.Mish(), nn.Softsign(), nn.Softmax(-1)]


@pytest.mark.parametrize("act", ELEMENTWISE, ids=lambda m: type(m).__name__)
def test_one_dimensional_path_is_monotone_from_identity_to_activation(act: nn.Module) -> None:
    """On a 1-D grid, f_s(x) moves monotonically in s from x (s = 0) to f(x) (s = 1), exact at both ends."""
    x = torch.linspace(-6, 6, 241, dtype=torch.float64)
    grid = np.linspace(0, 1, 41)
    ys = torch.stack([wn(act, float(s))(x) for s in grid])  # (S, X)
    assert torch.equal(ys[0], x) and torch.equal(ys[-1], act(x))
    direction = torch.sign(act(x) - x)
    steps = (ys[1:] - ys[:-1]) * direction
    assert (steps >= -1e-14).all()
    assert ((ys - x).abs()[1:] - (ys - x).abs()[:-1] >= -1e-14).all()  # |f_s - x| grows
    assert ((ys - act(x)).abs()[:-1] - (ys - act(x)).abs()[1:] >= -1e-14).all()  # |f_s - f| shrinks
    moving = (act(x) - x).abs() > 1e-6
    assert (ys[20] - x)[moving].abs().min() > 0 and (ys[20] - act(x))[moving].abs().min() > 0


def test_one_dimensional_relu_network_output_is_monotone_in_strength() -> None:
    g = torch.Generator().manual_seed(2)
    net = create_model("mlp", input_shape=(1,), out_dim=1, generator=g, depth=2, width=1).double()
    x = torch.linspace(-3, 3, 61, dtype=torch.float64).unsqueeze(1)
    with torch.no_grad():
        outs = torch.stack([wn(net, float(s))(x).squeeze(1) for s in np.linspace(0, 1, 21)])
    d = outs[1:] - outs[:-1]
    assert ((d >= -1e-14).all(0) | (d <= 1e-14).all(0)).all()  # per input, one direction all along the path
    assert (outs[0] - outs[-1]).abs().max() > 1e-3


@pytest.mark.parametrize("bad", [-0.1, 1.0 + 1e-12, 2, float("nan"), float("inf"), -math.inf, True, "0.5", None])
def test_bad_strength_raises_one_line_naming_the_range(bad: object) -> None:
    with pytest.raises(ValueError, match=r"finite number in \[0, 1\]") as err:
        wn(small("mlp"), bad)  # type: ignore[arg-type]
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        ConvexActivation(nn.GELU(), bad)  # type: ignore[arg-type]


def test_numpy_and_tensor_strengths_are_accepted_as_floats() -> None:
    for s in (np.float32(0.5), torch.tensor(0.5)):
        assert wn(nn.Tanh(), s).strength == 0.5 and type(wn(nn.Tanh(), s).strength) is float


def test_repr_is_readable() -> None:
    net = nn.Sequential(nn.ReLU(), nn.Tanh(), nn.GELU(), nn.MaxPool2d(2), nn.Softmax(-1))
    text = repr(wn(net, 0.25))
    for piece in ("LeakyReLU(negative_slope=0.75)", "ScaledTanh(\n    strength=0.25", "(fn): GELU(", "MixedPool("):
        assert piece in text, text
    assert "(fn): Softmax(dim=-1)" in text and "(max): MaxPool2d(" in text and "(avg): AvgPool2d(" in text


def test_shared_instance_stays_shared_and_input_is_untouched() -> None:
    act = nn.GELU()
    net = nn.Sequential(nn.Linear(2, 2), act, nn.Linear(2, 2), act)
    path = wn(net, 0.5)
    assert isinstance(path[1], ConvexActivation) and path[1] is path[3] and isinstance(net[1], nn.GELU)
    assert isinstance(wn(nn.Tanh(), 0.5), ScaledTanh) and isinstance(wn(nn.Tanh(), 0.0), nn.Identity)


def test_inplace_activation_does_not_clobber_its_input() -> None:
    x = torch.linspace(-8, 8, 17, dtype=torch.float64)
    for inner in (nn.ReLU6(inplace=True), nn.Hardtanh(inplace=True)):
        expected = 0.5 * x + 0.5 * inner.__class__()(x)
        torch.testing.assert_close(wn(inner, 0.5)(x.clone()), expected, rtol=0, atol=0)
    y = x.clone()
    torch.testing.assert_close(wn(nn.ReLU(inplace=True), 0.5)(y), torch.where(x > 0, x, 0.5 * x))


@pytest.mark.parametrize(
    ("pool", "avg"),
    [
        (nn.MaxPool2d(2, 2), lambda h: F.avg_pool2d(h, 2, 2, count_include_pad=False)),
        (nn.MaxPool2d(3, 2, 1, ceil_mode=True), lambda h: F.avg_pool2d(h, 3, 2, 1, True, count_include_pad=False)),
        (nn.AdaptiveMaxPool2d(2), lambda h: F.adaptive_avg_pool2d(h, 2)),
        (nn.MaxPool1d(2), lambda h: F.avg_pool1d(h, 2)),
    ],
)
def test_max_pool_becomes_the_mix_of_average_and_max_pool(pool: nn.Module, avg) -> None:  # noqa: ANN001
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    if isinstance(pool, nn.MaxPool1d):
        x = x[:, :, 0]
    mixed = wn(pool, 0.3)
    assert isinstance(mixed, MixedPool)
    torch.testing.assert_close(mixed(x), 0.7 * avg(x) + 0.3 * pool(x), rtol=0, atol=1e-14)
    assert torch.equal(wn(pool, 0.0)(x), linear_twin(pool)(x)) and torch.equal(wn(pool, 1.0)(x), pool(x))


@pytest.mark.parametrize(
    ("module", "needle"),
    [
        (nn.LayerNorm(4), "1 (LayerNorm) is nonlinear and has no linear stand-in"),
        (nn.MaxPool2d(2, dilation=2), "1 (MaxPool2d) uses dilation or return_indices"),
        (nn.MultiheadAttention(4, 1), "1 (MultiheadAttention)"),
    ],
)
@pytest.mark.parametrize("strength", [0.0, 0.5])
def test_what_the_twin_refuses_the_path_refuses_below_one(module: nn.Module, needle: str, strength: float) -> None:
    net = nn.Sequential(nn.Linear(4, 4), module)
    with pytest.raises(ValueError, match=f"^with_nonlinearity: .*{re.escape(needle)}") as err:
        wn(net, strength)
    assert "\n" not in str(err.value)
    assert isinstance(wn(net, 1.0)[1], type(module))  # strength 1 is the real net as it is


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("strength", [0.0, 1.0])
def test_sgd_from_an_endpoint_trains_exactly_like_the_twin_or_the_real_net(name: str, strength: float) -> None:
    real = small(name)
    ref = linear_twin(real) if strength == 0.0 else copy.deepcopy(real)
    path = wn(real, strength)
    x, y = inputs(name, n=8, dtype=torch.float32, seed=3), torch.randn(8, 3, generator=torch.Generator().manual_seed(4))
    for net in (ref, path):
        torch.manual_seed(0)
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        for _ in range(3):
            opt.zero_grad()
            (0.5 * (net(x) - y).pow(2).sum(-1).mean()).backward()
            opt.step()
    a, b = ref.state_dict(), path.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a[next(iter(a))], real.state_dict()[next(iter(a))])  # it did train


@pytest.mark.parametrize("name", list_models())
def test_sgd_in_the_middle_trains(name: str) -> None:
    net = wn(small(name), 0.5)
    x, y = inputs(name, n=8, dtype=torch.float32, seed=3), torch.randn(8, 3, generator=torch.Generator().manual_seed(4))
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = 0.5 * (net(x) - y).pow(2).sum(-1).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]


@pytest.mark.parametrize("name", list_models())
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")  # torch's own jvp decomps
def test_torch_func_vmap_and_jvp_through_the_path(name: str) -> None:
    """vmap(functional_call) over K stacked members equals the members one by one; jvp agrees with vjp."""
    from torch.func import functional_call, jvp, stack_module_state, vjp, vmap

    members = [wn(small(name, seed=k).double().eval(), 0.5) for k in range(3)]
    base = copy.deepcopy(members[0])
    params, buffers = stack_module_state(members)
    x = inputs(name, n=5)

    def one(p: dict, b: dict, xb: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (p, b), (xb,))

    with torch.no_grad():
        batched = vmap(one, in_dims=(0, 0, None))(params, buffers, x)
        for k, m in enumerate(members):
            torch.testing.assert_close(batched[k], m(x), rtol=1e-12, atol=1e-12)

    net = members[0]
    p0 = {k: v.detach() for k, v in net.named_parameters()}
    g = torch.Generator().manual_seed(5)
    tangent = {k: torch.randn(v.shape, dtype=v.dtype, generator=g) for k, v in p0.items()}

    def f(p: dict) -> torch.Tensor:
        return functional_call(net, p, (x,))

    out, jt = jvp(f, (p0,), (tangent,))
    u = torch.randn(out.shape, dtype=out.dtype, generator=g)
    (jtu,) = vjp(f, p0)[1](u)
    assert torch.isfinite(jt).all()
    torch.testing.assert_close((u * jt).sum(), sum((jtu[k] * tangent[k]).sum() for k in p0), rtol=1e-10, atol=1e-12)


def test_strength_is_a_plain_float_attribute_not_a_parameter_or_buffer() -> None:
    """A structural key over module attributes (as the vectorised trainer builds) tells strengths apart."""
    path = wn(small("transformer"), 0.5)
    assert not any("strength" in k for k in path.state_dict())
    assert path.attn.softmax.strength == 0.5 and path.act.negative_slope == 0.5

    def key(m: nn.Module) -> list:
        return [(n, type(mod).__qualname__, sorted((k, repr(v)) for k, v in vars(mod).items() if isinstance(v, float)))
                for n, mod in m.named_modules()]  # fmt: skip

    assert key(wn(small("transformer"), 0.5)) == key(path) != key(wn(small("transformer"), 0.6))
