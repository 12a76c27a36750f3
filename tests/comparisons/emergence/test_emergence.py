"""Tests of comparisons/emergence on constructed ground truth: known projections, exact sigmoids, controls, and the
evidence (nulls, noise ceiling, the engine's verdict) on constructed seeds with a known answer."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from comparisons.emergence.metrics import fit_scale, sharpness, skill_projection, slope_fit
from comparisons.emergence.phenomenon import observe
from comparisons.emergence.scores import ceiling, knobs, score
from comparisons.emergence.theory import calibrate, theory_time, theory_time_values
from comparisons.engine import stats
from comparisons.engine.aggregate import judgement
from comparisons.engine.members import Member
from comparisons.engine.phenomenon import Prediction
from comparisons.engine.rundir import Run
from linear_models import skills
from tasks.sparse_parity import sparse_parity
from tests.conftest import ROOT, compose_cfg

P = skills.skill_frequencies(5, 0.6).tolist()
NUMS = {
    "variant": "time",
    "p": P,
    "alpha": 0.6,
    "S": 5.0,
    "R0": 1e-4 / 3.6,
    "lr": 0.05,
    "time_factor": 2.0,
    "steps": 8000,
    "level": 0.5,
    "exponents": skills.scaling_exponents(0.6),
    "points": {"": math.nan},
}
STEPS = np.arange(0, 8001, 50, dtype=np.float64)


# ---------------------------------------------------------------------------------------------------------------
# the skill-strength measurement (docs/theory.md 4.8) on functions with known projections


class KnownFunction(nn.Module):
    """f(i, x) = c0 + sum_k c_k 1[i = k] g_k(x) + d (2 x_j - 1): skill k's coefficient is c_k by construction.

    The extra term is a single bit outside every M_k, orthogonal to every parity; i is read from the control
    one-hot, x from the skill bits (the sparse_parity layout).
    """

    def __init__(
        self, coef: list[float], subsets: list[list[int]], n_skills: int, free_bit: int, c0: float = 0.7, d: float = 0.4
    ) -> None:
        super().__init__()
        self.coef, self.subsets, self.n_s, self.free, self.c0, self.d = coef, subsets, n_skills, free_bit, c0, d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ctrl, bits = x[:, : self.n_s].double(), x[:, self.n_s :].double()
        out = torch.full((len(x),), self.c0, dtype=torch.float64)
        for k, sub in enumerate(self.subsets):
            g = 1.0 - 2.0 * (bits[:, sub].sum(1) % 2 == 0).double()  # +1 odd, -1 even
            out = out + self.coef[k] * ctrl[:, k] * g
        out = out + self.d * (2.0 * bits[:, self.free] - 1.0)
        return out.unsqueeze(1).float()


def test_skill_projection_is_exact_on_full_enumeration() -> None:
    # every input of 6 bits, skill k's probe set: f = c0 + c_k g_k + d (2 x_0 - 1) + e g_other -> R_hat = c_k exactly
    bits = np.array(list(itertools.product([0, 1], repeat=6)), dtype=np.float64)  # (64, 6)
    g1 = 2 * (bits[:, [1, 2, 3]].sum(1) % 2) - 1
    g2 = 2 * (bits[:, [3, 4, 5]].sum(1) % 2) - 1
    out = 0.9 + 1.7 * g1 + 0.3 * (2 * bits[:, 0] - 1) - 2.5 * g2
    assert skill_projection(out, g1) == pytest.approx(1.7, abs=1e-12)
    assert skill_projection(out, g2) == pytest.approx(-2.5, abs=1e-12)
    assert skill_projection(np.ones(64), g1) == 0.0


def test_observe_recovers_known_coefficients_on_the_task_probes() -> None:
    task = sparse_parity(
        device=torch.device("cpu"),
        dtype=torch.float32,
        generator=torch.Generator().manual_seed(3),
        n_bits=16,
        n_test=10,
        n_probe=20000,
    )
    subsets = task.meta["skill_bits"]
    free = sorted(set(range(16)) - set(sum(subsets, [])))[0]
    coef = [5.0, 3.5, 2.0, 0.5, -1.0]
    member = Member(name="real", role="real", model=KnownFunction(coef, subsets, 5, free), task=task)
    got = observe(member, 0)
    tol = 4 * (0.7 + 0.4 + 5.0) / math.sqrt(20000)  # sampling error of a mean of bounded terms
    np.testing.assert_allclose([got[f"skill_{k}"] for k in range(1, 6)], np.array(coef) / 5.0, atol=tol / 5.0)
    # per-skill MSE of f against S g_k: (c_k - S)^2 + c0^2 + d^2 on average
    want = [(c - 5.0) ** 2 + 0.7**2 + 0.4**2 for c in coef]
    np.testing.assert_allclose([got[f"skill_mse_{k}"] for k in range(1, 6)], want, rtol=0.05, atol=0.05)


def test_a_linear_map_has_no_parity_skill() -> None:
    # the twin is linear in the input: its projection on a 3-bit parity is sampling noise only (the reported finding)
    task = sparse_parity(
        device=torch.device("cpu"),
        dtype=torch.float32,
        generator=torch.Generator().manual_seed(1),
        n_bits=16,
        n_test=10,
        n_probe=4000,
    )
    lin = nn.Linear(21, 1)
    with torch.no_grad():
        lin.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(2))
    got = observe(Member(name="twin", role="twin", model=lin, task=task), 0)
    assert max(abs(got[f"skill_{k}"]) for k in range(1, 6)) < 5 * 4.0 / math.sqrt(4000) / 5.0


# ---------------------------------------------------------------------------------------------------------------
# pure metrics


def test_sharpness_of_a_logistic_is_2ln9_over_lnc() -> None:
    t = np.linspace(0, 40, 40001)
    c = 1e5
    r = 1 / (1 + c * np.exp(-t))
    assert sharpness(t, r) == pytest.approx(2 * math.log(9) / math.log(c), rel=1e-4)


def test_slope_fit_recovers_a_line_and_its_interval_covers() -> None:
    rng = np.random.default_rng(0)
    x = np.linspace(-3, 0, 12)
    y = -1.0 * x + 2 + 0.05 * rng.standard_normal(12)
    s, lo, hi = slope_fit(x, y)
    assert lo < -1.0 < hi and s == pytest.approx(-1.0, abs=0.05)
    assert slope_fit(x[:2], y[:2])[1] == slope_fit(x[:2], y[:2])[0]
    assert all(math.isnan(v) for v in slope_fit(x[:1], y[:1]))


@pytest.mark.parametrize("tau", [1.0, 7.5, 22.0])
def test_fit_scale_recovers_tau_from_skill_1(tau: float) -> None:
    r1 = theory_time_values(STEPS, NUMS, tau)[:, 0]
    assert fit_scale(lambda c: theory_time_values(STEPS, NUMS, c)[:, 0], r1, tau * 1.8) == pytest.approx(tau, rel=1e-4)


def test_theory_time_matches_published_constants() -> None:
    # docs/theory.md 4.3: S = 5, init 0.01 (R0 = init^2/3.6), lr 0.02, torch MSE, tau = 22 -> R_k/S = 1/2 at these steps
    nums = {**NUMS, "lr": 0.02}
    lr_eff = 2 * 0.02 / 22
    steps = skills.emergence_time(P, 5.0, 1e-4 / 3.6) / lr_eff
    np.testing.assert_allclose(steps, [1123, 3404, 6513, 10319, 14747], rtol=2e-3)
    r = theory_time_values(steps, nums, 22.0)
    np.testing.assert_allclose(np.diag(r), 0.5, atol=1e-9)
    loss = theory_time(np.array([0.0]), nums, 22.0).query("metric == 'test_loss'")["value"].iloc[0]
    assert loss == pytest.approx(2 * 0.5 * 25.0 * (1 - 1e-4 / 3.6 / 5) ** 2)  # torch mean MSE at init = S^2


# ---------------------------------------------------------------------------------------------------------------
# scores on constructed runs


def _curves(
    tau: float = 20.0,
    control: str = "shuffled",
    noise: float = 0.01,
    p_real: list[float] | None = None,
    seed: int = 0,
):
    """A run whose real net follows the theory at ``tau`` exactly (plus noise), a twin at 0 and a control."""
    rng = np.random.default_rng(seed)
    nums = {**NUMS, "p": p_real or P}
    r = theory_time_values(STEPS, nums, tau) + noise * rng.standard_normal((STEPS.size, 5))
    loss = theory_time(STEPS, nums, tau).query("metric == 'test_loss'")["value"].to_numpy()
    # shuffled: the control bits are useless, f learns S p_k g_k and R_k/S -> p_k; "ordered": a control that
    # (wrongly) emerges in order, as the real net does
    useless = np.asarray(P) * theory_time_values(STEPS, {**NUMS, "p": [1.0] * 5}, tau)
    rc = useless if control == "shuffled" else r.copy()
    rows = []
    for member, vals in (
        ("real", r),
        ("twin", 1e-3 * rng.standard_normal(r.shape)),
        ("real:control=shuffled_control", rc),
    ):
        for k in range(5):
            rows += [(member, s, 0.1 * s, f"skill_{k + 1}", v) for s, v in zip(STEPS, vals[:, k], strict=True)]
    rows += [("real", s, 0.1 * s, "test_loss", v) for s, v in zip(STEPS, loss, strict=True)]
    return pd.DataFrame(rows, columns=["member", "step", "time", "metric", "value"])


def _run_score(observed: pd.DataFrame, seed: int = 0):
    bare = Prediction(curves=theory_time(STEPS, NUMS, 1.0), numbers=dict(NUMS))
    pred = calibrate(bare, observed)
    cfg = SimpleNamespace(phenomenon={"name": "emergence"}, seed=seed)
    return score(pd.concat([observed, pred.curves], ignore_index=True), pred, cfg), pred


def _judge(observed: list[pd.DataFrame]) -> dict:
    """The engine's judgement over constructed seeds: their summaries plus the noise ceiling of every seed pair."""
    summaries, runs = [], []
    for seed, obs in enumerate(observed):
        out, pred = _run_score(obs, seed)
        summaries.append(
            {"scores": out.scores, "criteria": out.criteria, "nulls": out.nulls, "kinds": out.kinds, "seed": seed}
        )
        runs.append(
            Run(
                path=Path("."),
                config={"phenomenon": {"name": "emergence"}},
                curves=obs,
                summary={"prediction": pred.numbers},
            )
        )
    ceilings = [ceiling(a, b) for a, b in itertools.permutations(runs, 2)]
    return judgement(summaries, ceilings)


