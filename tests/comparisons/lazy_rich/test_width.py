"""The lazy/rich width axis (comparisons/lazy_rich/width.py, docs/theory.md 5.6): slopes on constructed power laws,
permutation nulls, the output-scale flow equivalence the theory relies on, and a small end-to-end run."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from comparisons.engine.ntk import empirical_ntk, kernel_distance
from comparisons.lazy_rich.width import point_width, score_width, slope, width_table

WIDTHS = [16, 32, 64, 128, 256, 512]


def _curves(kd: dict[str, list[float]]) -> tuple[pd.DataFrame, dict[str, dict]]:
    points = {f"width={w},output_scale={w**-0.5:g}": {"model": {"width": w, "output_scale": w**-0.5}} for w in WIDTHS}
    rows = []
    for voice, values in kd.items():
        for label, v in zip(points, values, strict=True):
            rows += [
                {"member": f"{voice}:{label}", "step": 0, "metric": "kd", "value": 0.0},
                {"member": f"{voice}:{label}", "step": 100, "metric": "kd", "value": v},
                {"member": f"{voice}:{label}", "step": 100, "metric": "rwc", "value": 2 * v**0.5},
            ]
    return pd.DataFrame(rows), points


def test_slope_of_a_power_law_is_its_exponent() -> None:
    w = np.asarray(WIDTHS, dtype=np.float64)
    assert slope(w, 3.0 * w**-0.7) == pytest.approx(-0.7, abs=1e-12)
    assert math.isnan(slope(w, np.full(6, np.nan)))
    assert slope(w[:3], np.array([0.0, 1e-2, 1e-3])) == pytest.approx(
        -math.log10(10) / math.log10(2)
    )  # KD = 0 left out


def test_point_width_reads_plain_and_zipped_axes() -> None:
    assert point_width({"model.width": 64}, "model.width") == 64.0
    assert point_width({"model": {"width": 32, "output_scale": 0.2}}, "model.width") == 32.0
    with pytest.raises(KeyError):
        point_width({"optim.lr": 0.1}, "model.width")


def test_scores_nulls_and_control_on_constructed_power_laws() -> None:
    w = np.asarray(WIDTHS, dtype=np.float64)
    curves, points = _curves({"real": list(0.5 * w**-1.0), "twin": list(0.1 * w**-1.5), "theory": list(0.1 * w**-1.5)})
    table = width_table(curves, points, "model.width")
    assert table["width"].tolist() == WIDTHS and np.allclose(table["rwc_real"], 2 * (0.5 * w**-1.0) ** 0.5)
    out = score_width(curves, points, {"width_key": "model.width", "agree_slope_gap": 0.25})
    s = out.scores
    assert s["kd_width_slope_real"] == pytest.approx(-1.0) and s["kd_width_slope_theory"] == pytest.approx(-1.5)
    assert s["theory_vs_real_slope_gap"] == pytest.approx(0.5) and s["kd_width_spearman_real"] == pytest.approx(-1.0)
    assert s["rwc_width_slope_real"] == pytest.approx(-0.5)
    null = np.asarray(out.nulls["kd_width_slope_real"])
    assert len(null) == math.factorial(6) and null.min() == pytest.approx(-1.0) and abs(null.mean()) < 1e-12
    assert out.criteria == {"kd_width_slope_real": ("<", 0.0), "theory_vs_real_slope_gap": ("<=", 0.25)}
    control = out.negative_controls["theory:width_reversed"]
    assert control["score"] == pytest.approx(2.5) and control["rejected"]


def test_output_scaled_two_layer_flow_is_the_plain_flow_of_rescaled_weights() -> None:
    """GD on f = s W2 W1 x (params W1, W2; tiny steps, float64) against linear_models.two_layer.predictor of
    (sqrt(s) W1, sqrt(s) W2) at time s t, the coordinates lazy_rich.predict uses: the same KD of the model's own NTK."""
    from deep_models import create_model
    from linear_models import two_layer

    g = torch.Generator().manual_seed(0)
    n, d, c, h, s, lr, steps = 32, 4, 2, 8, 0.3, 2e-3, 1500
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = x @ torch.randn(d, c, generator=g, dtype=torch.float64)
    model = create_model(
        "mlp",
        input_shape=(d,),
        out_dim=c,
        generator=g,
        depth=2,
        width=h,
        activation="identity",
        bias=False,
        init="normal",
        init_scale=1.0,
        output_scale=s,
    ).double()
    w1, w2 = (p.detach().numpy().copy() for p in model.parameters())
    k0 = empirical_ntk(model, x)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * (model(x) - y).pow(2).sum() / n).backward()
        opt.step()
    kd_gd = kernel_distance(k0, empirical_ntk(model, x))
    r = math.sqrt(s)
    kd_flow = float(
        two_layer.predictor(r * w1, r * w2, x.numpy(), y.numpy(), method="ode")(np.array([s * lr * steps]))["kd"][0]
    )
    assert kd_gd > 1e-3  # the kernel moved: the check is not 0 == 0
    assert kd_flow == pytest.approx(kd_gd, rel=0.02)
    naive = float(two_layer.predictor(w1, s * w2, x.numpy(), y.numpy(), method="ode")(np.array([lr * steps]))["kd"][0])
    assert abs(naive - kd_gd) > 0.1 * kd_gd  # treating s W2 as a free parameter would be wrong


def test_width_axis_end_to_end(tmp_path) -> None:
    """A short lazy_rich_width run (4 widths, 16x): KD falls with width for every voice, and the theory follows the
    twin it models width by width."""
    from comparisons.engine.run import run
    from tests.conftest import compose_cfg

    grid = "[{width:16,output_scale:0.25},{width:32,output_scale:0.1767766953},{width:64,output_scale:0.125},"
    grid += "{width:256,output_scale:0.0625}]"
    cfg = compose_cfg(
        [
            "experiment=lazy_rich_width",
            f"paths.run_dir={tmp_path / 'w'}",
            "train.progress=off",
            "train.steps=300",
            f"sweep.grid.model={grid}",
        ]
    )
    out = run(cfg)
    s = out["scores"]
    assert s["kd_width_slope_real"] < 0 and s["kd_width_slope_twin"] < 0 and s["kd_width_slope_theory"] < 0
    assert s["kd_width_slope_theory"] == pytest.approx(s["kd_width_slope_twin"], abs=0.15)
    table = width_table(pd.read_csv(tmp_path / "w" / "curves.csv"), out["points"], "model.width")
    assert np.allclose(table["theory"], table["twin"], rtol=0.3)
    assert (tmp_path / "w" / "figures" / "lazy_rich_width.png").stat().st_size > 0
