"""tasks/teacher_student.py: the teacher's singular values and the sample correlations (docs/theory.md 2.5, 3.2)."""

from __future__ import annotations

import pytest
import torch

from tasks import TaskError, build

F64 = torch.float64


def test_teacher_singular_values_and_orthonormal_factors(gen) -> None:
    s = [5.0, 3.0, 0.5]
    t = build({"name": "teacher_student", "d_in": 10, "out_dim": 4, "singular_values": s}, generator=gen(0), dtype=F64)
    torch.testing.assert_close(torch.linalg.svdvals(t.meta["teacher"]), torch.tensor([5.0, 3.0, 0.5, 0.0], dtype=F64))
    u, v = t.meta["teacher_u"], t.meta["teacher_v"]
    torch.testing.assert_close(u.T @ u, torch.eye(3, dtype=F64))
    torch.testing.assert_close(v.T @ v, torch.eye(3, dtype=F64))
    torch.testing.assert_close(u @ torch.diag(torch.tensor(s, dtype=F64)) @ v.T, t.meta["teacher"])
    torch.testing.assert_close(t.y_train, t.x_train @ t.meta["teacher"].T)  # noise_std = 0


@pytest.mark.parametrize("method", ["pca", "zca"])
def test_whitened_inputs_give_sigma_yx_with_teacher_singular_values(method, gen) -> None:
    cfg = {
        "name": "teacher_student",
        "d_in": 8,
        "out_dim": 3,
        "singular_values": [3.0, 2.0, 1.0],
        "n_train": 50,
        "input_eigenvalues": [4.0, 1, 1, 1, 1, 1, 1, 0.1],
        "whiten": method,
    }
    t = build(cfg, generator=gen(1), dtype=F64)
    x, y, n = t.x_train, t.y_train, 50
    torch.testing.assert_close(x.T @ x / n, torch.eye(8, dtype=F64), atol=1e-12, rtol=0)
    torch.testing.assert_close(x.mean(0), torch.zeros(8, dtype=F64), atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.svdvals(y.T @ x / n), torch.tensor([3.0, 2.0, 1.0], dtype=F64))
    assert t.meta["whiten"] == method and t.meta["whiten_rank"] == 8


def test_input_covariance_and_noise(gen) -> None:
    eig = [4.0, 1.0, 0.25]
    cfg = {
        "name": "teacher_student",
        "d_in": 3,
        "out_dim": 2,
        "singular_values": [1.0],
        "input_eigenvalues": eig,
        "n_train": 40_000,
        "n_test": 10,
        "noise_std": 0.5,
    }
    t = build(cfg, generator=gen(2), dtype=F64)
    cov = t.x_train.T @ t.x_train / 40_000
    torch.testing.assert_close(cov, torch.diag(torch.tensor(eig, dtype=F64)), atol=0.05, rtol=0.03)
    resid = t.y_train - t.x_train @ t.meta["teacher"].T
    assert abs(resid.std().item() - 0.5) < 0.01
    iso = build({**cfg, "input_eigenvalues": None, "input_variance": 2.0, "n_train": 10_000}, generator=gen(2))
    assert abs(iso.x_train.var().item() - 2.0) < 0.05 and iso.meta["input_eigenvalues"] == [2.0] * 3


BAD = [
    ({"singular_values": [1, 2, 3, 4, 5]}, "task.singular_values has 5 values; a (4 x 16) teacher takes 1 to 4"),
    ({"singular_values": []}, "task.singular_values=[] must be a non-empty list"),
    ({"singular_values": [1, -1]}, "task.singular_values=-1 must be >= 0"),
    ({"input_eigenvalues": [1.0, 2.0]}, "task.input_eigenvalues has 2 values; give exactly task.d_in=16"),
    ({"whiten": "pca", "n_train": 10}, "got n_train=10 < d=16; use task.n_train>=16 or task.whiten=null"),
    ({"whiten": "yes"}, "task.whiten='yes' is not allowed"),
]


@pytest.mark.parametrize(("override", "needle"), BAD, ids=[str(o) for o, _ in BAD])
def test_bad_options(override, needle, gen) -> None:
    with pytest.raises(TaskError) as e:
        build({"name": "teacher_student", **override}, generator=gen(0))
    assert needle in str(e.value)
