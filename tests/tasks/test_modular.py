"""tasks/modular.py against a brute-force table (docs/theory.md 6.5)."""

from __future__ import annotations

import pytest
import torch

from tasks import TaskError, build
from tasks.modular import is_prime


def brute(p: int, op: str) -> dict[tuple[int, int], int]:
    table = {}
    for a in range(p):
        for b in range(p):
            if op == "+":
                table[a, b] = (a + b) % p
            elif op == "-":
                table[a, b] = (a - b) % p
            elif op == "*":
                table[a, b] = (a * b) % p
            elif b:
                table[a, b] = next(c for c in range(p) if (c * b) % p == a)  # a / b: the c with c * b = a
    return table


@pytest.mark.parametrize("op", ["+", "-", "*", "/"])
@pytest.mark.parametrize("p", [5, 11])
def test_matches_brute_force_and_partitions_the_table(op, p, gen) -> None:
    t = build({"name": "modular", "p": p, "op": op, "train_fraction": 0.5}, generator=gen(0))
    table = brute(p, op)
    seen = []
    for x, labels in ((t.x_train, t.labels_train), (t.x_test, t.labels_test)):
        a, b = x[:, :p].argmax(1), x[:, p:].argmax(1)  # decode the 2p one-hot
        assert (x.sum(1) == 2).all()
        for ai, bi, c in zip(a.tolist(), b.tolist(), labels.tolist(), strict=True):
            assert table[ai, bi] == c
            seen.append((ai, bi))
    assert sorted(seen) == sorted(table)  # every pair exactly once, over train + test
    assert t.meta["n_train"] == len(table) // 2 and t.meta["n_train"] + t.meta["n_test"] == len(table)


def test_tokens_and_targets(gen) -> None:
    t = build(
        {"name": "modular", "p": 7, "encoding": "tokens", "target": "centered_onehot", "target_scale": 2.0},
        generator=gen(0),
        dtype=torch.float64,
    )
    assert t.x_train.dtype == torch.long and t.x_train.shape[1] == 3 and (t.x_train[:, 2] == 7).all()
    assert t.meta["vocab_size"] == 8 and t.meta["eq_token"] == 7 and t.meta["input_shape"] == (3,)
    assert torch.equal(t.x_train[:, :2], t.meta["pairs_train"])
    ref = 2.0 * (torch.nn.functional.one_hot(t.labels_train, 7).double() - 1 / 7)
    torch.testing.assert_close(t.y_train, ref)
    assert torch.equal((t.x_train[:, 0] + t.x_train[:, 1]) % 7, t.labels_train)


def test_split_is_seeded(gen) -> None:
    a, b, c = (build({"name": "modular", "p": 13}, generator=gen(s)) for s in (0, 0, 1))
    assert torch.equal(a.meta["pairs_train"], b.meta["pairs_train"])
    assert not torch.equal(a.meta["pairs_train"], c.meta["pairs_train"])


def test_prime_check() -> None:
    assert [n for n in range(30) if is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]


BAD = [
    ({"p": 9, "op": "/"}, "task.p=9 is not prime, so op '/' is undefined"),
    ({"op": "%"}, "task.op='%' is not allowed"),
    ({"train_fraction": 1.0}, "task.train_fraction=1.0 must be in (0, 1)"),
    ({"p": 3, "train_fraction": 0.05}, "gives 0 of 9 pairs for training"),
    ({"encoding": "bits"}, "task.encoding='bits' is not allowed"),
    ({"target": "label"}, "task.target='label' is not allowed"),
]


@pytest.mark.parametrize(("override", "needle"), BAD, ids=[str(o) for o, _ in BAD])
def test_bad_options(override, needle, gen) -> None:
    with pytest.raises(TaskError) as e:
        build({"name": "modular", **override}, generator=gen(0))
    assert needle in str(e.value)
