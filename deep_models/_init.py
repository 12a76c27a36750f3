"""Seeded weight-initialisation helpers shared by the models.

Every draw takes an explicit ``torch.Generator`` (docs/design.md "Randomness"). Gaussian draws are a
standard normal times the std, so the same seed gives the same underlying z for any scale, and a
rescaled init differs from the unscaled one by that factor alone (up to float rounding).
"""

from __future__ import annotations

import math

import torch
from torch import nn


@torch.no_grad()
def normal_(t: torch.Tensor, std: float, generator: torch.Generator | None) -> torch.Tensor:
    """Fill ``t`` in place with N(0, std^2) draws: a standard normal times ``std``.

    Args:
        t: Tensor of any shape.
        std: Standard deviation, >= 0.
        generator: Source of randomness (``None``: global RNG).

    Returns:
        ``t``.
    """
    nn.init.normal_(t, 0.0, 1.0, generator=generator)
    return t.mul_(std)


@torch.no_grad()
def torch_default_(layer: nn.Linear | nn.Conv2d, generator: torch.Generator | None, scale: float = 1.0) -> None:
    """PyTorch's default Linear/Conv init, drawn from ``generator``, times ``scale``.

    Weight: U(-b, b) with b = 1/sqrt(fan_in) (``kaiming_uniform_`` with a = sqrt(5), as in
    ``nn.Linear.reset_parameters``), so std b/sqrt(3). Bias: U(-b, b) with the same b.
    Both are multiplied by ``scale`` (Omnigrok multiplies every parameter, docs/theory.md 6.6).

    Args:
        layer: An ``nn.Linear`` or ``nn.Conv2d``; its weight is drawn first, then its bias.
        generator: Source of randomness.
        scale: Multiplier of weight and bias.
    """
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    layer.weight.mul_(scale)
    if layer.bias is not None:
        torch_default_bias_(layer, generator, scale)


@torch.no_grad()
def torch_default_bias_(layer: nn.Linear | nn.Conv2d, generator: torch.Generator | None, scale: float = 1.0) -> None:
    """PyTorch's default bias init U(-1/sqrt(fan_in), 1/sqrt(fan_in)) times ``scale``.

    Args:
        layer: Layer with a bias.
        generator: Source of randomness.
        scale: Multiplier.
    """
    bound = 1.0 / math.sqrt(fan_in(layer))
    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    layer.bias.mul_(scale)


def fan_in(layer: nn.Module) -> int:
    """Fan-in of a Linear/Conv layer: in_features, or in_channels/groups * prod(kernel_size).

    Args:
        layer: Module with a ``weight`` of shape (out, in, *kernel).

    Returns:
        The fan-in as an int.
    """
    w = layer.weight
    return int(w[0].numel())


def fan_out(layer: nn.Module) -> int:
    """Fan-out of a Linear/Conv layer: out_features, or out_channels * prod(kernel_size).

    Args:
        layer: Module with a ``weight`` of shape (out, in, *kernel).

    Returns:
        The fan-out as an int.
    """
    w = layer.weight
    return int(w.shape[0] * w[0, 0].numel())


def check_scale(name: str, value: float, *, positive: bool = False) -> float:
    """Validate a scale knob: finite and >= 0 (or > 0 when ``positive``).

    Args:
        name: Kwarg name for the message.
        value: The value.
        positive: Require strictly positive.

    Returns:
        ``float(value)``.

    Raises:
        ValueError: One line naming the kwarg.
    """
    v = float(value)
    ok = math.isfinite(v) and (v > 0 if positive else v >= 0)
    if not ok:
        raise ValueError(f"{name}={value} must be finite and {'> 0' if positive else '>= 0'}")
    return v
