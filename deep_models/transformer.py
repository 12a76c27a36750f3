"""One-layer transformer in the style of Nanda et al. 2023 (arXiv:2301.05217), docs/theory.md 6.5.

Tokens (N, T) -> token embedding + learned positional embedding -> one attention layer
(n_heads heads, causal) -> one ReLU MLP -> untied unembedding of the last token's residual stream.
No LayerNorm. Defaults are Nanda's: d_model 128, 4 heads of d_head 32, d_mlp 512, vocabulary
p + 1 = out_dim + 1 (the ``=`` token), output p = out_dim logits.

Init follows Nanda's original code: every weight N(0, 1/d_model) (W_E, W_pos, W_Q, W_K, W_V,
W_O, W_in, W_out), the unembedding N(0, 1/vocab_size), all times ``init_scale``. Biases, when
present (``bias=true``), start at 0; the reference notebooks freeze or drop them, so the default
is ``bias=false``.

The attention softmax is an ``nn.Softmax`` module (``Attention.softmax``) so that ``linear_twin``
can replace it by ``nn.Identity``. The causal mask is applied on both sides of it: masked scores
are set to -inf before the softmax and the pattern is set to 0 after it. In the real net the second
fill is a no-op (softmax already gives 0 there); in the twin it turns the pattern into
mask * Q K^T / sqrt(d_head), so attention becomes the multilinear map (mask * Q K^T / sqrt(d_head)) V
with the real net's 1/sqrt(d_head) normalisation and no 1/T.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from deep_models._init import check_scale, normal_
from deep_models._registry import register_model


class Attention(nn.Module):
    """Causal multi-head self-attention without LayerNorm.

    Attributes:
        q, k, v, o: ``nn.Linear(d_model, d_model)`` (heads stacked along the output dim; o maps the
            concatenated heads back).
        softmax: ``nn.Softmax(dim=-1)``; swapped for ``nn.Identity`` in the linear twin.
        mask: Bool buffer (n_ctx, n_ctx), lower-triangular.
    """

    def __init__(self, d_model: int, n_heads: int, n_ctx: int, bias: bool) -> None:
        """Build the layer.

        Args:
            d_model: Residual width D.
            n_heads: Number of heads H; d_head = D / H.
            n_ctx: Maximum sequence length T.
            bias: Whether q, k, v, o have biases.
        """
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.q, self.k, self.v, self.o = (nn.Linear(d_model, d_model, bias=bias) for _ in range(4))
        self.softmax = nn.Softmax(dim=-1)
        self.register_buffer("mask", torch.ones(n_ctx, n_ctx, dtype=torch.bool).tril(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend.

        Args:
            x: Residual stream, shape (N, T, D).

        Returns:
            Attention output, shape (N, T, D).
        """
        n, t, d = x.shape
        q, k, v = (f(x).view(n, t, self.n_heads, self.d_head).transpose(1, 2) for f in (self.q, self.k, self.v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)  # (N, H, T, T)
        future = ~self.mask[:t, :t]
        pattern = self.softmax(scores.masked_fill(future, float("-inf"))).masked_fill(future, 0.0)
        z = (pattern @ v).transpose(1, 2).reshape(n, t, d)  # (N, T, H * d_head)
        return self.o(z)


class Transformer(nn.Module):
    """Nanda-style one-layer transformer; logits of the last token.

    Attributes:
        embed: ``nn.Embedding(vocab_size, d_model)``.
        pos: Positional embedding, parameter of shape (n_ctx, d_model).
        attn: ``Attention``.
        mlp_in, act, mlp_out: Linear(D, d_mlp), ReLU, Linear(d_mlp, D).
        unembed: Final ``nn.Linear(d_model, out_dim, bias=False)``.
        num_features: d_model.
        num_classes: out_dim.
        output_scale: Multiplier of the logits.
    """

    def __init__(
        self,
        n_ctx: int,
        out_dim: int,
        *,
        vocab_size: int,
        d_model: int = 128,
        n_heads: int = 4,
        d_mlp: int = 512,
        bias: bool = False,
        init_scale: float = 1.0,
        output_scale: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        """Build and initialise the transformer.

        Args:
            n_ctx: Sequence length T of the inputs (positional embeddings are learned for T slots).
            out_dim: Number of output logits.
            vocab_size: Number of input token ids.
            d_model: Residual width, divisible by ``n_heads``.
            n_heads: Number of attention heads.
            d_mlp: Hidden width of the MLP.
            bias: Whether the attention and MLP Linears have (zero-initialised) biases.
            init_scale: Multiplier of every weight's init std, >= 0.
            output_scale: Multiplier of the logits, > 0.
            generator: Source of every init draw.

        Raises:
            ValueError: A knob out of range (the message names it).
        """
        super().__init__()
        for key, val in (("n_ctx", n_ctx), ("vocab_size", vocab_size), ("d_model", d_model), ("n_heads", n_heads)):
            if int(val) < 1:
                raise ValueError(f"{key}={val} must be >= 1")
        if int(d_mlp) < 1:
            raise ValueError(f"d_mlp={d_mlp} must be >= 1")
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.init_scale = check_scale("init_scale", init_scale)
        self.output_scale = check_scale("output_scale", output_scale, positive=True)
        self.vocab_size, self.n_ctx = int(vocab_size), int(n_ctx)
        self.num_classes, self.num_features = int(out_dim), int(d_model)

        self.embed = nn.Embedding(self.vocab_size, d_model)
        self.pos = nn.Parameter(torch.empty(self.n_ctx, d_model))
        self.attn = Attention(d_model, n_heads, self.n_ctx, bias)
        self.mlp_in = nn.Linear(d_model, d_mlp, bias=bias)
        self.act = nn.ReLU()
        self.mlp_out = nn.Linear(d_mlp, d_model, bias=bias)
        self.unembed = nn.Linear(d_model, self.num_classes, bias=False)
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Nanda's init, drawn from ``generator`` in order embed, pos, q, k, v, o, mlp_in, mlp_out, unembed.

        Weights ~ N(0, init_scale^2 / d_model); unembed ~ N(0, init_scale^2 / vocab_size); biases 0.

        Args:
            generator: Source of randomness (``None``: global RNG).
        """
        std = self.init_scale / math.sqrt(self.num_features)
        normal_(self.embed.weight, std, generator)
        normal_(self.pos, std, generator)
        for lin in (self.attn.q, self.attn.k, self.attn.v, self.attn.o, self.mlp_in, self.mlp_out):
            normal_(lin.weight, std, generator)
            if lin.bias is not None:
                lin.bias.zero_()
        normal_(self.unembed.weight, self.init_scale / math.sqrt(self.vocab_size), generator)

    def forward_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """Residual stream at the last token, the input of ``unembed``.

        Args:
            tokens: Token ids, long, shape (N, T) with T <= n_ctx.

        Returns:
            h, shape (N, d_model).
        """
        t = tokens.shape[1]
        if t > self.n_ctx:
            raise ValueError(f"sequence length {t} exceeds n_ctx={self.n_ctx} (input_shape)")
        resid = self.embed(tokens) + self.pos[:t]  # (N, T, D)
        resid = resid + self.attn(resid)
        resid = resid + self.mlp_out(self.act(self.mlp_in(resid)))
        return resid[:, -1]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits of the last token.

        Args:
            tokens: Token ids, long, shape (N, T).

        Returns:
            output_scale * unembed(h), shape (N, out_dim).
        """
        return self.unembed(self.forward_features(tokens)) * self.output_scale

    def get_classifier(self) -> nn.Linear:
        """The unembedding.

        Returns:
            ``unembed``.
        """
        return self.unembed


@register_model
def transformer(
    *,
    input_shape: tuple[int, ...],
    out_dim: int,
    generator: torch.Generator | None = None,
    vocab_size: int | None = None,
    d_model: int = 128,
    n_heads: int = 4,
    d_mlp: int = 512,
    bias: bool = False,
    init_scale: float = 1.0,
    output_scale: float = 1.0,
) -> Transformer:
    """Nanda et al. one-layer transformer; input_shape = (T,) tokens; vocab_size defaults to out_dim + 1."""
    if len(input_shape) != 1:
        raise ValueError(f"input_shape={tuple(input_shape)} must be (T,) token positions for the transformer")
    return Transformer(
        input_shape[0],
        out_dim,
        vocab_size=out_dim + 1 if vocab_size is None else vocab_size,
        d_model=d_model,
        n_heads=n_heads,
        d_mlp=d_mlp,
        bias=bias,
        init_scale=init_scale,
        output_scale=output_scale,
        generator=generator,
    )
