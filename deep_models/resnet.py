"""CIFAR-style ResNets with BasicBlocks (He et al. 2016, arXiv:1512.03385).

The neural-collapse setups of docs/theory.md 7.4 (Papyan, Han & Donoho 2020, arXiv:2008.08186, and
its public re-implementations) use a ResNet-18 whose stem is a 3x3 stride-1 conv with no max-pool,
so small images (CIFAR 32x32, MNIST 28x28) keep their resolution in the first stage. Both models
here follow that recipe:

- ``resnet18_cifar``: stages of 64, 128, 256, 512 channels with 2 BasicBlocks each.
- ``resnet_small``: ``width * 2^i`` channels for stage i with ``blocks[i]`` BasicBlocks, e.g.
  ``width=16, blocks=[1, 1, 1]`` (a 8-layer net that trains on CPU).

The first stage has stride 1, later stages stride 2; a shortcut with a shape change is a 1x1 conv
(+ norm). Features are the global average pool of the last stage, the input of ``fc``.

``norm``: ``batch`` puts BatchNorm2d after each conv (torchvision's layout); ``none`` leaves it out.
Convs never have a bias (with BatchNorm it is redundant), so with ``norm=none`` the linear twin is a
purely linear map of the input up to the bias of ``fc``. In channels come from ``input_shape``:
(C, H, W), or (H, W) for a single channel.

Init: convs He-normal with fan_out (torchvision's ResNet init), ``fc`` PyTorch default, all times
``init_scale``; BatchNorm weight 1, bias 0. With BatchNorm the forward pass is invariant to the
scale of each conv feeding a BN, so there ``init_scale`` acts only through ``fc`` and the
effective learning rates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from deep_models._init import check_scale, fan_out, normal_, torch_default_
from deep_models._registry import register_model

NORMS = ("batch", "none")


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.Identity()


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection: y = act2(norm2(conv2(act1(norm1(conv1 x)))) + sc(x)).

    Args:
        in_ch: Input channels.
        out_ch: Output channels.
        stride: Stride of the first conv and of the shortcut.
        norm: ``batch`` | ``none``.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, norm: str) -> None:
        """Build the block (see class docstring)."""
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _norm(norm, out_ch)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.norm2 = _norm(norm, out_ch)
        self.act2 = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), _norm(norm, out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: Shape (N, in_ch, H, W).

        Returns:
            Shape (N, out_ch, ceil(H/stride), ceil(W/stride)).
        """
        out = self.act1(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet: 3x3 stride-1 stem, stages of BasicBlocks, global average pool, ``fc``.

    Attributes:
        stem: conv3x3 -> norm -> ReLU.
        stages: ``nn.Sequential`` of stages, each an ``nn.Sequential`` of BasicBlocks.
        pool: Global average pool (``nn.AdaptiveAvgPool2d(1)``).
        fc: Final ``nn.Linear`` (num_features -> out_dim).
        num_features: Channels of the last stage.
        num_classes: ``out_dim``.
        output_scale: Multiplier of ``fc``'s output.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        out_dim: int,
        *,
        width: int,
        blocks: Sequence[int],
        norm: str = "batch",
        init_scale: float = 1.0,
        output_scale: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        """Build and initialise the ResNet.

        Args:
            input_shape: (C, H, W), or (H, W) for one channel.
            out_dim: Number of outputs.
            width: Channels of the stem and first stage; stage i has width * 2^i.
            blocks: BasicBlocks per stage, each >= 1.
            norm: ``batch`` | ``none``.
            init_scale: Multiplier of every conv and ``fc`` init, >= 0.
            output_scale: Multiplier of the output, > 0.
            generator: Source of every init draw.

        Raises:
            ValueError: A knob out of range (the message names it).
        """
        super().__init__()
        shape = tuple(input_shape)
        if len(shape) not in (2, 3):
            raise ValueError(f"input_shape={shape} must be (C, H, W) or (H, W) for a ResNet")
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r} must be one of {', '.join(NORMS)}")
        if int(width) < 1:
            raise ValueError(f"width={width} must be >= 1")
        blocks = [int(b) for b in blocks]
        if not blocks or min(blocks) < 1:
            raise ValueError(f"blocks={blocks} must be a non-empty list of ints >= 1 (blocks per stage)")
        self.input_shape = shape
        in_ch = shape[0] if len(shape) == 3 else 1
        self.init_scale = check_scale("init_scale", init_scale)
        self.output_scale = check_scale("output_scale", output_scale, positive=True)
        self.num_classes = int(out_dim)

        self.stem = nn.Sequential(nn.Conv2d(in_ch, width, 3, padding=1, bias=False), _norm(norm, width), nn.ReLU())
        stages, ch = [], int(width)
        for i, n in enumerate(blocks):
            out_ch = int(width) * 2**i
            stage = [BasicBlock(ch, out_ch, 1 if i == 0 else 2, norm)]
            stage += [BasicBlock(out_ch, out_ch, 1, norm) for _ in range(n - 1)]
            stages.append(nn.Sequential(*stage))
            ch = out_ch
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(ch, self.num_classes)
        self.num_features = ch
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw all weights from ``generator`` in module order; reset BatchNorm.

        Convs: N(0, init_scale^2 * 2 / fan_out), fan_out = out_ch * k * k (He et al. 2015,
        arXiv:1502.01852, as in torchvision's ResNet). ``fc``: PyTorch default times init_scale.
        BatchNorm: weight 1, bias 0, running stats reset.

        Args:
            generator: Source of randomness (``None``: global RNG).
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                normal_(m.weight, self.init_scale * math.sqrt(2.0 / fan_out(m)), generator)
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()  # deterministic: ones, zeros, running stats reset
        torch_default_(self.fc, generator, self.init_scale)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled last-stage features, the input of ``fc``.

        Args:
            x: Images, shape (N, C, H, W), or (N, H, W) when input_shape is (H, W).

        Returns:
            h, shape (N, num_features).
        """
        if x.dim() == 3:
            x = x.unsqueeze(1)  # (N, H, W) -> (N, 1, H, W)
        return self.pool(self.stages(self.stem(x))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Network output.

        Args:
            x: Images, shape (N, *input_shape).

        Returns:
            output_scale * fc(h), shape (N, out_dim).
        """
        return self.fc(self.forward_features(x)) * self.output_scale

    def get_classifier(self) -> nn.Linear:
        """The final Linear layer.

        Returns:
            ``fc``.
        """
        return self.fc


@register_model
def resnet18_cifar(
    *,
    input_shape: tuple[int, ...],
    out_dim: int,
    generator: torch.Generator | None = None,
    norm: str = "batch",
    init_scale: float = 1.0,
    output_scale: float = 1.0,
) -> ResNet:
    """ResNet-18, CIFAR stem: stages 64-128-256-512, 2 BasicBlocks each (docs/theory.md 7.4)."""
    return ResNet(
        input_shape,
        out_dim,
        width=64,
        blocks=(2, 2, 2, 2),
        norm=norm,
        init_scale=init_scale,
        output_scale=output_scale,
        generator=generator,
    )


@register_model
def resnet_small(
    *,
    input_shape: tuple[int, ...],
    out_dim: int,
    generator: torch.Generator | None = None,
    width: int,
    blocks: Sequence[int],
    norm: str = "batch",
    init_scale: float = 1.0,
    output_scale: float = 1.0,
) -> ResNet:
    """Small CIFAR-style ResNet: stage i has width * 2^i channels and blocks[i] BasicBlocks."""
    return ResNet(
        input_shape,
        out_dim,
        width=width,
        blocks=blocks,
        norm=norm,
        init_scale=init_scale,
        output_scale=output_scale,
        generator=generator,
    )
