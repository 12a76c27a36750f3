"""tasks/sparse_parity.py: docs/theory.md 4.1 labels and frequencies, 4.8 probes, the shuffled negative control."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from tasks import TaskError, build

SMALL = {"name": "sparse_parity", "n_test": 64, "n_probe": 32}


def check_targets(x: torch.Tensor, y: torch.Tensor, skills: torch.Tensor, subsets: list[list[int]], n_s: int, s: float):
    """Independent reference: y = S (2 (sum of the skill's bits mod 2) - 1), read bit by bit in numpy."""
    xn, yn = x.numpy(), y.numpy()[:, 0]
    for row, target, k in zip(xn, yn, skills.tolist(), strict=True):
        bits = row[n_s:]
        parity = int(sum(bits[j] for j in subsets[k])) % 2
        assert target == s * (2 * parity - 1)


def test_published_defaults_shapes_and_p(gen) -> None:
    t = build(SMALL, generator=gen(0))
    assert t.online and t.meta["n_train"] is None and t.x_train.shape == (64, 37) and t.y_train.shape == (64, 1)
    assert t.meta["input_shape"] == (37,) and t.meta["out_dim"] == 1 and t.meta["num_classes"] is None
    np.testing.assert_allclose(t.meta["p"], [0.5927, 0.1955, 0.1022, 0.0645, 0.0451], atol=1e-4)  # docs/theory.md 4.1
    assert t.meta["S"] == t.meta["target_scale"] == 5.0 and t.meta["n_skills"] == 5
    bits = sum(t.meta["skill_bits"], [])
    assert len(bits) == len(set(bits)) == 15 and all(0 <= b < 32 for b in bits)  # disjoint subsets
    assert set(t.x_train.unique().tolist()) == {0.0, 1.0}


def test_labels_are_parities_of_the_right_bits(gen) -> None:
    t = build({**SMALL, "n_train": 500}, generator=gen(1))
    assert not t.online
    sub, k_tr = t.meta["skill_bits"], t.meta["skills_train"]
    assert torch.equal(t.x_train[:, :5].argmax(1), k_tr)  # control one-hot = the skill that sets y
    assert (t.x_train[:, :5].sum(1) == 1).all()
    check_targets(t.x_train, t.y_train, k_tr, sub, 5, 5.0)
    check_targets(t.x_test, t.y_test, t.meta["skills_test"], sub, 5, 5.0)
    x, y, labels = build(SMALL, generator=gen(1)).sample(300, gen(2))
    assert labels is None
    check_targets(x, y, x[:, :5].argmax(1), sub, 5, 5.0)  # same seed -> same subsets in online mode


def test_skill_frequencies_chi_square(gen) -> None:
    t = build(SMALL, generator=gen(2))
    x, _, _ = t.sample(100_000, gen(3))
    counts = x[:, :5].sum(0).numpy()
    expected = 100_000 * np.asarray(t.meta["p"])
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < stats.chi2.ppf(1 - 1e-4, df=4), (counts, expected)
    bits = x[:, 5:].mean(0).numpy()
    assert np.abs(bits - 0.5).max() < 5 * 0.5 / np.sqrt(100_000)  # uniform skill bits


def test_other_exponent_and_sizes(gen) -> None:
    t = build(
        {**SMALL, "n_bits": 12, "n_skills": 3, "bits_per_skill": 4, "exponent": 0.0, "target_scale": 1.5},
        generator=gen(0),
    )
    np.testing.assert_allclose(t.meta["p"], [1 / 3] * 3)
    assert sorted(sum(t.meta["skill_bits"], [])) == list(range(12)) and t.x_train.shape[1] == 15
    assert set(t.y_test[:, 0].tolist()) == {-1.5, 1.5}


def test_probes_are_per_skill_and_fixed(gen) -> None:
    t = build(SMALL, generator=gen(4))
    t2 = build({**SMALL, "n_train": 100}, generator=gen(4))  # n_train does not move the probes
    assert len(t.meta["probes"]) == 5
    for k, (xk, gk) in enumerate(t.meta["probes"]):
        assert xk.shape == (32, 37) and gk.shape == (32,)
        assert (xk[:, k] == 1).all() and (xk[:, :5].sum(1) == 1).all()
        check_targets(xk, 5.0 * gk[:, None], torch.full((32,), k), t.meta["skill_bits"], 5, 5.0)
        assert torch.equal(xk, t2.meta["probes"][k][0])


def test_online_samples_are_fresh_and_seeded(gen) -> None:
    t = build(SMALL, generator=gen(0))
    a, b = t.sample(64, gen(5)), t.sample(64, gen(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    g = gen(5)
    first, second = t.sample(64, g), t.sample(64, g)
    assert not torch.equal(first[0], second[0])


def test_shuffled_control_carries_no_skill_information(gen) -> None:
    """Negative control: the control index is independent of the skill that sets the target."""
    n = 20_000
    t = build({**SMALL, "n_train": n, "shuffle_control": True}, generator=gen(6))
    assert t.meta["shuffle_control"] is True
    control, k = t.x_train[:, :5].argmax(1), t.meta["skills_train"]
    check_targets(t.x_train, t.y_train, k, t.meta["skill_bits"], 5, 5.0)  # targets still follow the true skill
    table = torch.zeros(5, 5)
    table.index_put_((control, k), torch.ones(n), accumulate=True)
    _, pval, _, _ = stats.chi2_contingency(table.numpy())
    assert pval > 1e-4  # independence not rejected
    assert (control == k).float().mean() < 0.5  # unshuffled it is exactly 1
    probe_x, _ = t.meta["probes"][4]
    assert (probe_x[:, 4] == 1).float().mean() < 0.2  # probes follow the same shuffled process


BAD = [
    ({"n_bits": 14}, "task.n_bits=14 must be >= 15; disjoint subsets need n_skills * bits_per_skill = 15"),
    ({"n_train": 0}, "task.n_train=0 must be >= 1; or leave task.n_train unset for online training"),
    ({"exponent": -1}, "task.exponent=-1 must be >= 0"),
    ({"shuffle_control": 1}, "task.shuffle_control=1 must be true or false"),
]


@pytest.mark.parametrize(("override", "needle"), BAD, ids=[str(o) for o, _ in BAD])
def test_bad_options(override, needle, gen) -> None:
    with pytest.raises(TaskError) as e:
        build({**SMALL, **override}, generator=gen(0))
    assert needle in str(e.value)
