"""The twin-to-real homotopy: one knob from the layerwise linear twin to the real network (docs/theory.md 1.5).

``with_nonlinearity(model, strength)`` returns a deep copy of an initialised model (same weights, same buffers,
same parameter names) in which every nonlinearity that ``linear_twin`` would linearise is replaced by a member of
a one-parameter family f_s with f_0 = the twin's stand-in and f_1 = the real module, s = ``strength`` in [0, 1]:

- ``nn.ReLU`` -> ``nn.LeakyReLU(negative_slope=1 - s)``: x for x >= 0, (1 - s) x below. This *is* the convex path
  (1 - s) x + s relu(x), computed in the leaky-ReLU form (one op, exact). ``nn.LeakyReLU(a)`` likewise becomes
  ``nn.LeakyReLU(1 - s (1 - a))``, its own convex path.
- ``nn.Tanh`` -> ``ScaledTanh``: tanh(s x) / s, the tanh of slope 1 at the origin whose saturation level 1/s
  goes to infinity as s -> 0 (the limit is x; at s = 0 it returns x itself).
- Every other activation of ``twin.ACTIVATIONS`` (GELU, SiLU, Sigmoid, ELU, Softplus, ..., also ReLU/Tanh
  subclasses) -> ``ConvexActivation``: (1 - s) x + s f(x).
- Max pooling -> ``MixedPool``: (1 - s) avgpool(x) + s maxpool(x), the average pool being the twin's (same
  kernel, stride, padding, ceil_mode, ``count_include_pad=False``; adaptive pools keep their output size).
- Softmax (``nn.Softmax``, ``Softmax2d``, ``LogSoftmax``) -> ``ConvexActivation`` too: (1 - s) x + s softmax(x).
  The twin replaces the softmax by the identity, so this is the straight line between the twin's and the real
  net's attention pattern. In this package's transformer the causal mask is applied on both sides of the softmax
  module (scores set to -inf before it, the pattern set to 0 after it), so the pattern at strength s is
  mask * ((1 - s) Q K^T / sqrt(d_head) + s softmax(masked Q K^T / sqrt(d_head))): the twin's multilinear pattern
  (no 1/T) plus the real one, with no NaN (the -inf entries are zeroed after the mix). A softmax temperature
  would not do: softmax(s S) tends to the uniform 1/T pattern as s -> 0, not to the twin's pattern S.

The endpoints are the endpoints, exactly: strength 0 returns ``linear_twin(model)`` and strength 1 returns
``copy.deepcopy(model)``, so their outputs are bitwise those of the twin and of the real net in any dtype, and the
trainers see the very modules they already know (``nn.Identity``, ``nn.ReLU``, ...). Every path module is also
exact at its own endpoints (it returns x, resp. f(x), there) when built directly.

For 0 < s < 1 each path module holds the real module as a child (``ConvexActivation.fn``, ``ScaledTanh.tanh``,
``MixedPool.max``), so ``nonlinear_modules`` names it and ``is_layerwise_linear`` is False, and
``linear_twin(with_nonlinearity(model, s))`` is the twin again (up to rounding: (1 - s) x + s x). Elementwise,
each f_s(x) lies between the twin's value and the real one and moves monotonically from one to the other as s
grows (tests/deep_models/test_homotopy.py). The strength is a plain Python float attribute of each path module:
``torch.func`` (``functional_call``, ``vmap``) sees no extra parameter or buffer, and a structural key over module
attributes tells members of different strengths apart.

What is refused is what ``linear_twin`` refuses (LayerNorm, MultiheadAttention, dilated max pooling, ...), for
0 <= s < 1; strength 1 is the real network as it is and never looks at the modules. A learnable activation
(``nn.PReLU``) moves under ``ConvexActivation``, so its weight is named ``<path>.fn.weight`` for 0 < s < 1 (the
registered models have none). Only modules are seen: an ``F.relu`` inside ``forward`` stays as it is.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from deep_models.twin import _MAX_TO_AVG, ACTIVATIONS, linear_twin
from deep_models.twin import _replacement as _linear_stand_in

__all__ = ["ConvexActivation", "MixedPool", "ScaledTanh", "check_strength", "with_nonlinearity"]

_RANGE = "nonlinearity strength must be a finite number in [0, 1] (0 = linear twin, 1 = real network)"


def check_strength(strength: float) -> float:
    """The strength as a Python float, validated.

    Args:
        strength: A real number (int, float, numpy scalar, one-element tensor); bools and strings are refused.

    Returns:
        ``float(strength)``.

    Raises:
        ValueError: If it is not a number, not finite, or outside [0, 1] (one line naming the range).
    """
    if isinstance(strength, bool | str | bytes):
        raise ValueError(f"{_RANGE}, got {strength!r}")
    try:
        s = float(strength)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{_RANGE}, got {strength!r}") from None
    if not (math.isfinite(s) and 0.0 <= s <= 1.0):
        raise ValueError(f"{_RANGE}, got {s!r}")
    return s


def with_nonlinearity(model: nn.Module, strength: float) -> nn.Module:
    """A deep copy of ``model`` whose nonlinearities have strength ``strength``: 0 = ``linear_twin``, 1 = real.

    Call it after init, like ``linear_twin``: the copy starts from exactly the model's weights and buffers and shares
    no tensor with it. Shared activation instances stay shared, train/eval mode is kept. See the module docstring
    (and docs/theory.md 1.5) for the family: ReLU -> LeakyReLU(1 - s), Tanh -> tanh(s x)/s, other activations and
    softmax -> (1 - s) x + s f(x), max pool -> (1 - s) avgpool + s maxpool.

    Args:
        model: The real network, initialised.
        strength: s in [0, 1].

    Returns:
        ``linear_twin(model)`` at s = 0, ``copy.deepcopy(model)`` at s = 1, else the copy with path modules; same
        class, same parameter names and shapes (for the registered models).

    Raises:
        ValueError: A strength outside [0, 1] or not finite; for s < 1, a module ``linear_twin`` cannot linearise.
    """
    s = check_strength(strength)
    if s == 1.0:
        return copy.deepcopy(model)
    if s == 0.0:
        try:
            return linear_twin(model)
        except ValueError as err:
            raise _renamed(err) from None
    path = copy.deepcopy(model)
    memo: dict[int, nn.Module] = {}
    if _path_module(path, "", s, memo) is not None:  # the model is itself a bare nonlinearity
        return memo[id(path)]
    for parent_name, parent in list(path.named_modules(remove_duplicate=False)):
        for key, child in list(parent._modules.items()):
            if child is None:
                continue
            where = f"{parent_name}.{key}" if parent_name else key
            new = _path_module(child, where, s, memo)
            if new is not None:
                parent._modules[key] = new
    return path


class _PathModule(nn.Module):
    """Base of the path modules: a validated Python-float ``strength`` shown in the repr."""

    def __init__(self, strength: float) -> None:
        super().__init__()
        self.strength = check_strength(strength)

    def extra_repr(self) -> str:
        return f"strength={self.strength:g}"


class ConvexActivation(_PathModule):
    """(1 - s) x + s fn(x): the straight line from the identity (s = 0) to ``fn`` (s = 1).

    Attributes:
        fn: The real activation (any elementwise or row-wise module with output shape = input shape).
        strength: s in [0, 1] (Python float).
    """

    def __init__(self, fn: nn.Module, strength: float) -> None:
        """Wrap ``fn`` (its ``inplace`` flag, if any, is switched off: x is needed after fn runs)."""
        super().__init__(strength)
        if getattr(fn, "inplace", False):
            fn.inplace = False
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(1 - s) x + s fn(x); exactly x at s = 0 and fn(x) at s = 1."""
        s = self.strength
        if s == 0.0:
            return x
        if s == 1.0:
            return self.fn(x)
        return (1.0 - s) * x + s * self.fn(x)


