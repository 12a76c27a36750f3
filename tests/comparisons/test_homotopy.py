"""The twin-to-real homotopy: the ``model.nonlinearity_strength`` knob end to end, and ``experiment=homotopy``'s
agreement curves and half-way strengths (comparisons/homotopy.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from comparisons.engine import rundir
from comparisons.engine.config import ConfigError
from comparisons.engine.loop import train_members
from comparisons.engine.members import Context, streams
from comparisons.engine.run import run
from comparisons.engine.sweep import build_members
from comparisons.engine.vectorized import plan
from comparisons.homotopy import agreement_curve, crossing, format_half_way, half_way, run_homotopy, strengths_of
from tests.conftest import compose_cfg

KEYS = ["member", "step", "metric"]
SMALL = [  # a 2-layer ReLU MLP on modular addition mod 7, 20 Adam steps
    "phenomenon=grokking",
    "task.p=7",
    "model.width=16",
    "optim=adamw",
    "train.steps=20",
    "train.eval_points=5",
    "train.progress=off",
    "train.checkpoint_every=0",
]


def _ctx(cfg, tmp_path) -> Context:
    return Context(cfg=cfg, device=torch.device("cpu"), dtype=torch.float32, run_dir=tmp_path, streams=streams(0))


def _curves(overrides: list[str], tmp_path) -> pd.DataFrame:
    cfg = compose_cfg([*SMALL, *overrides, f"paths.runs_root={tmp_path}"])
    ctx = _ctx(cfg, tmp_path)
    return pd.DataFrame(train_members(build_members(cfg, ctx), ctx))


# --- the knob ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["1.5", "-0.1", "nan", "inf", "abc", "true"])
def test_a_strength_outside_the_unit_interval_is_one_config_error(bad: str) -> None:
    for override in (f"model.nonlinearity_strength={bad}", f"sweep.grid={{model.nonlinearity_strength:[0.5,{bad}]}}"):
        with pytest.raises(ConfigError) as err:
            compose_cfg(["experiment=smoke", override])
        msg = str(err.value)
        assert "\n" not in msg and "model.nonlinearity_strength" in msg and "[0, 1]" in msg


@pytest.mark.parametrize("good", ["0", "0.5", "1", "1.0"])
def test_a_strength_in_the_unit_interval_composes(good: str) -> None:
    assert float(
        compose_cfg(["experiment=smoke", f"model.nonlinearity_strength={good}"]).model["nonlinearity_strength"]
    ) == float(good)


def test_every_model_config_has_the_knob_at_one() -> None:
    for model in ("mlp", "resnet_small", "resnet18_cifar", "transformer"):
        assert compose_cfg([f"model={model}"]).model["nonlinearity_strength"] == 1.0


def test_the_real_member_at_strength_s_starts_from_the_twins_weights(tmp_path) -> None:
    cfg = compose_cfg([*SMALL, "model.nonlinearity_strength=0.3"])
    real, twin = build_members(cfg, _ctx(cfg, tmp_path))
    acts = [m for m in real.model.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == 1 and acts[0].negative_slope == pytest.approx(0.7)  # relu -> leaky relu of slope 1 - s
    assert not any(isinstance(m, (nn.ReLU, nn.LeakyReLU)) for m in twin.model.modules())
    for (n1, p1), (n2, p2) in zip(real.model.named_parameters(), twin.model.named_parameters(), strict=True):
        assert n1 == n2 and torch.equal(p1, p2) and p1.data_ptr() != p2.data_ptr()


def test_members_of_different_strengths_are_not_batched_as_one_and_equal_the_loop(tmp_path) -> None:
    grid = "sweep.grid={model.nonlinearity_strength:[0.3,0.7]}"
    cfg = compose_cfg([*SMALL, grid, "sweep.vectorize=true"])
    members = build_members(cfg, _ctx(cfg, tmp_path))
    groups, why = plan(members, cfg)
    assert groups is not None, why
    names = [[members[i].name for i in g] for g in groups]
    assert not any({"real:nonlinearity_strength=0.3", "real:nonlinearity_strength=0.7"} <= set(g) for g in names)
    vec = _curves([grid, "sweep.vectorize=true"], tmp_path)
    loop = _curves([grid, "sweep.vectorize=false"], tmp_path)
    m = vec.merge(loop, on=KEYS, suffixes=("_v", "_l"), validate="one_to_one")
    assert len(m) == len(vec) == len(loop) > 0
    np.testing.assert_allclose(m["value_v"], m["value_l"], rtol=2e-4, atol=2e-5)
    loss = vec[vec.metric == "train_loss"].set_index(["member", "step"])["value"]
    a, b = loss.loc["real:nonlinearity_strength=0.3"], loss.loc["real:nonlinearity_strength=0.7"]
    assert a.iloc[0] != b.iloc[0] and not np.allclose(a.to_numpy()[1:], b.to_numpy()[1:], rtol=1e-3)
    # the twins of both points are the same network on the same data: the same curves
    t3, t7 = loss.loc["twin:nonlinearity_strength=0.3"], loss.loc["twin:nonlinearity_strength=0.7"]
    np.testing.assert_allclose(t3.to_numpy(), t7.to_numpy(), rtol=1e-6)


def _observed(run_dir) -> pd.DataFrame:
    c = pd.read_csv(run_dir / "curves.csv")
    return c[c.member.isin(["real", "twin"])].set_index(["member", "metric", "step"])["value"].sort_index()


def test_strength_zero_is_the_twin_and_one_the_real_network_end_to_end(tmp_path) -> None:
    dirs = {}
    for tag, extra in {
        "zero": ["model.nonlinearity_strength=0"],
        "one": [],
        "absent": ["~model.nonlinearity_strength"],
    }.items():
        cfg = compose_cfg(["experiment=smoke", "train.progress=off", f"paths.run_dir={tmp_path / tag}", *extra])
        run(cfg)
        dirs[tag] = _observed(tmp_path / tag)
    zero, one, absent = dirs["zero"], dirs["one"], dirs["absent"]
    pd.testing.assert_series_equal(one, absent)  # the default is the real network
    pd.testing.assert_series_equal(zero.loc["twin"], one.loc["twin"])  # the twin does not move with the knob
    # at strength 0 the "real" member is the twin: its curves are the twin's, exactly
    metrics = sorted(set(zero.loc["real"].index.get_level_values(0)) & set(zero.loc["twin"].index.get_level_values(0)))
    assert "train_loss" in metrics
    for metric in metrics:
        np.testing.assert_array_equal(zero.loc[("real", metric)].to_numpy(), one.loc[("twin", metric)].to_numpy())
    # and at strength 1 it is the real network, which is not the twin
    r0, r1 = zero.loc[("real", "train_loss")].to_numpy(), one.loc[("real", "train_loss")].to_numpy()
    assert not np.allclose(r0[1:], r1[1:])


# --- half-way strengths -------------------------------------------------------------------------------------------

S = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


def _curve(a, lo=None, hi=None, s=S) -> dict:
    return {"strengths": list(s), "agreement": list(a), "lo": list(lo or a), "hi": list(hi or a)}


def test_the_half_way_strength_of_a_linear_curve_is_one_half() -> None:
    a = [1 - s for s in S]
    h = half_way(_curve(a, [x - 0.1 for x in a], [x + 0.1 for x in a]))
    assert h["status"] == "reached" and h["level"] == pytest.approx(0.5)
    assert h["strength"] == pytest.approx(0.5)
    assert h["lo"] == pytest.approx(0.4) and h["hi"] == pytest.approx(0.6)  # lower edge first, upper edge last
    assert format_half_way(h) == "0.50 [0.40, 0.60]"
    # the level is half of the twin's agreement, not 0.5: a curve 0.6 (1 - s) has its half-way at 0.5 too
    assert half_way(_curve([0.6 * x for x in a]))["strength"] == pytest.approx(0.5)


def test_interpolation_is_linear_between_grid_points() -> None:
    assert crossing([0.0, 0.5, 1.0], [1.0, 0.8, 0.2], 0.5) == pytest.approx(0.75)
    assert crossing([0.0, 0.5, 1.0], [1.0, math.nan, 0.0], 0.5) == pytest.approx(0.5)  # a missing point is skipped
    assert crossing([0.0, 1.0], [0.4, 0.1], 0.5) == 0.0  # already below at the first point
    assert crossing([0.0, 1.0], [1.0, 0.9], 0.5) is None


def test_a_flat_curve_is_not_reached_and_censored_never_a_number() -> None:
    h = half_way(_curve([0.9] * 6, [0.7] * 6, [1.1] * 6))
    assert h["status"] == "not reached" and h["strength"] is None
    assert h["lo_censored"] and h["hi_censored"] and h["lo"] is None and h["hi"] is None
    assert format_half_way(h) == "not reached (> 1) [> 1, > 1]"
    # the lower edge may cross while the curve does not: a censored interval [lo, > 1]
    h = half_way(_curve([1.0, 0.9, 0.8, 0.7, 0.6, 0.55], lo=[0.9, 0.8, 0.6, 0.4, 0.3, 0.2]))
    assert h["status"] == "not reached" and h["lo"] == pytest.approx(0.4 + 0.2 * 0.1 / 0.2) and h["hi"] is None


def test_no_half_way_without_the_twin_or_when_the_twin_is_at_the_null() -> None:
    h = half_way(_curve([math.nan, 0.2, 0.5, 0.8, 0.9, 1.0]))
    assert h["status"] == "undefined" and h["strength"] is None and "twin" in h["why"]
    assert format_half_way(h) == "undefined"
    assert half_way(_curve([-0.1, 0.2, 0.5, 0.8, 0.9, 1.0]))["status"] == "undefined"


def _ev(**criteria) -> dict:
    return {"verdict": "agree", "evidence": criteria}


def test_the_main_criterion_is_the_first_with_a_normalised_agreement() -> None:
    raw = {"criterion": [">=", 0.5], "value": 0.9, "lo": 0.8, "hi": 1.0, "null_mean": 0.5}
    by_s = {
        s: _ev(
            first_raw=raw,
            judged={
                "criterion": [">=", 0.5, "normalised"],
                "normalised": 1 - s,
                "normalised_lo": 0.9 - s,
                "normalised_hi": 1.1 - s,
                "value": 3.0,
            },
            unjudged={"criterion": None, "normalised": 5.0},
        )
        for s in S
    }
    c = agreement_curve(by_s)
    assert c["criterion"] == "judged" and c["scale"] == "normalised"
    assert c["agreement"] == pytest.approx([1 - s for s in S])
    c["half_way"] = half_way(c)
    assert c["half_way"]["strength"] == pytest.approx(0.5)


def test_without_a_ceiling_the_raw_value_is_scaled_between_null_and_twin() -> None:
    by_s = {  # value falls from 0.9 (twin) to its null 0.5: relative agreement 1 - s
        s: _ev(
            err={
                "criterion": [">=", 0.6],
                "value": 0.9 - 0.4 * s,
                "lo": 0.85 - 0.4 * s,
                "hi": 0.95 - 0.4 * s,
                "null_mean": 0.5,
            }
        )
        for s in S
    }
    c = agreement_curve(by_s)
    assert c["scale"] == "relative" and c["agreement"] == pytest.approx([1 - s for s in S])
    assert half_way(c)["strength"] == pytest.approx(0.5)
    # a lower-is-better score (an error above its null) flips sign consistently: still 1 at the twin
    by_s = {
        s: _ev(
            err={
                "criterion": ["<=", 0.3],
                "value": 0.1 + 0.4 * s,
                "lo": 0.05 + 0.4 * s,
                "hi": 0.15 + 0.4 * s,
                "null_mean": 0.5,
            }
        )
        for s in S
    }
    c = agreement_curve(by_s)
    assert c["agreement"] == pytest.approx([1 - s for s in S]) and all(
        lo <= hi for lo, hi in zip(c["lo"], c["hi"], strict=True)
    )


def test_a_twin_without_a_value_leaves_the_raw_curve_and_no_half_way() -> None:
    by_s = {s: _ev(acc={"criterion": [">=", 0.75], "value": math.nan if s == 0 else s, "null_mean": 0.5}) for s in S}
    c = agreement_curve(by_s)
    assert c["criterion"] == "acc" and c["scale"] == "raw" and math.isnan(c["agreement"][0])
    assert c["value"][1:] == pytest.approx(S[1:])
    assert half_way(c)["status"] == "undefined"


@pytest.mark.parametrize(("bad", "needle"), [([0.5, 1.0], "include 0"), ([0, 1.2], "[0, 1]"), ([0], ">= 2")])
def test_the_strength_grid_is_checked(bad: list, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        strengths_of({"strengths": bad})
    assert strengths_of({"strengths": [1, 0, 0.5, 0.5]}) == [0.0, 0.5, 1.0]


# --- the job end to end ---------------------------------------------------------------------------------------------


def test_run_homotopy_end_to_end_and_reuses_its_children(tmp_path) -> None:
    cfg = compose_cfg(
        [
            "experiment=homotopy",
            "phenomenon.experiments=[smoke]",
            "phenomenon.strengths=[0,0.5,1]",
            "~phenomenon.overrides",
            "+phenomenon.overrides={lazy_rich_width:['train.steps=20','train.eval_points=3','phenomenon.ntk_evals=2','phenomenon.probe_n=8']}",
            "seeds=[0,1]",
            "train.progress=off",
            f"paths.run_dir={tmp_path / 'h'}",
        ]
    )
    out = run_homotopy(cfg)
    home = tmp_path / "h"
    assert rundir.is_complete(home)
    for s in ("0", "0.5", "1"):
        assert rundir.is_complete(home / "smoke" / f"s={s}")
        child = yaml.safe_load((home / "smoke" / f"s={s}" / "config.yaml").read_text())
        assert child["model"]["nonlinearity_strength"] == float(s)
        assert all(rundir.is_complete(home / "smoke" / f"s={s}" / f"seed_{seed}") for seed in (0, 1))
    summary = json.loads((home / "summary.json").read_text())
    assert summary["phenomenon"] == "homotopy" and summary["strengths"] == [0.0, 0.5, 1.0]
    curve = summary["curves"]["smoke"]
    assert curve["strengths"] == [0.0, 0.5, 1.0] and len(curve["value"]) == 3
    assert summary["half_way"]["smoke"]["status"] in ("reached", "not reached", "undefined")
    assert (home / "figures" / "homotopy.png").stat().st_size > 0
    report = (home / "report.md").read_text()
    assert "half-way strength" in report and "figures/homotopy.png" in report
    width = summary["width_axis"]  # the lazy/rich width axis ran once, over the same seeds, and is reported
    assert width["name"] == "lazy_rich_width" and math.isfinite(width["scores"]["kd_width_slope_real"])
    assert rundir.is_complete(home / "lazy_rich_width" / "seed_1") and "Width axis (lazy_rich_width, n = 2)" in report
    before = (home / "smoke" / "s=0.5" / "seed_0" / "curves.csv").stat().st_mtime_ns
    again = run_homotopy(cfg)
    assert (home / "smoke" / "s=0.5" / "seed_0" / "curves.csv").stat().st_mtime_ns == before  # reused, not retrained
    assert again["half_way"] == json.loads(json.dumps(out["half_way"]))


def test_the_main_criterion_moves_with_the_real_member() -> None:
    """A twin-only criterion is flat along the homotopy by construction: a real-member criterion is preferred."""
    from comparisons.homotopy import main_criterion

    ev = {
        "mse_mode_spearman_twin": {"criterion": [">=", 0.5], "normalised": 0.9, "value": 0.5},
        "mse_nc1_neg_logrmse_real": {"criterion": [">=", 0.5, "normalised"], "normalised": 0.4, "value": -0.9},
    }
    assert main_criterion([ev]) == ("mse_nc1_neg_logrmse_real", True)
    only_twin = {"mse_mode_spearman_twin": ev["mse_mode_spearman_twin"]}
    assert main_criterion([only_twin]) == ("mse_mode_spearman_twin", True)
