"""Registry smoke tests over every registered model, and the conf/model/*.yaml <-> registry match."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from deep_models import create_model, linear_twin, list_models, model_kwargs, register_model

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
OUT_DIM = 5
# One small input per model: (input_shape, "image" or "tokens"). A new model must add a row here.
INPUTS = {
    "mlp": ((1, 6, 6), "image"),
    "resnet18_cifar": ((3, 8, 8), "image"),
    "resnet_small": ((3, 8, 8), "image"),
    "transformer": ((3,), "tokens"),
}


ENGINE_KEYS = {"name", "nonlinearity_strength"}  # read by the engine (registry name, the twin-to-real homotopy)


def yaml_kwargs(name: str) -> dict:
    """The model's own knobs in conf/model/<name>.yaml (the constructor's kwargs)."""
    cfg = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    return {k: v for k, v in cfg.items() if k not in ENGINE_KEYS}


def build(name: str, seed: int = 0, **over) -> nn.Module:
    shape, _ = INPUTS[name]
    kw = yaml_kwargs(name) | over
    return create_model(name, input_shape=shape, out_dim=OUT_DIM, generator=torch.Generator().manual_seed(seed), **kw)


def batch(name: str, n: int = 4, seed: int = 1) -> torch.Tensor:
    shape, kind = INPUTS[name]
    g = torch.Generator().manual_seed(seed)
    if kind == "tokens":
        return torch.randint(0, OUT_DIM + 1, (n, *shape), generator=g)
    return torch.randn(n, *shape, generator=g)


def test_inputs_table_covers_registry() -> None:
    assert sorted(INPUTS) == list_models()


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("role", ["real", "twin"])
def test_smoke_shapes_grads_finite(name: str, role: str) -> None:
    model = build(name)
    if role == "twin":
        model = linear_twin(model)
    x = batch(name)
    out = model(x)
    feats = model.forward_features(x)
    head = model.get_classifier()
    assert out.shape == (4, OUT_DIM) and feats.shape == (4, model.num_features)
    assert isinstance(head, nn.Linear) and head.in_features == model.num_features
    assert head.out_features == model.num_classes == OUT_DIM
    torch.testing.assert_close(out, head(feats) * model.output_scale)
    assert torch.isfinite(out).all()
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
    (out * w).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} gets no gradient"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"{pname} has a zero or non-finite gradient"


@pytest.mark.parametrize("name", list_models())
def test_same_seed_same_init_other_seed_other_init(name: str) -> None:
    a, b, c = build(name, seed=7), build(name, seed=7), build(name, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # every random tensor (floating point, not a constant like BatchNorm's ones/zeros) changes with the seed
    drawn = [k for k, v in sa.items() if v.is_floating_point() and v.numel() > 1 and v.std() > 0]
    assert drawn and all(not torch.equal(sa[k], sc[k]) for k in drawn)


@pytest.mark.parametrize("name", list_models())
def test_create_model_leaves_global_rng_alone(name: str) -> None:
    before = torch.random.get_rng_state()
    build(name)
    assert torch.equal(before, torch.random.get_rng_state())


def test_yaml_names_match_registry() -> None:
    names = sorted(yaml.safe_load(p.read_text())["name"] for p in CONF.glob("*.yaml"))
    assert names == list_models()
    assert sorted(p.stem for p in CONF.glob("*.yaml")) == list_models()


@pytest.mark.parametrize("name", list_models())
def test_yaml_lists_every_kwarg_with_a_comment(name: str) -> None:
    assert set(yaml_kwargs(name)) == set(model_kwargs(name))
    lines = [ln for ln in (CONF / f"{name}.yaml").read_text().splitlines() if ln and not ln.startswith((" ", "#"))]
    uncommented = [ln for ln in lines if "#" not in ln]
    assert not uncommented, f"keys without a comment saying why: {uncommented}"


def test_yaml_loads_with_omegaconf() -> None:
    from omegaconf import OmegaConf

    for p in CONF.glob("*.yaml"):
        cfg = OmegaConf.to_container(OmegaConf.load(p))
        assert cfg["name"] == p.stem


BAD = [
    (dict(name="mpl"), "unknown model 'mpl'; did you mean: mlp; known: mlp, resnet18_cifar"),
    (dict(name="resnet18"), "did you mean: resnet18_cifar"),
    (dict(name="mlp", width=4, depht=2), "unknown kwarg(s) depht for model 'mlp'; did you mean: depth"),
    (dict(name="mlp", width=4), "model 'mlp' needs kwarg(s) depth"),
    (dict(name="mlp", width=4, depth=2, out_dim=0), "out_dim=0 must be >= 1"),
    (dict(name="mlp", width=4, depth=2, input_shape=()), "input_shape=() must be a non-empty tuple"),
]


@pytest.mark.parametrize(("kw", "needle"), BAD, ids=[str(k) for k, _ in BAD])
def test_bad_input_one_line_value_error(kw: dict, needle: str) -> None:
    kw = {"input_shape": (4,), "out_dim": 2} | kw
    with pytest.raises(ValueError) as err:
        create_model(kw.pop("name"), **kw)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_none_kwargs_keep_defaults() -> None:
    net = create_model("mlp", input_shape=(4,), out_dim=2, depth=2, width=3, activation=None, output_scale=None)
    assert isinstance(net.features[2], nn.ReLU) and net.output_scale == 1.0


def test_register_twice_and_bad_signature_raise() -> None:
    def mlp(*, input_shape, out_dim, generator=None):  # noqa: ANN001, ANN202
        return nn.Linear(1, 1)

    with pytest.raises(ValueError, match="registered twice"):
        register_model(mlp)

    def odd(width):  # noqa: ANN001, ANN202
        return nn.Linear(1, 1)

    with pytest.raises(ValueError, match="must take keyword arguments input_shape, out_dim, generator"):
        register_model(odd)
    assert "odd" not in list_models()


def test_model_kwargs_reports_required_and_defaults() -> None:
    kw = model_kwargs("mlp")
    assert kw["width"] is inspect.Parameter.empty and kw["init"] == "fan_in" and "generator" not in kw


@pytest.mark.parametrize("name", list_models())
def test_vmap_over_stacked_members_matches_each_model(name: str) -> None:
    """The vectorised trainer runs K members as one batched model (docs/design.md "Scale")."""
    from torch.func import functional_call, stack_module_state, vmap

    members = [build(name, seed=s).eval() for s in (0, 1)]
    members.append(linear_twin(members[0]))
    params, buffers = stack_module_state(members[:2])
    x = batch(name)
    out = vmap(lambda p, b: functional_call(members[0], (p, b), (x,)))(params, buffers)
    torch.testing.assert_close(out[1], members[1](x))
    twin_params, twin_buffers = stack_module_state([members[2]])
    twin_out = vmap(lambda p, b: functional_call(members[2], (p, b), (x,)))(twin_params, twin_buffers)
    torch.testing.assert_close(twin_out[0], members[2](x))
