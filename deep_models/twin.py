"""The layerwise linear twin of a network (docs/theory.md 1.4; the paper, arXiv:2502.21009).

``linear_twin(model)`` returns a deep copy of an initialised model, with the same weights and the
same modules, in which every nonlinearity is replaced by a linear map:

- Activation modules (ReLU, Tanh, GELU, Sigmoid, SiLU, ELU, LeakyReLU, Softplus, Mish, ... see
  ``ACTIVATIONS``) become ``nn.Identity``.
- Max pooling becomes average pooling of the same geometry (kernel, stride, padding, ceil_mode;
  ``count_include_pad=False`` so padding is ignored, as max pooling ignores it); adaptive max
  pooling becomes adaptive average pooling with the same output size.
- ``nn.Softmax`` (and ``Softmax2d``, ``LogSoftmax``) becomes ``nn.Identity``. In this package's
  transformer the attention softmax is such a module, and the causal mask is applied after it as
  well, so the twin's attention is the multilinear map (mask * Q K^T / sqrt(d_head)) V: the
  1/sqrt(d_head) normalisation of the real net is kept and there is no 1/T (deep_models/transformer.py).
- BatchNorm is kept. Given the batch statistics it is a per-channel affine map, and in eval mode
  (running statistics) the twin is exactly linear (affine with biases). In train mode it divides
  by the statistics of the current batch, which depend on the input: that normalisation is the
  one nonlinearity left in the twin of a BatchNorm network (use ``norm=none`` for a fully linear
  twin).
- Dropout is kept: given its mask it is a diagonal linear map, and it is the identity in eval mode.
- Linear, Conv, Embedding, pooling by averaging, Flatten, Identity and residual additions are
  already linear and are left alone.

Only modules are seen: a nonlinearity applied as a function (``F.relu``, ``torch.softmax``) inside
``forward`` stays in the twin. The models of this package use modules for every nonlinearity;
``is_layerwise_linear`` checks what can be checked. Modules the twin cannot linearise
(LayerNorm, GroupNorm, InstanceNorm, ``nn.MultiheadAttention``, GLU, ...) make ``linear_twin``
raise rather than return a twin that is not linear.

The twin keeps the layer products (it is multilinear in the weights), so its training dynamics
are those of the deep linear networks of docs/theory.md 3.2 (Saxe et al. 2014, arXiv:1312.6120).
"""

from __future__ import annotations

import copy

from torch import nn

__all__ = ["ACTIVATIONS", "is_layerwise_linear", "linear_twin", "nonlinear_modules"]

# Elementwise (or row-wise, for Softmax) nonlinearities replaced by nn.Identity.
ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Softsign,
    nn.Tanhshrink, nn.Softshrink, nn.Hardshrink, nn.LogSigmoid, nn.Threshold,
    nn.Softmax, nn.Softmax2d, nn.LogSoftmax,
)  # fmt: skip
_MAX_TO_AVG: dict[type[nn.Module], type[nn.Module]] = {
    nn.MaxPool1d: nn.AvgPool1d,
    nn.MaxPool2d: nn.AvgPool2d,
    nn.MaxPool3d: nn.AvgPool3d,
    nn.AdaptiveMaxPool1d: nn.AdaptiveAvgPool1d,
    nn.AdaptiveMaxPool2d: nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool3d: nn.AdaptiveAvgPool3d,
}
# Nonlinear modules without a linear stand-in of the same shape: linear_twin refuses them.
_UNSUPPORTED: tuple[type[nn.Module], ...] = (
    nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LocalResponseNorm,
    nn.RMSNorm, nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, nn.GLU, nn.Softmin,
    nn.LPPool1d, nn.LPPool2d, nn.CrossMapLRN2d,
)  # fmt: skip
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def linear_twin(model: nn.Module) -> nn.Module:
    """The layerwise linear twin: a deep copy with every nonlinearity made linear.

    Call it after init: the twin starts from exactly the real net's weights (and buffers), and the
    two share no tensors, so training one never moves the other. Shared activation instances stay
    shared (one replacement per instance). Attributes such as ``num_features`` come along with the
    copy. See the module docstring for what is replaced and what is kept.

    Args:
        model: The real network, initialised.

    Returns:
        The twin (same class, same parameter names and shapes); ``is_layerwise_linear(twin)`` holds.

    Raises:
        ValueError: If the model holds a nonlinearity with no linear stand-in (LayerNorm,
            MultiheadAttention, max pooling with dilation or ``return_indices``, ...), naming it.
    """
    twin = copy.deepcopy(model)
    memo: dict[int, nn.Module] = {}
    if _replacement(twin, "", memo) is not None:  # the model is itself a bare nonlinearity
        return memo[id(twin)]
    for parent_name, parent in list(twin.named_modules(remove_duplicate=False)):
        for key, child in list(parent._modules.items()):
            if child is None:
                continue
            path = f"{parent_name}.{key}" if parent_name else key
            new = _replacement(child, path, memo)
            if new is not None:
                parent._modules[key] = new
    left = nonlinear_modules(twin)
    if left:  # a subclass of a known nonlinearity we did not map
        raise ValueError(f"linear_twin: cannot linearise {', '.join(left)}")
    return twin