def test_score_agrees_when_the_net_follows_the_theory() -> None:
    out, pred = _run_score(_curves(tau=20.0))
    s = out.scores
    assert s["tau"] == pytest.approx(20.0, rel=0.02)
    assert s["rmse_heldout"] < 0.02 and s["log_ratio_mae"] < 0.03
    assert s["slope"] == pytest.approx(-1.0, abs=0.03) and s["n_emerged"] == 5
    assert s["sharpness_obs"] == pytest.approx(s["sharpness_pred"], rel=0.1)
    assert s["twin_max_skill"] < 0.01
    assert s["exponent_time_real"] == pytest.approx(s["exponent_time_theory"], abs=0.02)  # tau fitted to ~1%
    assert all(stats.passes(s, out.criteria)[k] for k in ("log_ratio_mae", "slope_error"))
    assert out.criteria["neg_rmse_heldout"] == (">=", 0.5, "normalised") and s["neg_rmse_heldout"] == -s["rmse_heldout"]
    assert set(out.nulls) == set(out.criteria) and all(len(v) >= 200 for v in out.nulls.values())
    assert min(-np.asarray(out.nulls["neg_rmse_heldout"])) <= s["rmse_heldout"] + 1e-12  # the identity is a draw
    assert np.mean(out.nulls["log_ratio_mae"]) > 10 * s["log_ratio_mae"]
    assert out.negative_controls["shuffled_control"]["rejected"]
    assert out.negative_controls["shuffled_control"]["score"] == 1  # only skill 1 (p_1 = 0.59) passes 1/2
    assert out.negative_controls["swapped_frequencies"]["rejected"]
    assert out.negative_controls["swapped_frequencies"]["score"] > 5 * s["rmse_heldout"]


