"""tasks/whitening.py: docs/theory.md 2.5 recipe, fit on train and applied to test, in float64."""

from __future__ import annotations

import pytest
import torch

from tasks import TaskError, build, whiten
from tasks.whitening import fit_whitener

F64 = torch.float64


def gaussian_task(gen, n: int = 60, d: int = 6):
    cfg = {
        "name": "teacher_student",
        "d_in": d,
        "out_dim": 2,
        "singular_values": [1.0],
        "n_train": n,
        "n_test": 30,
        "input_eigenvalues": [float(4**-i) for i in range(d)],
    }
    return build(cfg, generator=gen(0), dtype=F64)


@pytest.mark.parametrize("method", ["pca", "zca"])
def test_identity_covariance_zero_mean_and_test_map(method, gen) -> None:
    t = gaussian_task(gen)
    w = whiten(t, method)
    x = w.x_train
    torch.testing.assert_close(x.T @ x / 60, torch.eye(6, dtype=F64), atol=1e-12, rtol=0)
    torch.testing.assert_close(x.mean(0), torch.zeros(6, dtype=F64), atol=1e-13, rtol=0)
    # independent reference: thin SVD of the centred train inputs, X_w = sqrt(N) U, test mapped with the same V, S
    mu = t.x_train.mean(0)
    u, s, vh = torch.linalg.svd(t.x_train - mu, full_matrices=False)
    ref_tr = 60**0.5 * u @ (torch.eye(6, dtype=F64) if method == "pca" else vh)
    ref_te = (t.x_test - mu) @ vh.T @ torch.diag(60**0.5 / s) @ (torch.eye(6, dtype=F64) if method == "pca" else vh)
    torch.testing.assert_close(x, ref_tr)
    torch.testing.assert_close(w.x_test, ref_te)
    assert w.meta["whiten"] == method and w.meta["whiten_rank"] == 6
    assert torch.equal(w.y_train, t.y_train) and t.meta.get("whiten") is None  # targets kept, original untouched


def test_rank_deficient_mnist_gives_projector(data_root, gen) -> None:
    t = build(
        {"name": "mnist", "data_root": str(data_root), "n_train": 900, "n_test": 10, "flatten": True},
        generator=gen(0),
        dtype=F64,
    )
    w = whiten(t)
    r = w.meta["whiten_rank"]
    assert r < 784 and r == torch.linalg.matrix_rank(t.x_train - t.x_train.mean(0)).item()
    cov = w.x_train.T @ w.x_train / 900
    proj = torch.diag((torch.arange(784) < r).to(F64))  # pca: I_r then zeros for the null directions
    torch.testing.assert_close(cov, proj, atol=1e-6, rtol=0)  # kept directions go down to s_r/s_1 ~ 1e-8
    torch.testing.assert_close(w.x_train.mean(0), torch.zeros(784, dtype=F64), atol=1e-9, rtol=0)
    assert w.x_train.shape == t.x_train.shape


def test_whiten_option_on_images_keeps_shape(data_root, gen) -> None:
    t = build(
        {
            "name": "mnist",
            "data_root": str(data_root),
            "n_train": 800,
            "n_test": 10,
            "whiten": "zca",
            "input_scale": 2.0,
        },
        generator=gen(0),
        dtype=F64,
    )
    assert t.x_train.shape == (800, 1, 28, 28) and t.meta["whiten"] == "zca"
    x = t.x_train.flatten(1)
    r = t.meta["whiten_rank"]
    assert abs(torch.linalg.eigvalsh(x.T @ x / 800)[-r:] - 4.0).max() < 1e-6  # input_scale after whitening


def test_online_samples_and_probes_are_whitened(gen) -> None:
    t = build({"name": "sparse_parity", "n_test": 200, "n_probe": 8}, generator=gen(0), dtype=F64)
    w = whiten(t)
    fitted = fit_whitener(t.x_train)
    x, y, _ = w.sample(16, gen(1))
    x0, y0, _ = t.sample(16, gen(1))
    torch.testing.assert_close(x, fitted(x0))
    torch.testing.assert_close(y, y0)
    torch.testing.assert_close(w.meta["probes"][2][0], fitted(t.meta["probes"][2][0]))
    assert w.meta["whiten_rank"] == 36  # the control one-hot sums to one: one null direction


def test_errors(gen) -> None:
    with pytest.raises(TaskError, match=r"n_train=4 < d=6; use task.n_train>=6 or task.whiten=null"):
        whiten(gaussian_task(gen, n=4))
    tokens = build({"name": "modular", "p": 5, "encoding": "tokens"}, generator=gen(0))
    with pytest.raises(TaskError, match="needs float inputs"):
        whiten(tokens)
    with pytest.raises(TaskError, match="task.whiten='pcb' is not allowed"):
        whiten(gaussian_task(gen), "pcb")
