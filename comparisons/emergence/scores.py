"""Scores, criteria, nulls, noise ceiling and negative controls of an emergence run (docs/theory.md 4.3-4.6).

Time variant (members ``real``, ``twin``, ``real:control=shuffled_control``, ``theory``), with n_s skills:

- ``tau``: the time constant fitted on skill 1 (the bare multilinear model has tau = 1; Nam et al. fit 22).
- ``rmse_heldout``: RMSE of R_k/S, real vs calibrated theory, over skills 2..n_s and every eval step.
- ``t_obs_k`` / ``t_pred_k`` / ``log_ratio_k``: observed and predicted emergence step (R_k/S = ``level``) and
  ln(t_obs/t_pred). A skill predicted to emerge inside the run that never does gets the lower bound
  ln(last step / t_pred). ``log_ratio_mae``: mean |log_ratio_k| over skills 2..n_s.
- ``slope`` [``slope_lo``, ``slope_hi``]: least-squares slope of ln t_k against ln p_k over the skills that
  emerged, with its 95% t-interval (predicted -1, docs/theory.md 4.4); ``slope_error`` = |slope + 1|, NaN when fewer
  than ``min_emerged`` skills emerged. Seed aggregation gives the interval over seeds.
- ``sharpness_obs`` / ``sharpness_pred``: rise width (R_k/S from 0.1 to 0.9) over half-time, mean over skills
  (for the logistic: 2 ln 9 / ln(S/R_0 - 1), independent of tau).
- ``exponent_time_{real,theory,predicted}``: slope of ln test_loss against ln t between the first and last
  observed emergence, for the real net and for the calibrated finite-n_s theory, and -alpha/(alpha+1) (4.6).
- ``twin_max_skill``: max |R_k/S| of the twin over all steps and skills (~0: a linear map has no parity).
- ``tau_2c``, ``R0_2c``, ``rmse_heldout_2c``, ``sharpness_pred_2c``: diagnostic, not judged: tau and R_0 both
  fitted on skill 1, which frees the shape of the rise (the sharpness) and leaves only the 1/p_k timing law.

Data / params variants (members ``real:<point>``, ``twin:<point>``, ``theory:<point>``): ``constant`` (D_c or N_c
fitted on skill 1), ``rmse_heldout`` (final R_k/S of skills 2..n_s over all points), ``rmse_basic_heldout`` (the
uncalibrated model: 1 - (1 - p_k)^D, or one skill per neuron), ``exponent_{data,params}_{real,theory,predicted}``
(ln final test loss against ln D or ln N; predicted -alpha/(alpha+1) and -alpha) and ``twin_max_skill``.

Criteria (judged by the engine's one verdict rule, :mod:`comparisons.engine.stats`: intervals over seeds, p-values
against the nulls below, normalised agreement between null and noise ceiling):

- ``neg_rmse_heldout`` (= -``rmse_heldout``: larger is better, as the engine's p-values read a normalised
  criterion's ``>=``; negating leaves the normalised value unchanged): normalised agreement ``>= rmse_norm_min``
  (0.5; ``(">=", 0.5, "normalised")``): the theory's held-out curves are at least half-way from chance (the
  skill-permutation null's mean, 0) to another seed of the same net (the noise ceiling, 1). Normalised, not a bare
  RMSE: the bare RMSE depends on the run window (skills that neither emerge nor are predicted to inside it add zero
  error and shrink it) and on the probe noise; null and ceiling shrink with it, so the normalised score is
  comparable across presets. (It can exceed 1: the ceiling compares two noisy seeds, the theory has no sampling
  noise.)
- ``log_ratio_mae <= log_ratio_max`` (0.405, every held-out skill within a factor 1.5 in time): an absolute bar,
  since a factor in emergence time means the same in every window; its null is the same skill permutation.
- ``slope_error <= slope_tol`` (0.3): |slope + 1| of ln t_k against ln p_k, predicted exactly -1 (docs/theory.md
  4.4); absolute for the same reason; its null shuffles the frequencies.
- data / params variants: ``neg_rmse_heldout`` as above (final R_k/S over the sweep points), null and ceiling alike.

Nulls (``nulls``, ``null_draws`` = 200 seeded draws per run, seeded by the run's seed so the seeds' draws are
independent and the engine's pooled null, draw j averaged over seeds, is a draw of the seed mean under the null):

- ``neg_rmse_heldout`` and ``log_ratio_mae``: the skill assignment permuted. Draw j pairs observed held-out skill k
  with the calibrated prediction of held-out skill pi_j(k), pi_j a uniform random permutation of skills 2..n_s
  (skill 1 fixed: it carries the fitted constant, which stays fitted on the true skill 1). This keeps everything
  the theory gets for free (the sigmoid shape, the calibrated tau, the range of times) and breaks only the claim
  under test, that skill k's curve and time follow from its own p_k. A time-shift null was rejected: a shifted
  sigmoid family keeps the 1/p_k law and only tests the fitted tau. With 4 held-out skills there are only 24
  permutations (the identity among them, so one run's p cannot go below ~1/24 and ties such as two skills that
  stay at 0 raise it); the pooled null over 3 seeds has 24^3 cases, so the seed mean can reach p < 0.05. Draws
  are uniform random permutations with replacement (the identity included), not the exact enumeration, so that
  every seed has the same number of independent draws for the engine's pooling.
- ``slope_error``: the frequencies shuffled: the slope of ln t_obs,k against ln p_pi_j(k), pi_j a uniform random
  permutation of all n_s skills, over the skills that emerged.

Noise ceiling (:func:`ceiling`): the same three judged scores with seed b's real net standing in for the theory's
prediction of seed a's: minus the RMSE of seed a's held-out R_k/S against seed b's, mean |ln(t_a,k / t_b,k)| over the
held-out skills (censored as for the theory), and |slope_a - slope_b|.

The scaling exponents are reported, not judged: with n_s = 5 skills the loss is a staircase of five steps, so the
asymptotic power law is only a trend (compare real with the finite-n_s theory over the same window).

Negative controls:

- ``shuffled_control`` (time): the real net trained with control bits unrelated to the target. Rejected when its
  skills do not emerge in order: fewer than ``min_emerged`` reach ``level``, or their slope misses -1 by more than
  ``slope_tol``. Score: the number of skills that emerged.
- ``swapped_frequencies`` (all variants): the same one-constant fit with p_k reversed. Rejected when its held-out
  RMSE exceeds ``rmse_max`` and the true prediction's. Score: that RMSE.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from comparisons.emergence.metrics import power_law_exponent, rmse, sharpness, slope_fit
from comparisons.engine import stats
from comparisons.engine.config import phenomenon_knobs
from comparisons.engine.metrics import first_crossing
from comparisons.engine.phenomenon import Outcome, Prediction

if TYPE_CHECKING:
    from comparisons.engine.rundir import Run

VARIANTS = ("time", "data", "params")
CONTROL_MEMBER = "real:control=shuffled_control"


def knobs(cfg: Any) -> dict[str, Any]:
    """The phenomenon's knobs: conf/phenomenon/emergence.yaml overridden by ``cfg.phenomenon`` (``cfg`` may be None).

    Raises:
        ConfigError: An unknown key (with the closest known ones) or an unknown variant.
    """
    kn = phenomenon_knobs("emergence", None if cfg is None else cfg.phenomenon)
    if kn["variant"] not in VARIANTS:
        from comparisons.engine.config import ConfigError

        raise ConfigError(f"phenomenon.variant={kn['variant']!r} is not known; choose one of: {', '.join(VARIANTS)}")
    return kn


def score(curves: pd.DataFrame, prediction: Prediction, cfg: Any) -> Outcome:
    """Scores, criteria, nulls and negative controls of one emergence run (module docstring)."""
    kn = knobs(cfg)
    kn["rng_seed"] = int(getattr(cfg, "seed", 0) or 0) if cfg is not None else 0
    if prediction.numbers["variant"] == "time":
        return _score_time(curves, prediction, kn)
    return _score_final(curves, prediction, kn)


def log_ratios(t_obs: np.ndarray, t_pred: np.ndarray, last: float) -> np.ndarray:
    """ln(t_obs/t_pred) per skill; a skill predicted inside the run (t_pred <= last) that never emerged gets the
    lower bound ln(last / t_pred); NaN where neither emerged nor predicted to inside the run."""
    t_obs, t_pred = np.asarray(t_obs, dtype=np.float64), np.asarray(t_pred, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.log(t_obs / t_pred)
        censored = ~np.isfinite(t_obs) & (t_pred <= last)
        ratios[censored] = np.log(last / t_pred[censored])
    return ratios


def mean_abs(ratios: np.ndarray) -> float:
    """Mean |ratio| over the finite entries (NaN if none): ``log_ratio_mae`` of the held-out skills."""
    a = np.abs(np.asarray(ratios, dtype=np.float64))
    return float(np.mean(a[np.isfinite(a)])) if np.isfinite(a).any() else math.nan


def permutations(n_held: int, n_all: int, draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded null draws: (draws, n_held) permutations of the held-out skills' indices 1..n_held (skill 1, index 0,
    fixed) and (draws, n_all) permutations of all skills (the shuffled frequencies); independent across seeds."""
    rng = np.random.default_rng([seed, 20250221])
    held = np.array([rng.permutation(n_held) + 1 for _ in range(draws)], dtype=np.int64).reshape(draws, n_held)
    full = np.array([rng.permutation(n_all) for _ in range(draws)], dtype=np.int64).reshape(draws, n_all)
    return held, full