def test_score_disagrees_when_skills_emerge_together() -> None:
    # all skills equally frequent in the "network": no staging, slope 0, held-out skills far too early
    out, _ = _run_score(_curves(tau=20.0, p_real=[0.2] * 5))
    assert stats.passes(out.scores, out.criteria) == {
        "neg_rmse_heldout": None,  # normalised: judged over seeds only
        "log_ratio_mae": False,
        "slope_error": False,
    }
    assert out.scores["slope_error"] > 0.9 and out.scores["rmse_heldout"] > 0.3
    judged = _judge([_curves(tau=20.0, p_real=[0.2] * 5, seed=s) for s in range(3)])
    assert judged["verdict"] == "disagree"


def test_evidence_agrees_when_every_seed_follows_the_theory() -> None:
    judged = _judge([_curves(tau=20.0, seed=s) for s in range(3)])
    assert judged["verdict"] == "agree", judged["verdict_reason"]
    ev = judged["evidence"]
    assert all(e["p"] < 0.05 and e["null_draws"] >= 200 for e in ev.values())
    assert ev["neg_rmse_heldout"]["normalised"] > 0.9 and ev["neg_rmse_heldout"]["call"] == "pass"
    # the ceiling is seed-to-seed noise: two noisy seeds differ by ~sqrt(2) x 0.01 in R_k/S
    assert -ev["neg_rmse_heldout"]["ceiling"] == pytest.approx(0.01 * math.sqrt(2), rel=0.2)


