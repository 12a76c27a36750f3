"""Scores, criteria, nulls, ceiling and negative controls of grokking (docs/theory.md 6).

Per member, from the saved curves: t_fit, t_gen, the delay t_gen - t_fit, censoring (:func:`grok_timing`).

- (a) Classification across the sweep: predicted "delayed generalisation" (Sigma_0/S > ``ratio_threshold``)
  against observed (``delay_measure`` above ``delay_threshold``: by default (t_gen - t_fit) 2 lr wd > 2, a delay
  longer than two e-folds of Sigma's decay under weight decay alone, on the law's own clock, so one threshold
  serves every lr * wd; presets with coupled L2 (Adam) use log10(t_gen/t_fit) in decades instead). A censored run
  counts as delayed once its delay lower bound exceeds the threshold, else it is left out. Scores
  ``a_accuracy``, ``a_n``, ``a_tp``, ``a_fp``, ``a_fn``, ``a_tn`` (real nets, controls excluded).
- (b) Scaling: least squares of the observed t_gen and delay against x = 1/(lr_eff wd) (``b_lrwd_tgen_*``,
  ``b_lrwd_delay_*``) and against x = ln(init scale) (``b_init_*``), one line per group of the other sweep
  coordinates (seeds pooled as replicates): ``r2``, ``slope``, the predicted slope (the same fit on the predicted
  delays), their ratio (predicted/observed) and ``sign_ok`` (1 when the slopes agree in sign); uncensored runs
  only (:func:`scaling`). The criteria use ``law_observable`` (default t_gen: the law's t_grok counts from init).

Criteria (thresholds in conf/phenomenon/grokking.yaml): ``a_accuracy >= accuracy_min`` when at least
``min_classified`` runs are classified; ``b_*_sign_ok >= 1`` and ``b_*_r2 >= r2_min`` (for the ``law_observable``)
when that axis has a law group (:func:`scaling`), plus ``b_*_slope_log_error <= ln(slope_factor)`` (predicted slope
within a factor 3 of the observed) where the delay law applies (decoupled weight decay): sign and R^2 alone would
pass any monotone trend. The verdict is the engine's (comparisons/engine/stats.py): over seeds, every criterion's
interval on its passing side and every criterion with a null beating it at p < 0.05.

Kinds, nulls and ceiling (:func:`nulls`, :func:`ceiling`):

- ``a_accuracy`` is a ``fraction`` of ``a_n`` trials (Wilson interval on the counts pooled over seeds). Its null
  (:func:`accuracy_null`, ``null_draws`` draws, seeded by the run's seed so seeds draw independently) permutes the
  observed delayed labels among the classified points, predictions fixed: the accuracy of a call that knows how
  many points delay but not which. With k of n points delayed a perfect score has chance 1/C(n, k) per seed, so a
  2-point sweep can never reach p < 0.05 over 3 seeds (1/8), a 4-point one with 2 delayed can ((1/6)^3).
- ``b_*_r2`` and ``b_*_slope_log_error`` (where they are criteria): :func:`scaling_null` permutes the observed
  timings among the runs of each group (axis and predicted delays fixed), ``null_draws_scaling`` draws, a wrong-
  signed slope's log error capped at ``LOG_ERROR_CAP``. ``b_*_sign_ok`` has no null: it is 0 or 1 per run, and
  chance alone passes 3 seeds 1 time in 8, so it can only be a plain criterion.
- Noise ceiling (:func:`ceiling`): ``a_accuracy`` of seed b's observed labels taken as the prediction of seed a's,
  over the points both classify; the engine reports the normalised agreement (0 = the null's mean, 1 = the ceiling).
  The criterion stays absolute (``accuracy_min``), not normalised: the suite's points sit far from the threshold
  on both sides, where the net's own call does not change between seeds (ceiling 1, so both read the same), and a
  normalised criterion would be judged on a t interval of three 0/1-valued per-seed scores instead of the Wilson
  interval of the pooled counts; where the ceiling falls below 1 (points near the threshold), the evidence shows it.

Negative controls: ``shuffled_labels`` (score: its best test accuracy; rejected when it never generalises, i.e.
is censored) and ``reversed_ratio`` (the prediction with Sigma_0/S replaced by S/Sigma_0, scored by the same (a)
and (b); score: its (a) accuracy, else its slope sign; rejected when it passes fewer criteria than the real
prediction, :func:`comparisons.engine.stats.passes` on each run's point values). The engine reports both; neither
enters its verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from comparisons.engine import stats
from comparisons.engine.config import ConfigError, phenomenon_knobs
from comparisons.engine.phenomenon import Outcome, Prediction
from comparisons.grokking.metrics import Timing, confusion, grok_timing, grouped_fit, observed_delayed
from linear_models.grokking import delay

if TYPE_CHECKING:
    from comparisons.engine.rundir import Run

LOG_ERROR_CAP = 10.0  # a null draw's slope_log_error above this (off by e^10, or the wrong sign) counts as this


def knobs(cfg: Any) -> dict[str, Any]:
    """The phenomenon's knobs: conf/phenomenon/grokking.yaml overridden by ``cfg.phenomenon`` (a RunCfg, a config
    dict, or None).

    Raises:
        ConfigError: An unknown knob or a bad choice, named with its fix.
    """
    if cfg is None:
        given: Mapping[str, Any] = {}
    elif isinstance(cfg, Mapping):
        given = cfg.get("phenomenon", {}) or {}
    else:
        given = cfg.phenomenon
    kn = phenomenon_knobs("grokking", given)
    for key, allowed in (
        ("ratio_definition", ("weights", "ntk")),
        ("delay_measure", ("log_ratio", "steps", "efolds")),
        ("ntk_outputs", ("sum", "full")),
        ("law_observable", ("t_gen", "delay")),
    ):
        if kn[key] not in allowed:
            raise ConfigError(f"phenomenon.{key}={kn[key]!r} is not known; choose one of: {', '.join(allowed)}")
    kn["points"] = {str(k): dict(v) for k, v in (kn["points"] or {}).items()}
    return kn


def timings(curves: pd.DataFrame, kn: dict[str, Any]) -> dict[str, Timing]:
    """t_fit / t_gen / delay / censoring of every trained member in a curves table."""
    out = {}
    acc = curves[curves["metric"].isin(["train_acc", "test_acc"]) & ~curves["member"].str.startswith("theory")]
    for name, g in acc.groupby("member", sort=False):
        wide = g.pivot_table(index="step", columns="metric", values="value").sort_index()
        if {"train_acc", "test_acc"} <= set(wide.columns):
            out[name] = grok_timing(
                wide.index.to_numpy(),
                wide["train_acc"].to_numpy(),
                wide["test_acc"].to_numpy(),
                kn["fit_threshold"],
                kn["gen_threshold"],
            )
    return out


def member_table(
    curves: pd.DataFrame, prediction: Prediction, kn: dict[str, Any], flip: bool = False
) -> list[dict[str, Any]]:
    """One row per member: its prediction (``flip``: with the ratio axis reversed) and its observed timing."""
    info = prediction.numbers.get("members", {})
    obs = timings(curves, kn)
    rows = []
    for name, p in info.items():
        if name not in obs:
            continue
        t = obs[name]
        ratio = 1.0 / p["ratio"] if flip else p["ratio"]
        pred_delay = p["predicted_delay"]
        if flip and p["decoupled"] and p["wd"] > 0:
            pred_delay = float(delay(ratio, p["lr_eff"], p["wd"], kn["c"]))
        init = p.get("init_scale")
        rows.append(
            {
                "name": name,
                "role": p["role"],
                "control": p.get("control"),
                "values": p.get("values", {}),
                "ratio": ratio,
                "predicted": bool(ratio > kn["ratio_threshold"]),
                "predicted_delay": pred_delay,
                "timing": t,
                "observed": observed_delayed(t, kn["delay_threshold"], kn["delay_measure"], p.get("decay_rate")),
                "inv_lrwd": 1.0 / (p["lr_eff"] * p["wd"]) if p["wd"] > 0 else math.inf,
                "log_init": math.log(init) if init else math.nan,
                "gamma_plus": p["gamma_plus"],
                "call": p["call"],
            }
        )
    return rows


def scaling(
    rows: list[dict[str, Any]], axis: str, kn: dict[str, Any], observable: str = "t_gen"
) -> dict[str, float] | None:
    """Score (b) on one axis (``inv_lrwd`` or ``log_init``): observed and predicted slopes, R^2, ratio, sign.

    The observable is ``t_gen`` (the law's t_grok counts from init: weight decay shrinks Sigma from step 0,
    docs/theory.md 6.3) or ``delay`` = t_gen - t_fit (the same when t_fit << t_gen; smaller when a large init also slows
    the fit).

    Runs are grouped by every sweep coordinate except the axis's own keys and the replicate keys (so seeds pool
    inside a group), and each group gets its own least-squares line: the law's slope in 1/(lr wd) is
    ln(Sigma_0/(c S))/2, which differs between inits. Groups with at least 3 uncensored runs, x varying and a
    nonzero predicted slope count ("law groups"); with no law (coupled L2) the ln(init) axis uses the sign of
    d ln(Sigma_0/S)/d ln(init) as the predicted sign. Scores are means over law groups weighted by their run count
    (``slope_ratio`` = mean predicted / mean observed slope); ``sign_ok`` is 1 when every law group's observed slope
    has the predicted sign.

    Returns:
        ``{"n", "groups", "r2", "slope", "slope_pred", "slope_ratio", "slope_log_error", "sign_ok", "law"}`` (plus
        ``c_implied`` on the
        1/(lr wd) axis: the c for which the law's slope ln(Sigma_0/(c S))/2 equals the observed one), or None
        without a law group.
    """
    fits, uses_law = [], []
    for g in _groups(rows, axis, kn):
        x = [r[axis] for r in g]
        if len(g) < 3 or len(set(x)) < 2:
            continue
        obs = grouped_fit(x, [getattr(r["timing"], observable) for r in g], ["g"] * len(g))
        pred_d = [r["predicted_delay"] for r in g]
        law = all(p is not None and math.isfinite(p) for p in pred_d)
        if law:
            ps = grouped_fit(x, pred_d, ["g"] * len(g))["slope"]
        elif axis == "log_init":
            ps = grouped_fit(x, [math.log(r["ratio"]) for r in g], ["g"] * len(g))["slope"]
        else:
            continue
        if ps != 0 and math.isfinite(ps):
            fits.append((len(g), obs, ps, float(np.mean([math.log(r["ratio"]) for r in g]))))
            uses_law.append(law)
    if not fits:
        return None
    w = np.array([n for n, _, _, _ in fits], dtype=np.float64)
    mean = lambda v: float(np.average(np.asarray(v, dtype=np.float64), weights=w))  # noqa: E731
    out = {
        "n": float(w.sum()),
        "groups": float(len(fits)),
        "r2": mean([o["r2"] for _, o, _, _ in fits]),
        "slope": mean([o["slope"] for _, o, _, _ in fits]),
        "slope_pred": mean([p for _, _, p, _ in fits]),
        "slope_ratio": _safe_div(mean([p for _, _, p, _ in fits]), mean([o["slope"] for _, o, _, _ in fits])),
        "sign_ok": float(all(np.sign(p) == np.sign(o["slope"]) for _, o, p, _ in fits)),
    }
    ratio = out["slope_ratio"]
    out["slope_log_error"] = abs(math.log(ratio)) if ratio > 0 else math.inf  # |ln(pred/obs)|: 0 = exact
    out["law"] = float(all(uses_law))  # 1: predicted slopes from the delay law; 0: only the sign of ln(ratio)
    if axis == "inv_lrwd":  # slope = ln(Sigma_0/(c S))/2  =>  ln c = ln(ratio) - 2 slope: the intercept the data imply
        out["c_implied"] = math.exp(mean([log_ratio - 2.0 * o["slope"] for _, o, _, log_ratio in fits]))
    return out


def _groups(rows: list[dict[str, Any]], axis: str, kn: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The uncensored runs with a finite ``axis``, grouped by every sweep coordinate but the axis's and replicates'."""
    own = set(kn["lrwd_keys"] if axis == "inv_lrwd" else kn["init_keys"]) | set(kn["replicate_keys"])
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if not r["timing"].censored and math.isfinite(r[axis]):
            key = repr(sorted((k, str(v)) for k, v in r["values"].items() if k not in own))
            groups.setdefault(key, []).append(r)
    return list(groups.values())


def accuracy_null(rows: list[dict[str, Any]], draws: int, rng: np.random.Generator) -> list[float]:
    """Null of (a): the accuracy with the observed delayed labels permuted among the classified runs.

    The predictions stay where they are; a classifier no better than chance at telling these points apart scores
    like these draws (with 2 points, 1 in 2 draws is perfect; with 4 points, 2 of them delayed, 1 in 6).
    """
    pairs = [(bool(r["predicted"]), bool(r["observed"])) for r in rows if r["observed"] is not None]
    if len(pairs) < 2:
        return []
    pred = np.array([p for p, _ in pairs])
    obs = np.array([o for _, o in pairs])
    return [float(np.mean(pred == obs[rng.permutation(obs.size)])) for _ in range(draws)]


def scaling_null(
    rows: list[dict[str, Any]], axis: str, kn: dict[str, Any], observable: str, draws: int, rng: np.random.Generator
) -> dict[str, list[float]]:
    """Null of (b): :func:`scaling` with the observed timings permuted among the runs of each group.

    The axis and the predicted delays stay with their points, so a permuted draw has the predicted slope and an
    observed slope that the axis does not explain: ``r2`` and ``slope_log_error`` must beat it. ``sign_ok`` gets no
    null: it is 0 or 1 per run, so 3 seeds of chance already give 1 with probability ~1/8 and p < 0.05 is out of
    reach; it stays a plain criterion.
    """
    groups = _groups(rows, axis, kn)
    out: dict[str, list[float]] = {"r2": [], "slope_log_error": []}
    for _ in range(draws):
        shuffled = []
        for g in groups:
            perm = rng.permutation(len(g))
            shuffled += [{**r, "timing": g[j]["timing"]} for r, j in zip(g, perm, strict=True)]
        fit = scaling(shuffled, axis, kn, observable)
        for k in out:  # a wrong-signed slope has an infinite log error: capped, so the engine keeps the draw
            out[k].append(min(fit[k], LOG_ERROR_CAP) if fit is not None else math.nan)
    return out


def nulls(
    rows: list[dict[str, Any]], kn: dict[str, Any], criteria: dict[str, tuple[str, float]], cfg: Any
) -> dict[str, list[float]]:
    """Permutation nulls of the criteria that have one (:func:`accuracy_null`, :func:`scaling_null`), per seed."""
    real = [r for r in rows if r["role"] == "real" and not r["control"]]
    out: dict[str, list[float]] = {}
    if "a_accuracy" in criteria:
        out["a_accuracy"] = accuracy_null(real, int(kn["null_draws"]), _rng(cfg, 1))
    for salt, (axis, tag) in enumerate((("inv_lrwd", "b_lrwd"), ("log_init", "b_init")), start=2):
        name = f"{tag}_{kn['law_observable'].replace('_', '')}"
        if f"{name}_r2" not in criteria:
            continue
        null = scaling_null(real, axis, kn, kn["law_observable"], int(kn["null_draws_scaling"]), _rng(cfg, salt))
        out.update({f"{name}_{k}": v for k, v in null.items() if f"{name}_{k}" in criteria})
    return out


def _rng(cfg: Any, salt: int) -> np.random.Generator:
    """The nulls' generator, one per seed (the engine averages the seeds' draws, so they must be independent)."""
    seed = cfg.get("seed", 0) if isinstance(cfg, Mapping) else getattr(cfg, "seed", 0)
    return np.random.default_rng([int(seed or 0), salt])


def judge(rows: list[dict[str, Any]], kn: dict[str, Any]) -> tuple[dict[str, float], dict[str, tuple[str, float]]]:
    """Scores (a) and (b) of a member table (real nets, controls excluded) and the criteria that apply."""
    real = [r for r in rows if r["role"] == "real" and not r["control"]]
    table = confusion([r["predicted"] for r in real], [r["observed"] for r in real])
    scores = {f"a_{k}": float(v) for k, v in table.items() if k != "accuracy" or table["n"]}  # no NaN accuracy
    criteria: dict[str, tuple[str, float]] = {}
    if scores["a_n"] >= kn["min_classified"]:
        criteria["a_accuracy"] = (">=", float(kn["accuracy_min"]))
    for axis, tag in (("inv_lrwd", "b_lrwd"), ("log_init", "b_init")):
        for obs in ("t_gen", "delay"):
            fit = scaling(real, axis, kn, obs)
            if fit is None:
                continue
            name = f"{tag}_{obs.replace('_', '')}"
            scores.update({f"{name}_{k}": float(v) for k, v in fit.items()})
            if obs == kn["law_observable"]:
                criteria[f"{name}_sign_ok"] = (">=", 1.0)
                criteria[f"{name}_r2"] = (">=", float(kn["r2_min"]))
                if fit["law"]:  # a magnitude only where the delay law (decoupled wd) made the predicted slope
                    criteria[f"{name}_slope_log_error"] = ("<=", math.log(float(kn["slope_factor"])))
    return scores, criteria


def score(curves: pd.DataFrame, prediction: Prediction, cfg: Any) -> Outcome:
    """Scores (a), (b), their criteria and nulls, the twin's finding, per-member timing, negative controls."""
    kn = knobs(cfg)
    rows = member_table(curves, prediction, kn)
    scores, criteria = judge(rows, kn)
    passes = stats.passes(scores, criteria)
    real = [r for r in rows if r["role"] == "real" and not r["control"]]
    twin = [r for r in rows if r["role"] == "twin" and not r["control"]]
    for tag, group in (("real", real), ("twin", twin)):
        if group:
            scores[f"{tag}_fit_frac"] = sum(r["timing"].t_fit is not None for r in group) / len(group)
            scores[f"{tag}_gen_frac"] = sum(not r["timing"].censored for r in group) / len(group)
    if len(real) <= kn["point_scores_max"]:
        for r in rows:
            t = r["timing"]
            for key in ("t_fit", "t_gen", "delay"):
                if getattr(t, key) is not None:
                    scores[f"{r['name']}/{key}"] = float(getattr(t, key))
            scores[f"{r['name']}/censored"] = float(t.censored)
            wall = curves[
                (curves["member"] == r["name"]) & (curves["metric"] == "wall_s") & (curves["step"] == t.t_gen)
            ]
            if len(wall):  # seconds into the run at t_gen (phenomenon.wall_clock, grokking_fast)
                scores[f"{r['name']}/t_gen_s"] = float(wall["value"].iloc[0])
    controls = _controls(rows, curves, prediction, kn, passes, criteria)
    notes = [_note(r, kn) for r in rows]
    if twin and not any(not r["timing"].censored for r in twin):
        test = curves[curves["member"].isin([r["name"] for r in twin]) & (curves["metric"] == "test_acc")]["value"]
        notes.append(
            f"finding: no linear twin reached test accuracy {kn['gen_threshold']} (best {test.max():.3f}; "
            f"{sum(r['timing'].t_fit is not None for r in twin)}/{len(twin)} fit the training set): the layerwise "
            "linear model does not reach this generalisation"
        )
    for name, g in curves[curves["metric"] == "diverged"].groupby("member"):  # the train override hides them from run
        notes.append(f"{name} diverged (NaN/inf) at step {g['value'].min():g}; its curves end there")
    if not criteria:
        notes.append("no criterion applies (too few classified runs, no uncensored axis sweep): inconclusive")
    headline = _headline(real, twin, scores, kn["law_observable"])
    kinds = {"a_accuracy": "fraction"} if "a_accuracy" in scores else {}
    return Outcome(
        scores=scores,
        negative_controls=controls,
        notes=notes,
        criteria=criteria,
        headline=headline,
        nulls=nulls(rows, kn, criteria, cfg),
        kinds=kinds,
        trials={"a_accuracy": scores["a_n"]} if kinds else {},
    )


def ceiling(run_a: Run, run_b: Run) -> dict[str, float]:
    """Noise ceiling of (a): seed b's observed delayed labels as the "prediction" of seed a's, over the real points
    both seeds classify (the accuracy a theory could reach if the net's own seed-to-seed noise were all it missed)."""
    labels = []
    for run in (run_a, run_b):
        kn = knobs(run.config)
        rows = member_table(run.curves, Prediction(numbers=run.summary.get("prediction", {})), kn)
        labels.append({r["name"]: r["observed"] for r in rows if r["role"] == "real" and not r["control"]})
    common = [k for k in labels[0] if labels[0][k] is not None and labels[1].get(k) is not None]
    if not common:
        return {}
    return {"a_accuracy": float(np.mean([labels[0][k] == labels[1][k] for k in common]))}


def _safe_div(num: float, den: float) -> float:
    return num / den if den else math.nan


def _controls(rows, curves, prediction, kn, passes, criteria) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["control"] != "shuffled_labels":
            continue
        acc = curves[(curves["member"] == r["name"]) & (curves["metric"] == "test_acc")]["value"]
        best = float(acc.max()) if len(acc) else math.nan
        out["shuffled_labels"] = {
            "score": best,
            "rejected": bool(r["timing"].censored),
            "note": f"{r['name']}: best test accuracy {best:.3f}; "
            + (
                "censored (never generalised), as it must"
                if r["timing"].censored
                else f"generalised at step {r['timing'].t_gen:g}: the task leaks the rule, the control failed"
            ),
        }
    if criteria:
        flipped, _ = judge(member_table(curves, prediction, kn, flip=True), kn)
        fpass = stats.passes(flipped, criteria)
        n_true, n_flip = sum(bool(v) for v in passes.values()), sum(bool(v) for v in fpass.values())
        sc = flipped.get("a_accuracy", math.nan)
        if not math.isfinite(sc):
            sc = next((flipped[k] for k in criteria if k.endswith("sign_ok") and k in flipped), math.nan)
        out["reversed_ratio"] = {
            "score": float(sc),
            "rejected": n_flip < n_true,
            "note": f"ratio axis reversed (S/Sigma_0): passes {n_flip}/{len(criteria)} criteria vs {n_true} for the "
            f"real prediction; " + ", ".join(f"{k}={flipped.get(k, math.nan):.3g}" for k in criteria),
        }
    return out


def _note(r: dict[str, Any], kn: dict[str, Any]) -> str:
    t = r["timing"]
    pd_ = r["predicted_delay"]
    pred = f"pred delayed={'yes' if r['predicted'] else 'no'}" + (
        f" delay={pd_:.0f}"
        if pd_ is not None and math.isfinite(pd_)
        else " delay=n/a (no decoupled wd)"
        if pd_ is None
        else " delay=inf (wd=0)"
    )
    if t.t_fit is None:
        obs = f"never fit (train acc < {kn['fit_threshold']}) by step {t.budget:g}: censored"
    elif t.censored:
        obs = (
            f"t_fit={t.t_fit:g}, never reached test acc {kn['gen_threshold']} by step {t.budget:g}: censored "
            f"(delay > {t.delay_lower_bound:g})"
        )
    else:
        obs = f"t_fit={t.t_fit:g} t_gen={t.t_gen:g} delay={t.delay:g}"
    seen = "" if r["control"] else f"; delayed={'?' if r['observed'] is None else 'yes' if r['observed'] else 'no'}"
    head = f"{r['name']}: ratio={r['ratio']:.3g} gamma+={r['gamma_plus']:.3g} ({r['call']}) {pred}"
    return f"{head} | observed {obs}{seen}"


def _headline(real, twin, scores, law: str) -> dict[str, str]:
    if not real:
        return {}
    ratios = [r["ratio"] for r in real]
    cens = sum(r["timing"].censored for r in real)
    obs_d = sum(bool(r["observed"]) for r in real)
    theory = f"(a) acc={scores.get('a_accuracy', math.nan):.2f} n={scores.get('a_n', 0):.0f}"
    for tag, label in (("b_lrwd", "1/(lr wd)"), ("b_init", "ln init")):
        tag = f"{tag}_{law.replace('_', '')}"
        if f"{tag}_r2" in scores:
            theory += f"; {label}: R2={scores[f'{tag}_r2']:.2f} slope pred/obs={scores[f'{tag}_slope_ratio']:.2f}"
    gens = [r["timing"].t_gen for r in real if not r["timing"].censored]
    return {
        "predicted": f"delayed {sum(r['predicted'] for r in real)}/{len(real)} (ratio {min(ratios):.2g}-"
        f"{max(ratios):.2g})",
        "observed": f"delayed {obs_d}/{len(real)}, censored {cens}"
        + (f", t_gen {min(gens):g}-{max(gens):g}" if gens else ""),
        "theory": theory,
        "twin": f"twin fit {sum(r['timing'].t_fit is not None for r in twin)}/{len(twin)}, generalised "
        f"{sum(not r['timing'].censored for r in twin)}/{len(twin)}"
        if twin
        else "",
    }