def emergence_steps(steps: np.ndarray, r: np.ndarray, level: float) -> np.ndarray:
    """Crossing step of ``level`` for each column of r (T, n_s) -> (n_s,), NaN where it never crosses."""
    return np.array([first_crossing(steps, r[:, k], level, "linear") for k in range(r.shape[1])])


def ordered_slope(p: np.ndarray, t: np.ndarray, kn: dict[str, Any]) -> dict[str, float]:
    """Slope of ln t_k against ln p_k over the emerged skills, its interval, error |slope + 1| and the count."""
    ok = np.isfinite(t)
    n = int(ok.sum())
    slope, lo, hi = slope_fit(np.log(p[ok]), np.log(t[ok])) if n >= 2 else (math.nan,) * 3
    err = abs(slope + 1.0) if n >= kn["min_emerged"] else math.nan
    return {"slope": slope, "slope_lo": lo, "slope_hi": hi, "slope_error": err, "n_emerged": float(n)}


def _score_time(curves: pd.DataFrame, prediction: Prediction, kn: dict[str, Any]) -> Outcome:
    from comparisons.emergence.theory import calibrate

    nums = prediction.numbers
    p, n, level = np.asarray(nums["p"]), len(nums["p"]), nums["level"]
    cols = [f"skill_{k + 1}" for k in range(n)]
    real = _wide(curves, "real")
    steps = real.index.to_numpy(dtype=np.float64)
    r = real.reindex(columns=cols).to_numpy()
    th = _wide(curves, "theory").reindex(index=real.index, columns=cols).to_numpy()
    scores: dict[str, float] = {
        "tau": nums.get("constant", math.nan),
        "rmse_heldout": rmse(r[:, 1:], th[:, 1:]),
        "rmse_skill1": rmse(r[:, 0], th[:, 0]),
    }
    scores["neg_rmse_heldout"] = -scores["rmse_heldout"]
    t_obs, t_pred = emergence_steps(steps, r, level), np.asarray(nums.get("t_pred", [math.nan] * n))
    ratios = log_ratios(t_obs, t_pred, steps[-1])
    censored = ~np.isfinite(t_obs) & (t_pred <= steps[-1])  # predicted inside the run, never seen
    for k in range(n):
        scores.update({f"t_obs_{k + 1}": t_obs[k], f"t_pred_{k + 1}": t_pred[k], f"log_ratio_{k + 1}": ratios[k]})
    scores["log_ratio_mae"] = mean_abs(ratios[1:])
    scores.update(ordered_slope(p, t_obs, kn))
    sharp = [sharpness(steps, r[:, k], level=level) for k in range(n)]
    scores["sharpness_obs"] = float(np.nanmean(sharp)) if np.isfinite(sharp).any() else math.nan
    scores["sharpness_pred"] = nums.get("sharpness_pred", math.nan)
    scores.update(_time_exponents(curves, real, t_obs, nums))
    scores.update(_two_constant(steps, r, nums, scores["tau"]))
    if "twin" in set(curves["member"]):
        tw = _wide(curves, "twin").reindex(columns=cols).to_numpy()
        scores["twin_max_skill"] = float(np.nanmax(np.abs(tw)))
        scores["twin_rmse_heldout"] = rmse(tw[:, 1:], th[:, 1:])
    controls, notes = {}, []
    if CONTROL_MEMBER in set(curves["member"]):
        wc = _wide(curves, CONTROL_MEMBER)
        rc = wc.reindex(columns=cols).to_numpy()
        sl = ordered_slope(p, emergence_steps(wc.index.to_numpy(dtype=np.float64), rc, level), kn)
        ordered = stats.passes(sl, {"slope_error": ("<=", kn["slope_tol"])})["slope_error"] is True
        controls["shuffled_control"] = {
            "score": sl["n_emerged"],
            "rejected": not ordered,
            "note": f"{int(sl['n_emerged'])}/{n} skills reach R_k/S={level} (slope {sl['slope']:.2f}); final R_k/S "
            f"{np.round(rc[-1], 2).tolist()} ~ p_k {np.round(p, 2).tolist()}",
        }
    observed = curves[~curves["member"].str.startswith("theory")]
    swapped = calibrate(prediction, observed, p=list(p[::-1]))
    th_sw = _wide(swapped.curves, "theory").reindex(index=real.index, columns=cols).to_numpy()
    controls["swapped_frequencies"] = _swapped(rmse(r[:, 1:], th_sw[:, 1:]), scores["rmse_heldout"], kn)
    criteria = {
        "neg_rmse_heldout": (">=", kn["rmse_norm_min"], "normalised"),
        "log_ratio_mae": ("<=", kn["log_ratio_max"]),
        "slope_error": ("<=", kn["slope_tol"]),
    }
    held, full = permutations(n - 1, n, int(kn["null_draws"]), kn["rng_seed"])
    nulls = {
        "neg_rmse_heldout": [-rmse(r[:, 1:], th[:, pi]) for pi in held],
        "log_ratio_mae": [mean_abs(log_ratios(t_obs[1:], t_pred[pi], steps[-1])) for pi in held],
    }
    if math.isfinite(scores["slope_error"]):
        nulls["slope_error"] = [ordered_slope(p[pi], t_obs, kn)["slope_error"] for pi in full]
    if censored[1:].any():
        notes.append(
            f"skills {(np.nonzero(censored)[0] + 1).tolist()} never emerged though predicted inside the run;"
            " their log ratio is the lower bound ln(last step / t_pred)"
        )
    notes.append(f"tau = {scores['tau']:.3g} fitted on skill 1 (bare multilinear model: tau = 1)")
    fmt = lambda v: "/".join("-" if not math.isfinite(x) else f"{x:.0f}" for x in v)  # noqa: E731
    headline = {
        "predicted": f"t_k={fmt(t_pred)}",
        "observed": f"t_k={fmt(t_obs)}",
        "theory": f"rmse={scores['rmse_heldout']:.3f}",
        "twin": f"max R/S={scores.get('twin_max_skill', math.nan):.3f}",
    }
    return _outcome(scores, criteria, controls, notes, headline, nulls)


