"""Grokking comparison: observables on constructed curves, censoring, the ratio by hand, scores, nulls, ceiling,
negative controls."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from comparisons.engine import stats
from comparisons.engine.aggregate import judgement
from comparisons.engine.phenomenon import Outcome, Prediction
from comparisons.engine.rundir import Run
from comparisons.grokking.metrics import (
    confusion,
    grok_timing,
    grouped_fit,
    initial_output,
    observed_delayed,
    sigma_ntk,
    sigma_weights,
    target_strength,
    weight_layers,
)
from comparisons.grokking.scores import ceiling, knobs, score
from deep_models import create_model
from linear_models.grokking import weight_ratio

ROOT = Path(__file__).resolve().parents[3]
STEPS = np.arange(0, 1001, 10, dtype=float)


def sigmoid_curve(center: float, width: float = 20.0, top: float = 1.0) -> np.ndarray:
    return top / (1.0 + np.exp(-(STEPS - center) / width))


# ---------------------------------------------------------------------------------------------------- timing


def test_timing_of_constructed_grokking_curves() -> None:
    # train acc crosses 0.99 where 1/(1+e^-(s-100)/20) >= 0.99, i.e. s >= 100 + 20 ln 99 = 191.9 -> first eval 200
    t = grok_timing(STEPS, sigmoid_curve(100), sigmoid_curve(600), fit=0.99, gen=0.95)
    gen_at = math.ceil((600 + 20 * math.log(0.95 / 0.05)) / 10) * 10
    assert (t.t_fit, t.t_gen, t.censored) == (200.0, gen_at, False)
    assert t.delay == gen_at - 200.0 and t.delay_lower_bound is None


def test_a_run_that_never_generalises_is_censored_never_a_number() -> None:
    t = grok_timing(STEPS, sigmoid_curve(100), sigmoid_curve(600, top=0.9))
    assert t.censored and t.t_gen is None and t.delay is None
    assert t.delay_lower_bound == 1000.0 - 200.0
    unfit = grok_timing(STEPS, sigmoid_curve(100, top=0.5), sigmoid_curve(600, top=0.5))
    assert unfit.censored and unfit.t_fit is None and unfit.delay is None and unfit.delay_lower_bound is None


def test_generalising_before_fitting_gives_a_negative_delay() -> None:
    t = grok_timing(STEPS, sigmoid_curve(500), sigmoid_curve(100))
    assert not t.censored and t.delay < 0
    assert observed_delayed(t, 0.5) is False


OBS = [  # (t_fit, t_gen, censored-by-top, measure, threshold, expected)
    (100, 700, False, "log_ratio", 0.5, True),  # log10(7) = 0.85
    (100, 250, False, "log_ratio", 0.5, False),  # log10(2.5) = 0.40
    (100, 700, False, "steps", 500.0, True),
    (100, 500, False, "steps", 500.0, False),
    (100, None, True, "log_ratio", 0.5, True),  # censored, lower bound log10(1000/100) = 1 > 0.5
    (100, None, True, "steps", 2000.0, None),  # censored, lower bound 900 < 2000: unknown
    (100, 500, False, "efolds", 2.0, True),  # 400 steps * 2 lr wd (0.006) = 2.4 e-folds
    (100, 400, False, "efolds", 2.0, False),  # 1.8 e-folds
    (100, None, True, "efolds", 10.0, None),  # censored: 900 * 0.006 = 5.4 < 10: unknown
]


@pytest.mark.parametrize(("fit", "gen", "cens", "measure", "thr", "want"), OBS)
def test_observed_delayed_table(fit, gen, cens, measure, thr, want) -> None:
    train = (fit <= STEPS).astype(float)
    test = np.zeros_like(STEPS) if gen is None else (gen <= STEPS).astype(float)
    t = grok_timing(STEPS, train, test)
    assert t.censored == cens
    assert observed_delayed(t, thr, measure, rate=2 * 3e-3 * 1.0) is want
    if measure == "efolds":
        assert observed_delayed(t, thr, measure, rate=None) is None  # no decoupled weight decay, no clock


# ---------------------------------------------------------------------------------------------------- the ratio


def test_sigma_of_a_two_layer_net_by_hand() -> None:
    net = create_model("mlp", input_shape=(3,), out_dim=2, depth=2, width=4, bias=False, output_scale=0.5).double()
    w1 = torch.arange(12.0, dtype=torch.float64).reshape(4, 3) / 10  # ||W1||^2 = sum k^2 / 100, k < 12 = 5.06
    w2 = torch.full((2, 4), 0.5, dtype=torch.float64)  # ||W2||^2 = 2.0
    with torch.no_grad():
        net.features[1].weight.copy_(w1)
        net.head.weight.copy_(w2)
    assert [m for _, _, m in weight_layers(net)] == [3, 2]  # input side: fan-in d; classifier: its c outputs
    assert sigma_weights(net) == pytest.approx(0.5 * (5.06 / 3 + 2.0 / 2) / 2, rel=1e-12)


def test_sigma_is_the_toy_sigma_for_scalar_in_and_out() -> None:
    a, b = np.array([0.3, -1.2, 0.7]), np.array([1.1, 0.4, -0.2])
    net = create_model("mlp", input_shape=(1,), out_dim=1, depth=2, width=3, bias=False, activation="identity")
    with torch.no_grad():
        net.features[1].weight.copy_(torch.tensor(a).reshape(3, 1))
        net.head.weight.copy_(torch.tensor(b).reshape(1, 3))
    sigma, beta = weight_ratio(a, b)
    assert sigma_weights(net) == pytest.approx(float(sigma), rel=1e-6)
    x = torch.randn(8, 1, generator=torch.Generator().manual_seed(3))
    assert initial_output(net(x), 2.0 * x, strength=2.0) == pytest.approx(float(beta), rel=1e-5)  # S_0 = beta(0)
    assert initial_output(net(x) + 5.0, 2.0 * x, strength=2.0) == pytest.approx(float(beta), rel=1e-5)  # offsets


def test_ntk_sigma_equals_weight_sigma_for_a_linear_net_on_whitened_input() -> None:
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(6, 3, generator=g, dtype=torch.float64))
    x = q * math.sqrt(6)  # X^T X = N I: whitened (docs/theory.md 2.5)
    net = create_model(
        "mlp", input_shape=(3,), out_dim=2, depth=2, width=5, bias=False, activation="identity", generator=g
    ).double()
    assert sigma_ntk(net, x) == pytest.approx(sigma_weights(net), rel=1e-10)


def test_target_strength_follows_the_four_knobs() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, 8, generator=g, dtype=torch.float64)
    y = torch.nn.functional.one_hot(torch.arange(50) % 5, 5).double()
    s = target_strength(x, y)
    rms_x = math.sqrt(float(x.pow(2).mean()))
    assert s == pytest.approx(math.sqrt(1 / 5) / rms_x, rel=1e-12)
    assert target_strength(0.01 * x, y) == pytest.approx(100 * s, rel=1e-12)  # smaller input: larger S
    assert target_strength(x, 30 * y) == pytest.approx(30 * s, rel=1e-12)  # larger target
    tokens = torch.zeros(10, 3, dtype=torch.long)
    assert target_strength(tokens, y[:10], vocab=49) == pytest.approx(math.sqrt(1 / 5) * 7, rel=1e-12)


# ---------------------------------------------------------------------------------------------------- scores


def test_confusion_and_grouped_fit() -> None:
    c = confusion([True, True, False, False, True], [True, False, False, None, True])
    assert (c["tp"], c["fp"], c["fn"], c["tn"], c["n"]) == (2, 1, 0, 1, 4) and c["accuracy"] == 0.75
    x = np.array([1.0, 2.0, 3.0, 1.0, 2.0, 3.0])
    fit = grouped_fit(x, 5.0 * x + np.array([0, 0, 0, 100, 100, 100]), ["a"] * 3 + ["b"] * 3)
    assert fit["slope"] == pytest.approx(5.0) and fit["r2"] == pytest.approx(1.0)  # one intercept per group
    pooled = grouped_fit(x, 5.0 * x + np.array([0, 0, 0, 100, 100, 100]), ["a"] * 6)
    assert pooled["r2"] < 0.1


def sweep(kind: str = "law") -> tuple[pd.DataFrame, Prediction]:
    """A constructed sweep over init scale k and wd: observed delay = 0.5 ln(k^2) / (2 lr wd) + 100 exactly."""
    rows, members = [], {}
    lr = 1e-3
    for k in (0.25, 0.5, 1.0, 2.0, 4.0):
        for wd in (0.5, 1.0, 2.0):
            label = f"init_scale={k},weight_decay={wd}"
            ratio = k * k
            fit = 100.0
            gen = fit + 100.0 + (max(0.0, math.log(ratio)) / (2 * lr * wd) if kind == "law" else 0.0)
            name = f"real:{label}"
            steps = np.arange(0, 6001, 10.0)
            rows += [
                {"member": name, "step": s, "time": lr * s, "metric": "train_acc", "value": float(s >= fit)}
                for s in steps
            ]
            rows += [
                {"member": name, "step": s, "time": lr * s, "metric": "test_acc", "value": float(s >= gen)}
                for s in steps
            ]
            members[name] = {
                "role": "real",
                "point": label,
                "control": None,
                "values": {"model.init_scale": k, "optim.weight_decay": wd},
                "ratio": ratio,
                "gamma_plus": 1.0,
                "call": "lazy",
                "predicted_delay": math.log(ratio) / (2 * lr * wd) if ratio > 1 else 0.0,
                "lr": lr,
                "lr_eff": lr,
                "wd": wd,
                "decoupled": True,
                "init_scale": k,
            }
    return pd.DataFrame(rows), Prediction(numbers={"members": members})


CFG = {
    "phenomenon": {"name": "grokking", "delay_measure": "steps", "delay_threshold": 150.0, "law_observable": "delay"}
}


def summary(out: Outcome) -> dict:
    """The parts of summary.json the engine judges (comparisons.engine.run._summary)."""
    return {
        "criteria": {k: list(v) for k, v in out.criteria.items()},
        "scores": out.scores,
        "nulls": out.nulls,
        "kinds": out.kinds,
        "trials": out.trials,
    }


def seeds(curves: pd.DataFrame, pred: Prediction, cfg: dict, n: int = 3) -> list[Outcome]:
    """The same constructed sweep scored as n seeds (each seed draws its own permutation nulls)."""
    return [score(curves, pred, {**cfg, "seed": k}) for k in range(n)]


def test_scores_of_a_constructed_sweep_that_follows_the_law() -> None:
    curves, pred = sweep("law")
    out = score(curves, pred, CFG)
    s = out.scores
    assert s["a_accuracy"] == 1.0 and s["a_n"] == 15 and s["a_tp"] == 6 and s["a_tn"] == 9
    # within a fixed init, delay = 100 + ln(k^2)/(2 lr) * (1/wd): a line for k > 1, flat (no law group) for k <= 1
    assert s["b_lrwd_delay_r2"] == pytest.approx(1.0, abs=1e-4) and s["b_lrwd_delay_sign_ok"] == 1.0  # 10-step grid
    assert s["b_lrwd_delay_slope_ratio"] == pytest.approx(1.0, rel=0.01) and s["b_lrwd_delay_groups"] == 2  # k=2, 4
    assert s["b_lrwd_tgen_slope"] == pytest.approx(s["b_lrwd_delay_slope"])  # t_fit is constant here
    assert s["b_lrwd_delay_c_implied"] == pytest.approx(1.0, rel=0.02)  # the c the data were built with
    x = np.log([0.25, 0.5, 1.0, 2.0, 4.0])  # per wd: delay - 100 is proportional to max(0, ln k), a hinge in ln k
    assert s["b_init_delay_sign_ok"] == 1.0 and s["b_init_delay_slope_ratio"] == pytest.approx(1.0, rel=0.01)
    assert s["b_init_delay_r2"] == pytest.approx(np.corrcoef(x, np.maximum(x, 0.0))[0, 1] ** 2, rel=1e-3)
    assert all(stats.passes(s, out.criteria).values())
    assert out.kinds["a_accuracy"] == "fraction" and out.trials["a_accuracy"] == 15
    assert set(out.nulls) == {"a_accuracy", "b_lrwd_delay_r2", "b_lrwd_delay_slope_log_error"} | {
        "b_init_delay_r2",
        "b_init_delay_slope_log_error",
    }  # sign_ok has no null: 0/1 per seed, chance alone passes 3 seeds 1 time in 8
    assert len(out.nulls["a_accuracy"]) == knobs(None)["null_draws"]
    assert len(out.nulls["b_init_delay_r2"]) == knobs(None)["null_draws_scaling"] >= 200
    assert out.negative_controls["reversed_ratio"]["rejected"]  # negative control: the reversed axis scores badly
    assert out.negative_controls["reversed_ratio"]["score"] < 0.5
    j = judgement([summary(o) for o in seeds(curves, pred, CFG)])
    assert j["verdict"] == "agree", j["verdict_reason"]
    # 15 points, 6 delayed: a perfect classification happens by chance 1 time in C(15,6) = 5005 per seed
    assert j["evidence"]["a_accuracy"]["p"] == pytest.approx(1 / (1 + knobs(None)["null_draws"]))
    assert j["evidence"]["b_lrwd_delay_r2"]["p"] < 0.01 and j["evidence"]["b_init_delay_slope_log_error"]["p"] < 0.01


def test_a_law_five_times_too_slow_disagrees_on_the_slope() -> None:
    curves, pred = sweep("law")
    for p in pred.numbers["members"].values():  # the theory now predicts 1/5 of the true delays
        p["predicted_delay"] /= 5.0
    out = score(curves, pred, CFG)
    assert out.scores["b_lrwd_delay_slope_ratio"] == pytest.approx(0.2, rel=0.01)
    assert out.criteria["b_lrwd_delay_slope_log_error"] == ("<=", pytest.approx(math.log(3.0)))
    ok = stats.passes(out.scores, out.criteria)
    assert out.scores["b_lrwd_delay_sign_ok"] == 1.0 and ok["b_lrwd_delay_sign_ok"]  # the sign alone would pass
    assert not ok["b_lrwd_delay_slope_log_error"] and ok["a_accuracy"]
    j = judgement([summary(o) for o in seeds(curves, pred, CFG)])
    assert j["verdict"] == "disagree" and "b_lrwd_delay_slope_log_error" in j["verdict_reason"]


def test_a_sweep_without_delays_disagrees() -> None:
    curves, pred = sweep("flat")  # every run generalises 100 steps after fitting, whatever the ratio
    out = score(curves, pred, CFG)
    assert (
        out.scores["a_accuracy"] == pytest.approx(9 / 15) and not stats.passes(out.scores, out.criteria)["a_accuracy"]
    )
    j = judgement([summary(o) for o in seeds(curves, pred, CFG)])
    assert j["verdict"] == "disagree" and j["evidence"]["a_accuracy"]["hi"] < knobs(None)["accuracy_min"]  # 27/45


def classification(predicted: list[bool], observed: list[bool]) -> tuple[pd.DataFrame, Prediction]:
    """Points that fit at step 100 and generalise at step 200 (not delayed) or 900 (delayed), with the given calls."""
    rows, members = [], {}
    steps = np.arange(0, 1001, 10.0)
    for i, (p, o) in enumerate(zip(predicted, observed, strict=True)):
        name = f"real:init_scale={i}"
        gen = 900.0 if o else 200.0
        for metric, at in (("train_acc", 100.0), ("test_acc", gen)):
            rows += [{"member": name, "step": s, "time": s, "metric": metric, "value": float(s >= at)} for s in steps]
        members[name] = {
            "role": "real",
            "control": None,
            "values": {"model.init_scale": i},
            "ratio": 4.0 if p else 0.25,
            "gamma_plus": 1.0,
            "call": "lazy",
            "predicted_delay": None,  # coupled L2: no law, so (b) has no criterion and (a) is judged alone
            "lr": 1e-3,
            "lr_eff": 1e-3,
            "wd": 0.0,
            "decoupled": False,
            "init_scale": None,
        }
    return pd.DataFrame(rows), Prediction(numbers={"members": members})


def verdict_of(predicted: list[bool], observed: list[bool], n_seeds: int = 3) -> dict:
    curves, pred = classification(predicted, observed)
    return judgement([summary(o) for o in seeds(curves, pred, CFG, n_seeds)])


def test_a_perfect_classifier_over_enough_points_agrees() -> None:
    # 6 points, 3 delayed: chance gets all 6 right 1 time in 20 per seed, (1/20)^3 over 3 seeds
    j = verdict_of([True, False, True, False, True, False], [True, False, True, False, True, False])
    assert j["verdict"] == "agree", j["verdict_reason"]
    ev = j["evidence"]["a_accuracy"]
    assert ev["value"] == 1.0 and ev["lo"] > knobs(None)["accuracy_min"] and ev["p"] < 0.01
    assert ev["null_mean"] == pytest.approx(0.5, abs=0.02)


def test_a_reversed_classifier_never_agrees_and_too_few_points_are_inconclusive() -> None:
    truth = [True, False, True, False, True, False]
    assert verdict_of([not t for t in truth], truth)["verdict"] == "disagree"
    two = verdict_of([True, False], [True, False])  # a coin gets 2 points right 1 time in 2, 3 seeds 1 in 8
    assert two["verdict"] == "inconclusive" and two["evidence"]["a_accuracy"]["p"] > 0.05
    one_seed = verdict_of(truth, truth, n_seeds=1)
    assert one_seed["verdict"] == "inconclusive"


def test_random_calls_never_agree() -> None:
    rng = np.random.default_rng(0)
    truth = [True, False] * 4
    for _ in range(10):
        guess = [bool(g) for g in rng.integers(0, 2, len(truth))]
        assert verdict_of(guess, truth)["verdict"] != "agree"


def test_nulls_are_seeded_per_seed_and_reproducible() -> None:
    curves, pred = classification([True, False] * 3, [True, False] * 3)
    a, b, a2 = (score(curves, pred, {**CFG, "seed": k}).nulls["a_accuracy"] for k in (0, 1, 0))
    assert a == a2 and a != b


def test_ceiling_is_the_agreement_of_two_seeds_observed_labels() -> None:
    truth = [True, False, True, False]
    runs = []
    for observed in (truth, [True, False, False, False]):
        curves, pred = classification(truth, observed)
        runs.append(Run(path=Path("."), config=CFG, curves=curves, summary={"prediction": pred.numbers}))
    assert ceiling(runs[0], runs[1]) == {"a_accuracy": 0.75}
    assert ceiling(runs[0], runs[0]) == {"a_accuracy": 1.0}


def test_shuffled_control_is_censored_and_rejected_and_a_leaky_one_is_not() -> None:
    curves, pred = sweep("law")
    info = pred.numbers["members"]
    base = "real:init_scale=4.0,weight_decay=1.0"
    for control, gen_top in (("never", 0.3), ("leaky", 1.0)):
        name = f"{base},control=shuffled_labels"
        c = curves[curves["member"] == base].assign(member=name)
        c.loc[c["metric"] == "test_acc", "value"] *= gen_top
        pred2 = Prediction(numbers={"members": {**info, name: {**info[base], "control": "shuffled_labels"}}})
        out = score(pd.concat([curves, c]), pred2, CFG)
        ctrl = out.negative_controls["shuffled_labels"]
        assert ctrl["rejected"] == (control == "never")
        assert all(stats.passes(out.scores, out.criteria).values())  # the control does not touch the criteria
        assert (f"{name}: ratio=16" in " ".join(out.notes)) and ("censored" in ctrl["note"]) == (control == "never")


def test_unknown_knob_is_one_line_config_error() -> None:
    from comparisons.engine.config import ConfigError

    with pytest.raises(ConfigError, match="phenomenon.gen_treshold: unknown grokking knob"):
        knobs({"phenomenon": {"name": "grokking", "gen_treshold": 0.9}})
    assert set(knobs(None)) >= {"ratio_definition", "ratio_threshold", "c"}


# ---------------------------------------------------------------------------------------------------- end to end


def test_smoke_run_trains_a_pair_and_a_censored_shuffled_control(tmp_path: Path) -> None:
    from comparisons.engine.run import run
    from tests.conftest import compose_cfg

    cfg = compose_cfg(["experiment=smoke", f"paths.runs_root={tmp_path}", "train.progress=off"])
    summary = run(cfg)
    run_dir = next((tmp_path / "smoke").iterdir())
    curves = pd.read_csv(run_dir / "curves.csv")
    members = set(curves["member"])
    assert {"real", "twin", "real:control=shuffled_labels", "theory"} <= members
    real0 = curves[(curves["member"] == "real") & (curves["step"] == 0)].set_index("metric")["value"]
    assert real0["rwc"] == 0.0 and real0["kd"] == pytest.approx(0.0, abs=1e-9)
    assert real0["ratio"] == pytest.approx(summary["prediction"]["members"]["real"]["ratio"], rel=1e-6)
    ctrl = summary["negative_controls"]["shuffled_labels"]
    assert ctrl["rejected"] and summary["scores"]["real:control=shuffled_labels/censored"] == 1.0
    assert (run_dir / "figures" / "grokking_accuracy.png").exists()
    assert json.loads((run_dir / "summary.json").read_text())["phenomenon"] == "grokking"


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("grokking_*.yaml")))
def test_grokking_experiments_compose(name: str) -> None:
    from tests.conftest import compose_cfg

    cfg = compose_cfg([f"experiment={name}"])
    assert cfg.phenomenon["name"] == "grokking"
    knobs(cfg)
