"""The shared curve and weight metrics (comparisons/engine/metrics.py), on inputs with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from comparisons.engine.metrics import effective_rank, first_crossing, relative_change


def test_first_crossing_conventions() -> None:
    steps = np.array([0.0, 100.0, 200.0, 300.0])
    y = np.array([0.0, 0.2, 0.6, 1.0])
    assert first_crossing(steps, y, 0.5) == 200.0  # "none": the first eval step at or above the level
    assert first_crossing(steps, y, 0.5, "linear") == pytest.approx(175.0)  # 100 + (0.3 / 0.4) 100
    t = np.array([1.0, 10.0, 100.0])
    assert first_crossing(t, np.array([0.0, 0.0, 1.0]), 0.5, "log") == pytest.approx(math.sqrt(10) * 10)
    assert first_crossing(np.array([0.0, 4.0]), np.array([0.0, 1.0]), 0.5, "log") == 4.0  # log(0): falls back
    for interp in ("none", "linear", "log"):
        assert first_crossing(steps, np.array([0.7, 0.8, 0.9, 1.0]), 0.5, interp) == 0.0  # starts above
        assert math.isnan(first_crossing(steps, np.array([0.0, 0.1, 0.2, 0.3]), 0.5, interp))  # never
        assert first_crossing(steps[:3], np.array([np.nan, 0.2, 0.3]), 0.25, "none") == 200.0  # NaN never counts
    with pytest.raises(ValueError, match="interp"):
        first_crossing(steps, y, 0.5, "cubic")


def test_relative_change_pooled_and_undefined() -> None:
    assert relative_change(np.array([3.0, 4.0]), np.array([0.0, 5.0])) == pytest.approx(math.sqrt(10) / 5)
    w0 = [torch.ones(2, 2), torch.ones(3)]
    assert relative_change([2 * w0[0], w0[1]], w0) == pytest.approx(2.0 / math.sqrt(7.0))  # norms pooled
    assert math.isnan(relative_change(np.zeros(3), np.zeros(3)))  # W(0) = 0: undefined, never 0 or inf


def test_effective_rank_known_spectra() -> None:
    assert effective_rank(np.outer([1.0, 2.0, 3.0], [1.0, -1.0])) == pytest.approx(1.0)
    assert effective_rank(torch.eye(4)) == pytest.approx(4.0)
    assert effective_rank(np.ones((2, 3, 3, 3))) == pytest.approx(1.0)  # conv kernels are flattened
    two = np.diag([1.0, 1.0, 0.0])
    assert effective_rank(two) == pytest.approx(2.0)
    assert math.isnan(effective_rank(np.zeros((3, 3))))