def _score_final(curves: pd.DataFrame, prediction: Prediction, kn: dict[str, Any]) -> Outcome:
    from comparisons.emergence.theory import calibrate

    nums = prediction.numbers
    variant, p, n = nums["variant"], np.asarray(nums["p"]), len(nums["p"])
    labels, x = list(nums["points"]), np.array(list(nums["points"].values()), dtype=np.float64)
    cols = [f"skill_{k + 1}" for k in range(n)]

    def table(prefix: str, source: pd.DataFrame = curves) -> tuple[np.ndarray, np.ndarray]:
        rows = [_wide(source, f"{prefix}:{lb}" if lb else prefix) for lb in labels]
        last = [w.iloc[-1] if not w.empty else pd.Series(dtype=float) for w in rows]
        return (
            np.array([s.reindex(cols).to_numpy(dtype=np.float64) for s in last]),
            np.array([float(s.get("test_loss", math.nan)) for s in last]),
        )

    r, loss = table("real")
    th, th_loss = table("theory")
    scores: dict[str, float] = {
        "constant": nums.get("constant", math.nan),
        "rmse_heldout": rmse(r[:, 1:], th[:, 1:]),
        "rmse_skill1": rmse(r[:, 0], th[:, 0]),
    }
    from linear_models import skills

    basic = skills.data_strength(x, p) if variant == "data" else skills.parameter_strength(x, n)
    scores["rmse_basic_heldout"] = rmse(r[:, 1:], np.atleast_2d(basic)[:, 1:])
    name = "data" if variant == "data" else "params"
    scores[f"exponent_{name}_real"] = power_law_exponent(x, loss)
    scores[f"exponent_{name}_theory"] = power_law_exponent(x, th_loss)
    scores[f"exponent_{name}_predicted"] = nums["exponents"].get(name, math.nan)
    tw, _ = table("twin")
    if np.isfinite(tw).any():
        scores["twin_max_skill"] = float(np.nanmax(np.abs(tw)))
    observed = curves[~curves["member"].str.startswith("theory")]
    swapped = calibrate(prediction, observed, p=list(p[::-1]))
    th_sw, _ = table("theory", swapped.curves)
    controls = {"swapped_frequencies": _swapped(rmse(r[:, 1:], th_sw[:, 1:]), scores["rmse_heldout"], kn)}
    notes = [f"{nums.get('fit')} = {scores['constant']:.3g} fitted on skill 1's final strength"]
    headline = {
        "predicted": f"{nums.get('fit')}={scores['constant']:.3g}",
        "observed": f"n={len(labels)} points",
        "theory": f"rmse={scores['rmse_heldout']:.3f}",
        "twin": f"max R/S={scores.get('twin_max_skill', math.nan):.3f}",
    }
    held, _ = permutations(n - 1, n, int(kn["null_draws"]), kn["rng_seed"])
    scores["neg_rmse_heldout"] = -scores["rmse_heldout"]
    nulls = {"neg_rmse_heldout": [-rmse(r[:, 1:], th[:, pi]) for pi in held]}
    criteria = {"neg_rmse_heldout": (">=", kn["rmse_norm_min"], "normalised")}
    return _outcome(scores, criteria, controls, notes, headline, nulls)


