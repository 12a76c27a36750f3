"""Modular arithmetic c = a op b mod p, the grokking task (docs/theory.md 6.5).

Power et al. 2022 (arXiv:2201.02177); Nanda et al. 2023 (arXiv:2301.05217).

All pairs (a, b) in [0, p)^2 (b != 0 for division) are split at random into train and test sets. Inputs
are either the 2p-dim concatenation of one-hot(a) and one-hot(b) (for MLPs) or the token sequence
|a|b|=| with "=" = token id p (for the 1-layer Nanda transformer, d_vocab = p + 1). Targets are
target_scale * one-hot(c) (or centred), with labels c.
"""

from __future__ import annotations

from typing import Any

import torch

from tasks.base import (
    Task,
    TaskError,
    base_meta,
    check_choice,
    check_float,
    check_int,
    encode_targets,
    spawn,
    target_out_dim,
)
from tasks.registry import register_task

OPS = ("+", "-", "*", "/")
ENCODINGS = ("onehot", "tokens")


@register_task
def modular(
    *,
    device: torch.device,
    dtype: torch.dtype,
    generator: torch.Generator,
    p: int = 113,
    op: str = "+",
    train_fraction: float = 0.3,
    encoding: str = "onehot",
    target: str = "onehot",
    target_scale: float = 1.0,
) -> Task:
    """All equations a op b = c (mod p), split at random into train and test.

    Defaults follow Nanda et al. (docs/theory.md 6.5): p = 113, a + b, 30% of the pairs for training.

    Args:
        device: Where the tensors live.
        dtype: Float dtype of one-hot inputs and of y (tokens stay long).
        generator: Stream for the split (its first child stream).
        p: Modulus, >= 2; must be prime for "/" (so every nonzero b has an inverse).
        op: "+", "-", "*" or "/" (a * b^{-1}, over b in 1..p-1).
        train_fraction: Fraction of the pairs in the training set, in (0, 1); n_train = floor(fraction * pairs).
        encoding: "onehot": x = [one-hot(a), one-hot(b)], float (N, 2p); "tokens": x = [a, b, p], long (N, 3).
        target: "onehot" (y = S e_c) or "centered_onehot" (y = S (e_c - 1/p)), (N, p).
        target_scale: S > 0.

    Returns:
        Task with labels c, long (N,); meta adds p, op, encoding, vocab_size (p + 1), eq_token (p),
        pairs_train / pairs_test (long (N, 2): a, b), and target.

    Raises:
        TaskError: A bad option, a composite p with op "/", or a split that leaves a side empty.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> t = modular(device=torch.device("cpu"), dtype=torch.float32, generator=g, p=5, op="*")
        >>> t.x_train.shape, t.y_train.shape
        (torch.Size([7, 10]), torch.Size([7, 5]))
    """
    p = check_int("p", p, low=2)
    check_choice("op", op, OPS)
    check_choice("encoding", encoding, ENCODINGS)
    check_choice("target", target, ("onehot", "centered_onehot"))
    target_scale = check_float("target_scale", target_scale, positive=True)
    train_fraction = check_float("train_fraction", train_fraction)
    if not 0.0 < train_fraction < 1.0:
        raise TaskError(f"task.train_fraction={train_fraction} must be in (0, 1), e.g. task.train_fraction=0.3")
    if op == "/" and not is_prime(p):
        raise TaskError(f"task.p={p} is not prime, so op '/' is undefined for some b; use a prime, e.g. task.p=97")

    pairs, c = equation_table(p, op)  # (M, 2), (M,)
    total = pairs.shape[0]
    n_train = int(train_fraction * total)
    if not 1 <= n_train < total:
        raise TaskError(
            f"task.train_fraction={train_fraction} gives {n_train} of {total} pairs for training; "
            f"both splits need at least one pair, so raise or lower task.train_fraction"
        )
    (g_split,) = spawn(generator, 1)
    perm = torch.randperm(total, generator=g_split, device=g_split.device).cpu()
    parts = {"train": perm[:n_train], "test": perm[n_train:]}

    out: dict[str, Any] = {}
    for split, idx in parts.items():
        ab, labels = pairs[idx], c[idx]
        if encoding == "tokens":
            x = torch.cat([ab, torch.full((ab.shape[0], 1), p, dtype=torch.long)], dim=1).to(device)  # (N, 3)
        else:
            one = torch.nn.functional.one_hot(ab, p).to(dtype)  # (N, 2, p)
            x = one.reshape(ab.shape[0], 2 * p).to(device)
        y = encode_targets(labels, p, target, target_scale, dtype).to(device)
        out[split] = (x, y, labels.to(device), ab.to(device))

    meta = base_meta(
        input_shape=tuple(out["train"][0].shape[1:]),
        out_dim=target_out_dim(target, p),
        num_classes=p,
        target_scale=target_scale,
        n_train=n_train,
        n_test=total - n_train,
        p=p,
        op=op,
        encoding=encoding,
        vocab_size=p + 1,
        eq_token=p,
        target=target,
        pairs_train=out["train"][3],
        pairs_test=out["test"][3],
    )
    return Task(
        name="modular",
        x_train=out["train"][0],
        y_train=out["train"][1],
        x_test=out["test"][0],
        y_test=out["test"][1],
        labels_train=out["train"][2],
        labels_test=out["test"][2],
        meta=meta,
    )


def equation_table(p: int, op: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Every pair and its answer, in row-major (a, b) order.

    Args:
        p: Modulus (prime when op is "/").
        op: "+", "-", "*" or "/".

    Returns:
        pairs, long (M, 2) with columns a, b (M = p^2, or p (p - 1) for "/"), and c = a op b mod p, long (M,).
    """
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.flatten(), b.flatten()
    if op == "/":
        keep = b != 0
        a, b = a[keep], b[keep]
        inv = torch.tensor([pow(int(v), p - 2, p) for v in range(p)])  # Fermat: b^{p-2} = b^{-1} mod prime p
        c = (a * inv[b]) % p
    elif op == "+":
        c = (a + b) % p
    elif op == "-":
        c = (a - b) % p  # torch's % is floored, so this is in [0, p)
    else:
        c = (a * b) % p
    return torch.stack([a, b], dim=1), c


def is_prime(n: int) -> bool:
    """True when n is a prime (trial division; n is a modulus of at most a few thousand)."""
    if n < 2:
        return False
    return all(n % k for k in range(2, int(n**0.5) + 1))