@pytest.mark.parametrize("order", [[0, 2, 1, 4, 3], [0, 4, 3, 2, 1], [0, 3, 4, 1, 2]])
def test_evidence_never_agrees_when_the_skills_are_permuted(order: list[int]) -> None:
    # the net learns skill k at the rate of p_order[k] (skill 1 kept, so tau still fits): a permuted prediction
    p_real = [P[i] for i in order]
    judged = _judge([_curves(tau=20.0, p_real=p_real, seed=s) for s in range(3)])
    assert judged["verdict"] != "agree"
    assert judged["evidence"]["neg_rmse_heldout"]["normalised"] < 0.5


def test_an_ordered_control_is_not_rejected() -> None:
    # the control must be able to fail: one that emerges in order is not told apart, and the verdict says so
    out, _ = _run_score(_curves(tau=20.0, control="ordered"))
    assert not out.negative_controls["shuffled_control"]["rejected"]
    assert any("not rejected" in n for n in out.notes)


def test_unemerged_predicted_skill_counts_as_a_lower_bound() -> None:
    obs = _curves(tau=20.0)
    late = (obs["member"] == "real") & (obs["metric"] == "skill_5")
    obs.loc[late, "value"] = 0.0  # skill 5 never emerges although predicted at ~5300 of 8000 steps
    out, _ = _run_score(obs)
    assert out.scores["log_ratio_5"] == pytest.approx(math.log(8000 / out.scores["t_pred_5"]), rel=1e-9)
    assert out.scores["n_emerged"] == 4


@pytest.mark.parametrize(
    ("variant", "key", "xs", "const"),
    [
        ("data", "task.n_train", [250, 500, 1000, 2000, 4000, 8000], 900.0),
        ("params", "model.width", [1, 2, 4, 8, 16, 32], 3.0),
    ],
)
def test_final_variants_recover_the_constant(variant: str, key: str, xs: list[int], const: float) -> None:
    labels = {f"{key.rsplit('.', 1)[-1]}={x}": float(x) for x in xs}
    nums = {**NUMS, "variant": variant, "points": labels}
    x = np.array(xs, dtype=np.float64)
    if variant == "data":
        r = skills.data_strength_calibrated(x, P, D_c=const)
    else:
        r = skills.parameter_strength_calibrated(x, 5, N_c=const)
    loss = 2 * 0.5 * 25 * np.sum(np.asarray(P) * (1 - r) ** 2, axis=1) + 1e-3
    rows = []
    for i, lb in enumerate(labels):
        rows += [(f"real:{lb}", 8000, 800.0, f"skill_{k + 1}", r[i, k]) for k in range(5)]
        rows += [(f"twin:{lb}", 8000, 800.0, f"skill_{k + 1}", 0.0) for k in range(5)]
        rows.append((f"real:{lb}", 8000, 800.0, "test_loss", loss[i]))
    observed = pd.DataFrame(rows, columns=["member", "step", "time", "metric", "value"])
    pred = calibrate(Prediction(numbers=nums), observed)
    out = score(pd.concat([observed, pred.curves], ignore_index=True), pred, None)
    assert out.scores["constant"] == pytest.approx(const, rel=1e-3)
    assert out.scores["rmse_heldout"] < 1e-3 and out.criteria == {"neg_rmse_heldout": (">=", 0.5, "normalised")}
    assert len(out.nulls["neg_rmse_heldout"]) >= 200 and np.mean(out.nulls["neg_rmse_heldout"]) < -0.05
    assert out.negative_controls["swapped_frequencies"]["rejected"]
    assert out.scores[f"exponent_{variant}_real"] < 0


