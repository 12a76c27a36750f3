"""Fully connected network with a choice of activation, init and per-layer scales.

Covers the MLPs of the paper's experiments:

- docs/theory.md 4.7 (Nam et al. 2024, arXiv:2404.17563): ``depth=2, width=1000, activation=relu,
  init=normal, init_scale=0.01`` gives Linear(37, 1000), ReLU, Linear(1000, 1) with every weight
  and bias N(0, 0.01^2).
- docs/theory.md 6.4 (the paper's MNIST grokking figure, arXiv:2502.21009): ``depth=4, width=512,
  activation=tanh, init=fan_in, init_scale=weight_scale, output_scale=output_scale`` gives
  784-512-512-512-10 with weights N(0, (weight_scale/sqrt(fan_in))^2), PyTorch-default biases and
  the output multiplied by output_scale.
- docs/theory.md 6.6 (Omnigrok, arXiv:2210.01117): ``depth=3, width=200, init=torch, init_scale=8``
  multiplies every PyTorch-default parameter by 8.

``layer_scales`` is the imbalance knob of docs/theory.md 2.4: with ``[r, 1, ..., 1/r]`` the first
layer is r times larger and the last r times smaller; the twin's end-to-end map is unchanged
while lambda = W1 W1^T - W2^T W2 moves away from 0.

Activations are ``nn.Module`` instances (one per position) so ``linear_twin`` can swap them.

``linear_impl`` picks how each Linear is computed, never what: ``default`` is ``nn.Linear`` (MKL GEMM);
``conv1x1`` computes the same x W^T + b as a 1x1 convolution over a channels-last (1, d, N, 1) view of x, which
torch hands to oneDNN's AVX-512 1x1-convolution kernels whenever it runs multi-threaded (single-threaded, torch
picks its own GEMM-based 1x1 path). Parameters, state dicts and the twin are identical; outputs agree with
``default`` to float rounding. On an idle 2-core AVX-512 CPU oneDNN was measured at about 1.8x the 2-thread GEMM
rate of ``torch.mm`` (docs/benchmarks.md); on CUDA, or where ``default`` is as fast, keep ``default``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deep_models._init import check_scale, fan_in, normal_, torch_default_, torch_default_bias_
from deep_models._registry import register_model

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "identity": nn.Identity}
INITS = ("fan_in", "normal", "torch")
LINEAR_IMPLS = ("default", "conv1x1")


class MLP(nn.Module):
    """``depth`` Linear layers with an activation between consecutive ones, none at the output.

    f(x) = output_scale * W_L a(... a(W_1 flatten(x) + b_1) ...) + output_scale * b_L.

    Attributes:
        features: ``nn.Sequential`` (Flatten, Linear, act, ..., Linear, act): x -> penultimate h.
        head: The last ``nn.Linear`` (num_features -> out_dim).
        num_features: Width of h (``width``, or the flattened input size when depth == 1).
        num_classes: ``out_dim``.
        output_scale: Multiplier of the head's output (not part of ``head``).
    """

    def __init__(
        self,
        in_features: int,
        out_dim: int,
        *,
        depth: int,
        width: int,
        activation: str = "relu",
        bias: bool = True,
        init: str = "fan_in",
        init_scale: float = 1.0,
        layer_scales: Sequence[float] | None = None,
        output_scale: float = 1.0,
        linear_impl: str = "default",
        generator: torch.Generator | None = None,
    ) -> None:
        """Build and initialise the MLP.

        Args:
            in_features: Flattened input size d.
            out_dim: Number of outputs c.
            depth: Number of Linear layers L >= 1.
            width: Hidden width h >= 1 (unused when depth == 1).
            activation: ``relu`` | ``tanh`` | ``gelu`` | ``identity``.
            bias: Whether every Linear has a bias.
            init: ``fan_in`` | ``normal`` | ``torch`` (see ``reset_parameters``).
            init_scale: Global multiplier of the init std, >= 0.
            layer_scales: One multiplier per Linear (length ``depth``), each > 0, or None (all 1).
            output_scale: Multiplier of the output, > 0.
            linear_impl: ``default`` (``nn.Linear``) | ``conv1x1`` (the same map through oneDNN's 1x1
                convolution; see the module docstring).
            generator: Source of every init draw.

        Raises:
            ValueError: A knob out of range (the message names it).
        """
        super().__init__()
        if int(depth) < 1:
            raise ValueError(f"depth={depth} must be >= 1 (number of Linear layers)")
        if int(width) < 1:
            raise ValueError(f"width={width} must be >= 1")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r} must be one of {', '.join(ACTIVATIONS)}")
        if init not in INITS:
            raise ValueError(f"init={init!r} must be one of {', '.join(INITS)}")
        if linear_impl not in LINEAR_IMPLS:
            raise ValueError(f"linear_impl={linear_impl!r} must be one of {', '.join(LINEAR_IMPLS)}")
        self.linear_impl = linear_impl
        scales = [1.0] * int(depth) if layer_scales is None else [float(s) for s in layer_scales]
        if len(scales) != int(depth):
            raise ValueError(f"layer_scales has {len(scales)} entries, needs one per Linear layer (depth={depth})")
        for i, s in enumerate(scales):
            check_scale(f"layer_scales[{i}]", s, positive=True)
        self.init, self.init_scale = init, check_scale("init_scale", init_scale)
        self.layer_scales = scales
        self.output_scale = check_scale("output_scale", output_scale, positive=True)
        self.num_classes = int(out_dim)

        dims = [int(in_features)] + [int(width)] * (int(depth) - 1)
        layers: list[nn.Module] = [nn.Flatten(1)]
        for d_in, d_out in zip(dims[:-1], dims[1:], strict=True):
            layers += [nn.Linear(d_in, d_out, bias=bias), ACTIVATIONS[activation]()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(dims[-1], self.num_classes, bias=bias)
        self.num_features = dims[-1]
        self.reset_parameters(generator)

    def linear_layers(self) -> list[nn.Linear]:
        """The Linear layers W_1, ..., W_L in forward order (the last one is ``head``).

        Returns:
            List of ``depth`` ``nn.Linear`` modules.
        """
        return [m for m in self.features if isinstance(m, nn.Linear)] + [self.head]

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw every parameter from ``generator``, layer by layer, weight before bias.

        With s = init_scale * layer_scales[l] and fan_in the layer's input size:

        - ``fan_in``: W ~ N(0, (s / sqrt(fan_in))^2); b ~ PyTorch default U(+-1/sqrt(fan_in)),
          not scaled (docs/theory.md 6.4).
        - ``normal``: W, b ~ N(0, s^2) (docs/theory.md 4.7).
        - ``torch``: PyTorch default for W and b, both times s (docs/theory.md 6.6).

        Args:
            generator: Source of randomness (``None``: global RNG).
        """
        for layer, ls in zip(self.linear_layers(), self.layer_scales, strict=True):
            s = self.init_scale * ls
            if self.init == "fan_in":
                normal_(layer.weight, s / math.sqrt(fan_in(layer)), generator)
                if layer.bias is not None:
                    torch_default_bias_(layer, generator)
            elif self.init == "normal":
                normal_(layer.weight, s, generator)
                if layer.bias is not None:
                    normal_(layer.bias, s, generator)
            else:
                torch_default_(layer, generator, s)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features h, the input of ``head``.

        Args:
            x: Input, shape (N, *input_shape); flattened to (N, d).

        Returns:
            h, shape (N, num_features).
        """
        if self.linear_impl == "default":
            return self.features(x)
        for m in self.features:
            x = conv1x1_linear(x, m.weight, m.bias) if isinstance(m, nn.Linear) else m(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Network output.

        Args:
            x: Input, shape (N, *input_shape).

        Returns:
            output_scale * head(h), shape (N, out_dim).
        """
        h = self.forward_features(x)
        if self.linear_impl == "default":
            return self.head(h) * self.output_scale
        return conv1x1_linear(h, self.head.weight, self.head.bias) * self.output_scale

    def get_classifier(self) -> nn.Linear:
        """The final Linear layer (num_features -> out_dim).

        Returns:
            ``head``.
        """
        return self.head