def _time_exponents(curves: pd.DataFrame, real: pd.DataFrame, t_obs: np.ndarray, nums: dict[str, Any]) -> dict:
    """Loss exponents in t between the first and the last observed emergence (real, theory) and the predicted one."""
    out = {"exponent_time_predicted": nums["exponents"].get("time", math.nan)}
    ok = t_obs[np.isfinite(t_obs)]
    lo, hi = (ok.min(), ok.max()) if ok.size >= 2 else (math.nan, math.nan)
    for member, wide in (("real", real), ("theory", _wide(curves, "theory"))):
        if "test_loss" not in wide or not math.isfinite(lo):
            out[f"exponent_time_{member}"] = math.nan
            continue
        win = wide.loc[(wide.index >= lo) & (wide.index <= hi), "test_loss"]
        out[f"exponent_time_{member}"] = power_law_exponent(win.index.to_numpy(dtype=np.float64), win.to_numpy())
    return out


def _two_constant(steps: np.ndarray, r: np.ndarray, nums: dict[str, Any], tau: float) -> dict[str, float]:
    """Diagnostic: tau and R_0 both fitted on skill 1 (shape freed), the held-out RMSE and the sharpness then."""
    from comparisons.emergence.theory import fit_tau_r0, theory_time_values

    tau2, r02 = fit_tau_r0(steps, r[:, 0], nums, tau)
    th2 = theory_time_values(steps, {**nums, "R0": r02}, tau2)
    c = nums["S"] / r02 - 1.0 if math.isfinite(r02) else math.nan
    return {
        "tau_2c": tau2,
        "R0_2c": r02,
        "rmse_heldout_2c": rmse(r[:, 1:], th2[:, 1:]),
        "sharpness_pred_2c": 2 * math.log(9) / math.log(c) if c > 1 else math.nan,
    }