def nonlinear_modules(model: nn.Module, *, strict: bool = False) -> list[str]:
    """Names of the known nonlinear modules in ``model``.

    Args:
        model: Any module.
        strict: Also count BatchNorm in train mode (it divides by batch statistics, the twin's
            one remaining nonlinearity). In eval mode BatchNorm is affine and never counted.

    Returns:
        ``"path (ClassName)"`` for every activation, softmax, max pool or unsupported
        normalisation/attention module; ``[]`` when none is left.
    """
    bad = ACTIVATIONS + tuple(_MAX_TO_AVG) + _UNSUPPORTED
    out = []
    for name, m in model.named_modules(remove_duplicate=False):
        if isinstance(m, bad) or (strict and isinstance(m, _BATCHNORMS) and m.training):
            out.append(f"{name or '<root>'} ({type(m).__name__})")
    return out


def is_layerwise_linear(model: nn.Module, *, strict: bool = False) -> bool:
    """Whether no known nonlinearity remains (see ``nonlinear_modules``).

    Args:
        model: Any module, typically the output of ``linear_twin``.
        strict: Count BatchNorm in train mode as nonlinear.

    Returns:
        True when ``nonlinear_modules(model, strict=strict)`` is empty. Functional nonlinearities
        inside ``forward`` cannot be seen.
    """
    return not nonlinear_modules(model, strict=strict)


def _replacement(m: nn.Module, path: str, memo: dict[int, nn.Module]) -> nn.Module | None:
    """The linear stand-in for ``m`` (memoised per instance), or None to keep ``m``."""
    if id(m) in memo:
        return memo[id(m)]
    where = path or "<root>"
    new: nn.Module | None = None
    if isinstance(m, _UNSUPPORTED):
        raise ValueError(
            f"linear_twin: {where} ({type(m).__name__}) is nonlinear and has no linear stand-in; "
            "build the model without it"
        )
    if isinstance(m, ACTIVATIONS):
        new = nn.Identity()
    elif type(m) in _MAX_TO_AVG:
        avg = _MAX_TO_AVG[type(m)]
        if isinstance(m, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)):
            if m.return_indices:
                raise ValueError(f"linear_twin: {where} ({type(m).__name__}) returns indices; averaging cannot")
            new = avg(m.output_size)
        else:
            if m.return_indices or any(d != 1 for d in _tuple(m.dilation)):
                raise ValueError(
                    f"linear_twin: {where} ({type(m).__name__}) uses dilation or return_indices, "
                    "which average pooling lacks"
                )
            new = avg(m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode, count_include_pad=False)
    if new is not None:
        new.train(m.training)
        memo[id(m)] = new
    return new


def _tuple(x: int | tuple[int, ...]) -> tuple[int, ...]:
    return x if isinstance(x, tuple) else (x,)