class ScaledTanh(_PathModule):
    """tanh(s x) / s: slope 1 at 0, saturation at +-1/s; the identity at s = 0 (the limit), tanh at s = 1.

    For x > 0 it decreases in s from x to tanh(x) (tanh(u)/u decreases in |u|), symmetrically for x < 0.

    Attributes:
        tanh: ``nn.Tanh`` (the real module; ``linear_twin`` turns it into the identity).
        strength: s in [0, 1] (Python float).
    """

    def __init__(self, strength: float, tanh: nn.Module | None = None) -> None:
        """Build the module (``tanh``: the ``nn.Tanh`` instance to hold, a new one by default)."""
        super().__init__(strength)
        self.tanh = nn.Tanh() if tanh is None else tanh

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """tanh(s x) / s; exactly x at s = 0 and tanh(x) at s = 1."""
        s = self.strength
        if s == 0.0:
            return x
        if s == 1.0:
            return self.tanh(x)
        return self.tanh(x * s) / s


class MixedPool(_PathModule):
    """(1 - s) avg(x) + s max(x), two pools of the same geometry: the twin's pool at s = 0, the real one at s = 1.

    Attributes:
        avg: The average pool (``linear_twin``'s stand-in for ``max``).
        max: The real max pool.
        strength: s in [0, 1] (Python float).
    """

    def __init__(self, avg: nn.Module, max: nn.Module, strength: float) -> None:  # noqa: A002
        """Hold both pools."""
        super().__init__(strength)
        self.avg, self.max = avg, max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(1 - s) avg(x) + s max(x); exactly avg(x) at s = 0 and max(x) at s = 1."""
        s = self.strength
        if s == 0.0:
            return self.avg(x)
        if s == 1.0:
            return self.max(x)
        return (1.0 - s) * self.avg(x) + s * self.max(x)


def _path_module(m: nn.Module, where: str, s: float, memo: dict[int, nn.Module]) -> nn.Module | None:
    """The strength-s stand-in for ``m`` (memoised per instance), or None to keep ``m``."""
    if id(m) in memo:
        return memo[id(m)]
    try:  # the twin's stand-in: its checks (unsupported modules, dilation, ...) are ours
        linear = _linear_stand_in(m, where, {})
    except ValueError as err:
        raise _renamed(err) from None
    if linear is None:
        if isinstance(m, ACTIVATIONS + tuple(_MAX_TO_AVG)):  # a max-pool subclass the twin cannot map either
            raise ValueError(f"with_nonlinearity: cannot interpolate {where or '<root>'} ({type(m).__name__})")
        return None
    new: nn.Module
    if type(m) is nn.ReLU:
        new = nn.LeakyReLU(1.0 - s, inplace=m.inplace)
    elif type(m) is nn.LeakyReLU:
        new = nn.LeakyReLU(1.0 - s * (1.0 - m.negative_slope), inplace=m.inplace)
    elif type(m) is nn.Tanh:
        new = ScaledTanh(s, m)
    elif isinstance(m, ACTIVATIONS):
        new = ConvexActivation(m, s)
    else:  # a max pool; ``linear`` is its average pool
        new = MixedPool(linear, m, s)
    new.train(m.training)
    memo[id(m)] = new
    return new


def _renamed(err: ValueError) -> ValueError:
    """``linear_twin``'s refusal, worded as ours."""
    return ValueError(str(err).replace("linear_twin:", "with_nonlinearity:", 1))