def conv1x1_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x W^T + b as a 1x1 convolution on channels-last views (no copies; autograd as for ``F.linear``).

    x (N, d) is viewed as a (1, d, N, 1) image whose memory is NHWC, W (h, d) as (h, d, 1, 1) filters.

    Args:
        x: Input, shape (N, d).
        weight: Weight W, shape (h, d).
        bias: Bias b, shape (h,), or None.

    Returns:
        x W^T + b, shape (N, h).
    """
    n, d = x.shape
    h = weight.shape[0]
    img = x.contiguous().view(1, n, 1, d).permute(0, 3, 1, 2)  # (1, d, N, 1), channels-last memory
    y = F.conv2d(img, weight.contiguous().view(h, 1, 1, d).permute(0, 3, 1, 2), bias)  # (1, h, N, 1)
    return y.permute(0, 2, 3, 1).reshape(n, h)  # a view when the output is channels-last


@register_model
def mlp(
    *,
    input_shape: tuple[int, ...],
    out_dim: int,
    generator: torch.Generator | None = None,
    depth: int,
    width: int,
    activation: str = "relu",
    bias: bool = True,
    init: str = "fan_in",
    init_scale: float = 1.0,
    layer_scales: Sequence[float] | None = None,
    output_scale: float = 1.0,
    linear_impl: str = "default",
) -> MLP:
    """MLP on the flattened input (see ``MLP`` for the knobs; docs/theory.md 4.7, 6.4, 6.6)."""
    return MLP(
        math.prod(input_shape),
        out_dim,
        depth=depth,
        width=width,
        activation=activation,
        bias=bias,
        init=init,
        init_scale=init_scale,
        layer_scales=layer_scales,
        output_scale=output_scale,
        linear_impl=linear_impl,
        generator=generator,
    )