def _swapped(rmse_swapped: float, rmse_true: float, kn: dict[str, Any]) -> dict[str, Any]:
    fails = stats.passes({"rmse": rmse_swapped}, {"rmse": ("<=", kn["rmse_max"])})["rmse"] is False
    bad = fails and not rmse_swapped <= rmse_true
    return {
        "score": rmse_swapped,
        "rejected": bool(bad),
        "note": f"p_k reversed, constant refitted on skill 1: held-out RMSE {rmse_swapped:.3f} "
        f"vs {rmse_true:.3f} for the true p_k",
    }


def _outcome(
    scores: dict[str, float],
    criteria: dict[str, tuple],
    controls: dict[str, Any],
    notes: list[str],
    headline: dict[str, str],
    nulls: dict[str, list[float]],
) -> Outcome:
    """The run's Outcome: the engine decides the verdict; a control not rejected is noted here."""
    unrejected = [k for k, c in controls.items() if not c["rejected"]]
    if unrejected:
        notes.append(f"negative control(s) {unrejected} not rejected: the scores cannot tell them apart")
    return Outcome(
        scores={k: float(v) for k, v in scores.items()},
        negative_controls=controls,
        notes=notes,
        criteria=criteria,
        headline=headline,
        nulls={k: [float(x) for x in v] for k, v in nulls.items()},
        kinds={k: "real" for k in criteria},
    )