def test_knobs_reject_an_unknown_variant() -> None:
    from comparisons.engine.config import ConfigError

    class Cfg:
        phenomenon = {"name": "emergence", "variant": "tim"}

    with pytest.raises(ConfigError, match="phenomenon.variant='tim'"):
        knobs(Cfg())


# ---------------------------------------------------------------------------------------------------------------
# configs and a tiny end-to-end run


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("emergence_*.yaml")))
def test_experiment_composes(name: str) -> None:
    cfg = compose_cfg([f"experiment={name}"])
    assert cfg.phenomenon["name"] == "emergence" and cfg.task["name"] == "sparse_parity"
    assert knobs(cfg)["variant"] in ("time", "data", "params")


def test_tiny_run_end_to_end(tmp_path: Path) -> None:
    from comparisons.engine.run import run
    from comparisons.engine.rundir import load_run

    cfg = compose_cfg(
        [
            "experiment=emergence_time",
            "seeds=null",
            "train.steps=40",
            "train.eval_points=5",
            "model.width=8",
            "task.n_probe=64",
            "task.n_test=64",
            "train.batch_size=32",
            "train.progress=off",
            f"paths.run_dir={tmp_path / 'run'}",
        ]
    )
    summary = run(cfg)
    loaded = load_run(tmp_path / "run")
    assert {"real", "twin", "theory", "real:control=shuffled_control"} <= set(loaded.curves["member"])
    assert "rmse_heldout" in summary["scores"] or "rmse_heldout" in summary.get("omitted_scores", {})
    assert set(summary["negative_controls"]) == {"shuffled_control", "swapped_frequencies"}
    assert (tmp_path / "run" / "figures" / "emergence_time.png").exists()


def test_two_constant_fit_recovers_tau_and_r0() -> None:
    from comparisons.emergence.theory import fit_tau_r0

    truth = {**NUMS, "R0": 3e-3}
    r1 = theory_time_values(STEPS, truth, 12.0)[:, 0]
    tau, r0 = fit_tau_r0(STEPS, r1, NUMS, tau0=30.0)
    assert tau == pytest.approx(12.0, rel=1e-3) and r0 == pytest.approx(3e-3, rel=1e-2)


def test_seed_curves_gathers_complete_sibling_seeds(tmp_path: Path) -> None:
    from comparisons.emergence.figures import seed_curves
    from comparisons.engine.rundir import Run

    frames = {}
    for s in (0, 1, 2):
        d = tmp_path / f"seed_{s}"
        d.mkdir()
        frames[s] = pd.DataFrame(
            [("real", 0, 0.0, "skill_1", float(s))], columns=["member", "step", "time", "metric", "value"]
        )
        frames[s].to_csv(d / "curves.csv", index=False)
        if s != 2:  # seed 2 is still running: not part of the bands
            (d / "COMPLETE").write_text("")
    own = seed_curves(Run(path=tmp_path / "seed_1", config={}, curves=frames[1], summary={}))
    assert [float(c["value"].iloc[0]) for c in own] == [1.0, 0.0]
    parent = seed_curves(Run(path=tmp_path, config={}, curves=frames[0], summary={}))
    assert sorted(float(c["value"].iloc[0]) for c in parent) == [0.0, 1.0]
    alone = tmp_path / "single"
    alone.mkdir()
    assert len(seed_curves(Run(path=alone, config={}, curves=frames[0], summary={}))) == 1


BAD = [
    ("emergence_time", {"optim.lr": [0.01, 0.02]}, "phenomenon.variant=time takes no sweep.grid"),
    ("emergence_data", {}, "needs sweep.grid with exactly one key, task.n_train"),
    ("emergence_params", {"optim.lr": [0.1]}, "needs sweep.grid with exactly one key, model.width"),
]


@pytest.mark.parametrize(("experiment", "grid", "needle"), BAD, ids=[e for e, _, _ in BAD])
def test_bad_sweeps_are_one_line_config_errors(experiment: str, grid: dict, needle: str, tmp_path: Path) -> None:
    from comparisons.emergence.phenomenon import train
    from comparisons.engine.config import ConfigError
    from comparisons.engine.members import Context, streams

    cfg = compose_cfg([f"experiment={experiment}", "seeds=null"])
    cfg.sweep.grid = grid
    ctx = Context(cfg=cfg, device=torch.device("cpu"), dtype=torch.float32, run_dir=tmp_path, streams=streams(0))
    with pytest.raises(ConfigError, match=needle) as err:
        train(cfg, ctx)
    assert "\n" not in str(err.value)
