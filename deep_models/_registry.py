"""Model registry: ``register_model`` / ``create_model`` / ``list_models``.

A tiny version of timm's registry (huggingface/pytorch-image-models: timm/models/_registry.py and
_factory.py), as in docs/design.md "Registry". Entry points are keyed on their function name, take the
keyword-only arguments ``input_shape``, ``out_dim`` and ``generator`` plus their own knobs, and
``create_model`` drops ``None`` kwargs so that a YAML ``null`` keeps the entry point's default.

Unlike timm, a wrong name or a wrong kwarg is a one-line ``ValueError`` that lists the valid
choices and the closest matches, so the config validator can pass it on as is.

Example:
    >>> import torch
    >>> from deep_models import create_model
    >>> g = torch.Generator().manual_seed(0)
    >>> net = create_model("mlp", input_shape=(1, 28, 28), out_dim=10, generator=g, depth=2, width=64)
    >>> net(torch.zeros(5, 1, 28, 28)).shape
    torch.Size([5, 10])
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["create_model", "list_models", "register_model"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}
# Arguments every entry point takes from the task, not from conf/model/<name>.yaml.
_COMMON = ("input_shape", "out_dim", "generator")


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model entry point under its function name.

    Args:
        fn: Entry point ``fn(*, input_shape, out_dim, generator=None, **knobs) -> nn.Module``.

    Returns:
        ``fn`` unchanged, so this works as a decorator.

    Raises:
        ValueError: If the name is taken or ``fn`` lacks one of the common keyword arguments.
    """
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is registered twice")
    params = inspect.signature(fn).parameters
    missing = [a for a in _COMMON if a not in params]
    if missing:
        raise ValueError(f"model entry point {name!r} must take keyword arguments {', '.join(missing)}")
    _MODELS[name] = fn
    return fn


def list_models() -> list[str]:
    """Names of all registered models, sorted.

    Returns:
        Sorted list of registry names (e.g. ``["mlp", "resnet18_cifar", "resnet_small", "transformer"]``).
    """
    return sorted(_MODELS)


def model_kwargs(name: str) -> dict[str, Any]:
    """The model-specific keyword arguments of an entry point and their defaults.

    Args:
        name: A registered model name.

    Returns:
        Mapping kwarg -> default; required kwargs map to ``inspect.Parameter.empty``. The common
        arguments ``input_shape``, ``out_dim`` and ``generator`` are left out.

    Raises:
        ValueError: If ``name`` is not registered.
    """
    fn = _lookup(name)
    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if k not in _COMMON}


def create_model(
    name: str,
    *,
    input_shape: Sequence[int],
    out_dim: int,
    generator: torch.Generator | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model.

    Every init draw uses ``generator``, so the same generator seed gives identical weights
    (docs/design.md "Randomness"). When a generator is given, PyTorch's global RNG is restored after
    construction, so building a model never shifts any other random stream.

    Args:
        name: Registry name, e.g. ``"mlp"``.
        input_shape: Shape of one input sample, e.g. ``(1, 28, 28)`` for images or ``(3,)`` for
            3 tokens.
        out_dim: Number of outputs (classes or regression targets); the model's ``num_classes``.
        generator: CPU ``torch.Generator`` for all init draws; ``None`` uses the global RNG.
        **kwargs: The model's own knobs (conf/model/<name>.yaml). ``None`` values are dropped
            so the entry point's defaults apply (as timm's ``create_model`` does).

    Returns:
        The model on CPU in the default dtype; ``model(x)`` has shape ``(N, out_dim)``.

    Raises:
        ValueError: Unknown name, unknown or missing kwarg (message lists valid choices), or a bad
            value (message names the kwarg).
    """
    fn = _lookup(name)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    known = model_kwargs(name)
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        hints = [m for u in unknown for m in difflib.get_close_matches(u, known, n=2)]
        hint = f"; did you mean: {', '.join(dict.fromkeys(hints))}" if hints else ""
        raise ValueError(
            f"unknown kwarg(s) {', '.join(unknown)} for model {name!r}{hint}; known: {', '.join(sorted(known))}"
        )
    missing = [k for k, d in known.items() if d is inspect.Parameter.empty and k not in kwargs]
    if missing:
        raise ValueError(f"model {name!r} needs kwarg(s) {', '.join(missing)} (set model.{missing[0]}=...)")
    for k, v in kwargs.items():  # a knob whose default is a whole number takes whole numbers only
        d = known.get(k)
        if isinstance(d, int) and not isinstance(d, bool) and not _whole(v):
            raise ValueError(f"{k}={v!r} must be a whole number (default {d})")
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"input_shape={tuple(input_shape)} must be a non-empty tuple of positive ints")
    if int(out_dim) < 1:
        raise ValueError(f"out_dim={out_dim} must be >= 1")
    # Module constructors draw PyTorch's default init from the global RNG before our generator
    # re-initialises every tensor; fork_rng puts the global state back so it stays untouched.
    ctx = torch.random.fork_rng(devices=[]) if generator is not None else contextlib.nullcontext()
    with ctx:
        return fn(input_shape=shape, out_dim=int(out_dim), generator=generator, **kwargs)


def _lookup(name: str) -> Callable[..., nn.Module]:
    if name in _MODELS:
        return _MODELS[name]
    close = difflib.get_close_matches(str(name), _MODELS, n=3)
    hint = f"; did you mean: {', '.join(close)}" if close else ""
    raise ValueError(f"unknown model {name!r}{hint}; known: {', '.join(sorted(_MODELS))}")


def _whole(v: Any) -> bool:
    """A finite integer-valued number (bools excluded)."""
    if isinstance(v, bool):
        return False
    try:
        f = float(v)
    except (TypeError, ValueError):
        return False
    return math.isfinite(f) and f == int(f)
