import ast
import sys
from pathlib import Path

import numpy as np
import pytest

import linear_models
from linear_models import Trajectory, diagonal, two_layer
from linear_models._types import as_f64, record_steps_array, times_array

PKG = Path(linear_models.__file__).parent


def test_trajectory_checks_shapes_and_diffs():
    tr = Trajectory(np.array([0.0, 1.0]), {"s": np.array([[1.0, 2.0], [3.0, 4.0]])})
    assert "s" in tr and list(tr.keys()) == ["s"] and tr.step is None
    other = Trajectory(np.array([0.0, 1.0]), {"s": np.array([[1.0, 2.0], [3.0, 5.0]]), "x": np.zeros(2)})
    assert tr.max_error(other) == {"s": 1.0}
    assert tr.max_error(other, relative=True) == {"s": pytest.approx(0.2)}
    with pytest.raises(ValueError, match="leading axis"):
        Trajectory(np.array([0.0, 1.0]), {"s": np.zeros(3)})
    with pytest.raises(ValueError, match="same time grid"):
        tr.max_error(Trajectory(np.array([0.0, 2.0]), {"s": np.zeros((2, 2))}))


def test_record_steps_and_times():
    np.testing.assert_array_equal(record_steps_array(None, 3), [0, 1, 2, 3])
    np.testing.assert_array_equal(record_steps_array(4, 10), [0, 4, 8, 10])
    np.testing.assert_array_equal(record_steps_array([5, 0, 5], 10), [0, 5])
    with pytest.raises(ValueError, match="record_steps"):
        record_steps_array([11], 10)
    with pytest.raises(ValueError, match=">= 0"):
        times_array([-1.0])
    sim = diagonal.simulate(0.1, 0.1, 1.0, lr=0.01, steps=10, record_steps=[0, 7])
    np.testing.assert_array_equal(sim.step, [0, 7])
    np.testing.assert_allclose(sim.t, [0.0, 0.07])


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    x = torch.randn(3, 2, dtype=torch.float32, requires_grad=True)
    out = as_f64(x)
    assert out.dtype == np.float64 and out.shape == (3, 2)
    w1, w2 = torch.randn(2, 2), torch.randn(2, 2)
    np.testing.assert_allclose(two_layer.ntk_two_layer(w1, w2, x), two_layer.ntk_two_layer(w1.numpy(), w2.numpy(), out))


def test_package_imports_only_numpy_scipy_torch_and_itself():
    allowed = {"numpy", "scipy", "torch", "linear_models", "__future__"} | set(sys.stdlib_module_names)
    bad = {}
    for path in PKG.rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
        if names - allowed:
            bad[path.name] = names - allowed
    assert not bad, f"linear_models imports outside numpy/scipy/torch: {bad}"


def test_every_family_has_simulate_and_predictor():
    from linear_models import deep_linear, grokking, skills, ufm

    for mod in (diagonal, deep_linear, two_layer, ufm, skills, grokking):
        assert callable(mod.simulate) and callable(mod.predictor), mod.__name__