def ceiling(run_a: Run, run_b: Run) -> dict[str, float]:
    """The noise ceiling: seed b's real net standing in for the theory's prediction of seed a's (module docstring).

    Time variant: ``neg_rmse_heldout`` (minus the RMSE of R_k/S of skills 2..n_s on seed a's eval steps),
    ``log_ratio_mae`` (ln(t_a,k / t_b,k), censored as for the theory) and ``slope_error`` (|slope_a - slope_b|,
    NaN unless both seeds have ``min_emerged`` skills). Data / params: ``neg_rmse_heldout`` of the final R_k/S over
    the sweep points.
    """
    nums = run_a.summary.get("prediction", {})
    kn = phenomenon_knobs("emergence", run_a.config.get("phenomenon", {}))
    n = len(nums["p"])
    cols = [f"skill_{k + 1}" for k in range(n)]
    if nums.get("variant", kn["variant"]) != "time":
        labels = list(nums.get("points", {}))

        def final(run: Run) -> np.ndarray:
            rows = [_wide(run.curves, f"real:{lb}" if lb else "real") for lb in labels]
            return np.array([w.iloc[-1].reindex(cols).to_numpy(dtype=np.float64) for w in rows])

        return {"neg_rmse_heldout": -rmse(final(run_a)[:, 1:], final(run_b)[:, 1:])}
    wa = _wide(run_a.curves, "real")
    wb = _wide(run_b.curves, "real").reindex(index=wa.index)
    steps = wa.index.to_numpy(dtype=np.float64)
    ra, rb = wa.reindex(columns=cols).to_numpy(), wb.reindex(columns=cols).to_numpy()
    ta, tb = emergence_steps(steps, ra, kn["level"]), emergence_steps(steps, rb, kn["level"])
    p = np.asarray(nums["p"], dtype=np.float64)
    sa, sb = ordered_slope(p, ta, kn), ordered_slope(p, tb, kn)
    both = math.isfinite(sa["slope_error"]) and math.isfinite(sb["slope_error"])
    return {
        "neg_rmse_heldout": -rmse(ra[:, 1:], rb[:, 1:]),
        "log_ratio_mae": mean_abs(log_ratios(ta[1:], tb[1:], steps[-1])),
        "slope_error": abs(sa["slope"] - sb["slope"]) if both else math.nan,
    }


def _wide(curves: pd.DataFrame, member: str) -> pd.DataFrame:
    rows = curves[curves["member"] == member]
    return rows.pivot_table(index="step", columns="metric", values="value").sort_index()
