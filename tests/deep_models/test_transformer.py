"""Nanda-style one-layer transformer: shapes, init, attention against an independent reference (docs/theory.md 6.5)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from deep_models import create_model, linear_twin

P = 7  # small modulus: vocab p + 1, out p


def make(seed: int = 0, **kw) -> nn.Module:
    kw = {"d_model": 16, "n_heads": 2, "d_mlp": 24} | kw
    return create_model("transformer", input_shape=(3,), out_dim=P, generator=torch.Generator().manual_seed(seed), **kw)


def tokens(n: int = 5, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, P + 1, (n, 3), generator=torch.Generator().manual_seed(seed))


def reference(net: nn.Module, tok: torch.Tensor, softmax: bool) -> torch.Tensor:
    """Logits from the raw weights, head by head, in float64 (independent of the module code)."""
    dd = lambda t: t.detach().double()  # noqa: E731
    att = net.attn
    x = dd(net.embed.weight)[tok] + dd(net.pos)[: tok.shape[1]]  # (N, T, D)
    n, t, d = x.shape
    dh = d // att.n_heads
    heads = []
    for h in range(att.n_heads):
        rows = slice(h * dh, (h + 1) * dh)
        q, k, v = (x @ dd(lin.weight)[rows].T for lin in (att.q, att.k, att.v))  # (N, T, dh)
        s = torch.einsum("nid,njd->nij", q, k) / math.sqrt(dh)
        causal = torch.tril(torch.ones(t, t, dtype=torch.bool))
        pat = torch.where(causal, s, -torch.inf).softmax(-1) if softmax else torch.where(causal, s, 0.0)
        heads.append(torch.einsum("nij,njd->nid", pat, v))
    x = x + torch.cat(heads, -1) @ dd(att.o.weight).T
    hid = x @ dd(net.mlp_in.weight).T
    x = x + (hid.relu() if softmax else hid) @ dd(net.mlp_out.weight).T
    return x[:, -1] @ dd(net.unembed.weight).T * net.output_scale


def test_shapes_and_nanda_defaults() -> None:
    net = create_model("transformer", input_shape=(3,), out_dim=113, generator=torch.Generator().manual_seed(0))
    assert net.embed.num_embeddings == 114 and net.pos.shape == (3, 128)  # d_vocab p + 1 (docs/theory.md 6.5)
    assert (net.attn.n_heads, net.attn.d_head, net.mlp_in.out_features) == (4, 32, 512)
    assert net.unembed.weight.shape == (113, 128) and net.unembed.bias is None
    assert not any(isinstance(m, nn.LayerNorm) for m in net.modules())
    assert all("bias" not in n for n, _ in net.named_parameters())
    assert net.num_features == 128 and net(torch.zeros(2, 3, dtype=torch.long)).shape == (2, 113)


def test_vocab_size_kwarg() -> None:
    assert make(vocab_size=50).embed.num_embeddings == 50


@pytest.mark.parametrize("role", ["real", "twin"])
def test_logits_match_independent_reference(role: str) -> None:
    real = make(output_scale=0.5)
    net = real if role == "real" else linear_twin(real)
    tok = tokens()
    torch.testing.assert_close(net.double()(tok), reference(net, tok, softmax=role == "real"), rtol=1e-10, atol=1e-12)


def test_twin_swaps_softmax_and_relu_only() -> None:
    twin = linear_twin(make())
    assert isinstance(twin.attn.softmax, nn.Identity) and isinstance(twin.act, nn.Identity)


@pytest.mark.parametrize("role", ["real", "twin"])
def test_attention_is_causal(role: str) -> None:
    net = make() if role == "real" else linear_twin(make())
    x = torch.randn(2, 3, 16, generator=torch.Generator().manual_seed(0))
    y = x.clone()
    y[:, 1:] += 1.0  # change the future of position 0
    assert torch.equal(net.attn(x)[:, 0], net.attn(y)[:, 0])
    assert not torch.equal(net.attn(x)[:, 2], net.attn(y)[:, 2])


def test_features_are_the_last_residual_stream() -> None:
    net = make()
    tok = tokens()
    torch.testing.assert_close(net(tok), net.unembed(net.forward_features(tok)))


@pytest.mark.parametrize("init_scale", [1.0, 3.0])
def test_init_std(init_scale: float) -> None:
    net = make(d_model=64, d_mlp=256, init_scale=init_scale, vocab_size=200)
    for w in (net.attn.q.weight, net.mlp_in.weight, net.mlp_out.weight, net.embed.weight):
        assert abs(w.std().item() / (init_scale / 8.0) - 1) < 0.03  # 1/sqrt(d_model) = 1/8
    assert abs(net.unembed.weight.std().item() / (init_scale / math.sqrt(200)) - 1) < 0.06  # 448 draws


def test_bias_true_adds_zero_biases() -> None:
    net = make(bias=True)
    biases = [p for n, p in net.named_parameters() if n.endswith("bias")]
    assert len(biases) == 6 and all(torch.equal(b, torch.zeros_like(b)) for b in biases)


def test_sequence_longer_than_context_raises() -> None:
    with pytest.raises(ValueError, match="sequence length 4 exceeds n_ctx=3"):
        make()(torch.zeros(1, 4, dtype=torch.long))


BAD = [
    (dict(d_model=10, n_heads=3), "d_model=10 must be divisible by n_heads=3"),
    (dict(vocab_size=0), "vocab_size=0 must be >= 1"),
    (dict(d_mlp=0), "d_mlp=0 must be >= 1"),
    (dict(init_scale=float("nan")), "init_scale=nan must be finite"),
]


@pytest.mark.parametrize(("kw", "needle"), BAD, ids=[str(k) for k, _ in BAD])
def test_bad_kwargs(kw: dict, needle: str) -> None:
    with pytest.raises(ValueError) as err:
        make(**kw)
    assert needle in str(err.value)


def test_token_input_shape_required() -> None:
    with pytest.raises(ValueError, match=r"must be \(T,\) token positions"):
        create_model("transformer", input_shape=(3, 4), out_dim=P)
