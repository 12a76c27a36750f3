"""linear_twin / is_layerwise_linear: exact linearity, same weights, separate copy (docs/theory.md 1.4, 3.2)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deep_models import create_model, is_layerwise_linear, linear_twin, list_models, nonlinear_modules

SMALL = {  # one small instance of every registered model: (input_shape, kwargs)
    "mlp": ((1, 4, 4), dict(depth=3, width=16)),
    "resnet18_cifar": ((3, 8, 8), {}),
    "resnet_small": ((3, 8, 8), dict(width=4, blocks=[1, 1])),
    "transformer": ((3,), dict(d_model=16, n_heads=2, d_mlp=32)),
}


def small(name: str, seed: int = 0) -> nn.Module:
    shape, kw = SMALL[name]
    return create_model(name, input_shape=shape, out_dim=3, generator=torch.Generator().manual_seed(seed), **kw)


def relu_mlp(bias: bool, activation: str = "relu", d: int = 6, depth: int = 4) -> nn.Module:
    g = torch.Generator().manual_seed(3)
    net = create_model(
        "mlp", input_shape=(d,), out_dim=2, generator=g, depth=depth, width=7, bias=bias, activation=activation
    )
    return net.double()


def test_small_table_covers_registry() -> None:
    assert sorted(SMALL) == list_models()


@pytest.mark.parametrize("name", list_models())
def test_twin_starts_equal_and_is_a_separate_copy(name: str) -> None:
    real = small(name)
    twin = linear_twin(real)
    sr = {k: v.clone() for k, v in real.state_dict().items()}  # clones: state_dict shares storage
    st = twin.state_dict()
    assert sr.keys() == st.keys() and all(torch.equal(sr[k], st[k]) for k in sr)
    assert type(twin) is type(real) and twin.num_features == real.num_features and twin.num_classes == 3
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(real.parameters(), twin.parameters(), strict=True))
    with torch.no_grad():
        next(twin.parameters()).add_(1.0)
    assert all(torch.equal(v, sr[k]) for k, v in real.state_dict().items())  # the real net did not move
    with torch.no_grad():
        real.get_classifier().weight.mul_(2.0)
    assert not torch.equal(twin.get_classifier().weight, real.get_classifier().weight)


@pytest.mark.parametrize("name", list_models())
def test_real_is_nonlinear_twin_is_layerwise_linear(name: str) -> None:
    real = small(name)
    assert not is_layerwise_linear(real) and is_layerwise_linear(linear_twin(real))


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_twin_without_bias_is_the_weight_product(activation: str) -> None:
    real = relu_mlp(bias=False, activation=activation)
    twin = linear_twin(real)
    x = torch.randn(9, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    prod = torch.eye(6, dtype=torch.float64)
    for layer in real.linear_layers():  # W_L ... W_1, independent of the module code path
        prod = layer.weight @ prod
    torch.testing.assert_close(twin(x), x @ prod.T, rtol=0, atol=1e-12)
    assert (real(x) - x @ prod.T).abs().max() > 1e-3  # the real net is not that map


def test_twin_with_bias_is_the_affine_composition() -> None:
    real = relu_mlp(bias=True)
    twin = linear_twin(real)
    x = torch.randn(9, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    h = x
    for layer in real.linear_layers():
        h = h @ layer.weight.T + layer.bias
    torch.testing.assert_close(twin(x), h, rtol=0, atol=1e-12)
    assert (real(x) - h).abs().max() > 1e-3


def affine_defect(f: nn.Module, x: torch.Tensor, y: torch.Tensor, a: float = 0.3) -> float:
    """max |f(a x + (1-a) y) - a f(x) - (1-a) f(y)|, zero for any affine f."""
    return (f(a * x + (1 - a) * y) - a * f(x) - (1 - a) * f(y)).abs().max().item()


def images(seed: int) -> torch.Tensor:
    return torch.randn(4, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def test_resnet_twin_without_norm_is_affine() -> None:
    g = torch.Generator().manual_seed(0)
    real = create_model(
        "resnet_small", input_shape=(3, 8, 8), out_dim=3, generator=g, width=4, blocks=[1, 1], norm="none"
    )
    real = real.double()
    x, y = images(1), images(2)
    assert affine_defect(linear_twin(real), x, y) < 1e-12 < 1e-4 < affine_defect(real, x, y)


def test_batchnorm_twin_is_affine_in_eval_but_not_in_train() -> None:
    twin = linear_twin(small("resnet_small")).double()
    x, y = images(1), images(2)
    assert is_layerwise_linear(twin.eval(), strict=True) and affine_defect(twin, x, y) < 1e-12
    assert not is_layerwise_linear(twin.train(), strict=True) and is_layerwise_linear(twin)
    assert affine_defect(twin, x, y) > 1e-4  # batch statistics: the twin's one remaining nonlinearity


def test_shared_activation_instance_is_replaced_everywhere() -> None:
    act = nn.ReLU()
    net = nn.Sequential(nn.Linear(2, 2), act, nn.Linear(2, 2), act)
    twin = linear_twin(net)
    assert isinstance(twin[1], nn.Identity) and twin[1] is twin[3] and is_layerwise_linear(twin)
    assert isinstance(net[1], nn.ReLU)  # the original is untouched


def test_bare_activation_becomes_identity() -> None:
    assert isinstance(linear_twin(nn.GELU()), nn.Identity)


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "ceil"), [(2, 2, 0, False), (3, 2, 1, True), ((3, 2), 1, (1, 0), False)]
)
def test_max_pool_becomes_average_pool_of_same_geometry(kernel, stride, padding, ceil) -> None:  # noqa: ANN001
    net = nn.Sequential(
        nn.Conv2d(1, 2, 1), nn.MaxPool2d(kernel, stride, padding, ceil_mode=ceil), nn.AdaptiveMaxPool2d(2)
    )
    twin = linear_twin(net)
    x = torch.randn(2, 1, 9, 9, generator=torch.Generator().manual_seed(0))
    h = net[0](x)
    pooled = F.avg_pool2d(h, kernel, stride, padding, ceil_mode=ceil, count_include_pad=False)
    assert net[1](h).shape == twin[1](h).shape
    torch.testing.assert_close(twin[1](h), pooled)
    torch.testing.assert_close(twin[2](pooled), F.adaptive_avg_pool2d(pooled, 2))
    assert is_layerwise_linear(twin)


@pytest.mark.parametrize(
    ("module", "needle"),
    [
        (nn.LayerNorm(4), "1 (LayerNorm) is nonlinear and has no linear stand-in"),
        (nn.MaxPool2d(2, dilation=2), "1 (MaxPool2d) uses dilation or return_indices"),
        (nn.MultiheadAttention(4, 1), "1 (MultiheadAttention)"),
    ],
)
def test_unsupported_nonlinearity_raises(module: nn.Module, needle: str) -> None:
    with pytest.raises(ValueError, match="linear_twin: ") as err:
        linear_twin(nn.Sequential(nn.Linear(4, 4), module))
    assert needle in str(err.value)


def test_nonlinear_modules_names_them_and_train_mode_is_kept() -> None:
    net = nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Dropout(0.5), nn.BatchNorm1d(2), nn.Softmax(-1)).eval()
    assert nonlinear_modules(net) == ["1 (Tanh)", "4 (Softmax)"]
    twin = linear_twin(net)
    assert not twin.training and all(not m.training for m in twin.modules())
    assert isinstance(twin[2], nn.Dropout) and isinstance(twin[3], nn.BatchNorm1d)  # kept, linear given mask/stats


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("role", ["real", "twin"])
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")  # torch's own jvp decomps
def test_forward_and_reverse_mode_derivatives_agree(name: str, role: str) -> None:
    """torch.func.jvp (NTKs) is finite and agrees with reverse mode, also through the twin's masked attention.

    u^T (J t) from forward mode must equal (J^T u)^T t from reverse mode; the twin, a polynomial in the
    parameters, is also checked against a central finite difference (the real nets have ReLU kinks).
    """
    from torch.func import functional_call, jvp, vjp

    net = small(name).double().eval()
    net = linear_twin(net) if role == "twin" else net
    shape, _ = SMALL[name]
    g = torch.Generator().manual_seed(5)
    x = (
        torch.randint(0, 4, (3, *shape), generator=g)
        if name == "transformer"
        else torch.randn(3, *shape, generator=g, dtype=torch.float64)
    )
    params = {k: v.detach() for k, v in net.named_parameters()}
    tangent = {k: torch.randn(v.shape, dtype=v.dtype, generator=g) for k, v in params.items()}

    def f(p: dict) -> torch.Tensor:
        return functional_call(net, p, (x,))

    out, jt = jvp(f, (params,), (tangent,))
    u = torch.randn(out.shape, dtype=out.dtype, generator=g)
    (jtu,) = vjp(f, params)[1](u)
    assert torch.isfinite(jt).all()
    reverse = sum((jtu[k] * tangent[k]).sum() for k in params)
    torch.testing.assert_close((u * jt).sum(), reverse, rtol=1e-10, atol=1e-12)
    if role == "twin":
        eps = 1e-6
        plus = f({k: v + eps * tangent[k] for k, v in params.items()})
        minus = f({k: v - eps * tangent[k] for k, v in params.items()})
        torch.testing.assert_close(jt, (plus - minus) / (2 * eps), rtol=1e-5, atol=1e-7)
