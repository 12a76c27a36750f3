"""Lazy vs rich: the KD map over imbalance x weight-to-target ratio (docs/theory.md 2.6, 2.7, 5; arXiv:2502.21009).

Three modes, chosen by ``phenomenon.mode``:

- ``fig6`` (Fig. 6a / 6b of the paper, docs/theory.md 5.2-5.4): a grid of 2-layer linear nets trained as one batched
  model, against the gradient-flow theory of ``linear_models.two_layer`` (comparisons/lazy_rich_fig6.py).
- ``width``: the pair runner over a width axis (NTK parametrisation); the slope of final KD against width, which
  the NTK limit says is negative (comparisons/lazy_rich/width.py, docs/theory.md 5.6).
- ``pair``: the generic matched pairs (real MLP or small ResNet + its layerwise linear twin) over ``sweep.grid``,
  with the 2-layer linear theory at each point's measured init: the exact gradient flow of f = W2 W1 x for 2-layer
  nets, a lambda-balanced 2-layer net at the measured lambda and product otherwise (comparisons/lazy_rich_theory.py).
  ``observe`` records the empirical-NTK kernel distance on a fixed probe batch (comparisons/ntk.py), relative weight
  change (global and per layer) and the effective rank of the weight change.

Scores (comparisons/lazy_rich_maps.py) compare log10(KD + 1e-6) maps: Spearman rank correlation, max |difference|
(decades), and the distance between the lazy/rich boundaries (the KD = level contour along the ratio axis, in
log10-ratio units, levels ``phenomenon.boundary_kd``). Negative controls: the prediction with its imbalance axis
permuted and with its ratio axis reversed must each score badly (rejected).

Verdict: ``Outcome.criteria`` (thresholds in ``conf/phenomenon/lazy_rich.yaml``); "agree" when every criterion passes,
"disagree" when one fails, "inconclusive" when a score is NaN (``comparisons.engine.aggregate.verdict_from_intervals``).

- fig6: theory vs simulation Spearman >= ``agree_spearman_fig6`` and max |d log10 KD| <= ``agree_maxdiff_fig6``;
  both maps obey the docs/theory.md 5.4 oracle: lazy and rich fractions >= ``oracle_frac``, wedge >=
  ``oracle_wedge_min`` decades.
- pair: the better of theory and twin (``best_vs_real_*``) has Spearman vs real >= ``agree_spearman`` and its
  boundary distance (first level) <= ``agree_boundary`` decades of Sigma_0/S.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from comparisons.engine.config import ConfigError, RunCfg, phenomenon_knobs
from comparisons.engine.members import Context, Member, eval_steps, time_factor
from comparisons.engine.metrics import effective_rank, relative_change
from comparisons.engine.ntk import empirical_ntk, kernel_distance, summed_logit_ntk
from comparisons.engine.phenomenon import Outcome, Phenomenon, Prediction
from comparisons.engine.rundir import Run
from comparisons.lazy_rich import maps as lrm
from comparisons.lazy_rich.grid import cell_table, fig6_maps, pair_maps

log = logging.getLogger(__name__)

MODES = ("pair", "fig6", "width")


def knobs(phen: dict[str, Any]) -> dict[str, Any]:
    """The phenomenon's knobs: conf/phenomenon/lazy_rich.yaml overridden by ``phen`` (unknown keys refused)."""
    k = phenomenon_knobs("lazy_rich", phen)
    if k["mode"] not in MODES:
        raise ConfigError(
            f"phenomenon.mode={k['mode']!r} must be one of {', '.join(MODES)} (conf/phenomenon/lazy_rich.yaml)"
        )
    return k


def observe(member: Member, step: int) -> dict[str, float]:
    """KD to the step-0 NTK on the probe batch, RWC (global and per weight tensor), effective rank of dW.

    The probe batch is the first ``probe_n`` training inputs of the member's task (the twin's whitened copy for the
    twin). The NTK (comparisons/ntk.py, full output-major, or summed-logit when ``kernel: summed``) is computed only
    at the steps ``predict`` stored in ``member.state["ntk_steps"]`` (all steps when absent).

    Returns:
        ``rwc``, ``rwc_l<i>`` (i = 1.. over weight tensors of dim >= 2), ``erank_dw_first``, ``erank_dw_last``, and at
        NTK steps ``kd`` and ``log10_kd``.
    """
    st = member.state
    opts = st.get("opts", {})
    names = [n for n, p in member.model.named_parameters() if p.requires_grad]
    params = dict(member.model.named_parameters())
    if "theta0" not in st:
        st["theta0"] = {n: params[n].detach().clone().cpu() for n in names}
    theta0 = st["theta0"]
    out: dict[str, float] = {}
    num = sum(float((params[n].detach().cpu().double() - theta0[n].double()).pow(2).sum()) for n in names)
    den = sum(float(theta0[n].double().pow(2).sum()) for n in names)
    out["rwc"] = math.sqrt(num / den) if den > 0 else math.nan
    weights = [n for n in names if theta0[n].dim() >= 2]
    for i, n in enumerate(weights, start=1):
        out[f"rwc_l{i}"] = relative_change(params[n].detach().cpu().numpy(), theta0[n].numpy())
    if weights and step > 0:
        for tag, n in (("first", weights[0]), ("last", weights[-1])):
            out[f"erank_dw_{tag}"] = effective_rank((params[n].detach().cpu() - theta0[n]).numpy())
    ntk_steps = st.get("ntk_steps")
    if ntk_steps is None or step in ntk_steps:
        x = member.task.x_train[: int(opts.get("probe_n", knobs({})["probe_n"]))]
        chunk = int(opts.get("ntk_chunk", knobs({})["ntk_chunk"]))
        kern = (
            summed_logit_ntk(member.model, x, chunk)
            if opts.get("kernel") == "summed"
            else empirical_ntk(member.model, x, chunk)
        )
        if "ntk0" not in st:
            st["ntk0"] = kern.cpu()
        kd = kernel_distance(st["ntk0"], kern.cpu())
        out["kd"], out["log10_kd"] = kd, float(lrm.log_kd(kd))
    return out


def predict(cfg: RunCfg, members: list[Member]) -> Prediction:
    """Theory KD curves per sweep point (member "theory:<point>"); also sets observe's options on every member.

    Theory (comparisons/lazy_rich_theory.py), in the coordinates the twin trains in (its task's inputs):

    - a 2-layer net (two weight matrices, e.g. ``mlp`` with depth 2): the gradient flow of f = (s W2) W1 x from the
      measured init (``linear_models.two_layer.predictor``, ODE; biases and the nonlinearity dropped), KD on the
      twin's training inputs. This is the 2-layer linear prediction at the measured lambda and ratio, exactly.
    - any other net: the reduced lambda-balanced 2-layer net at the measured lambda = (A - B) / h and product u0.

    One step-0 row each of ``lambda`` ((A - B) / h), ``u0``, ``sigma0`` ((A + B) / 2), ``s_top`` (top singular value
    of Sigma_yx on whitened inputs) and ``log10_ratio`` = log10(Sigma_0 / S), the map's ratio coordinate.
    """
    from comparisons.lazy_rich.theory import product_map, reduced_kd, whitened_task
    from deep_models import linear_twin
    from linear_models import two_layer

    k = knobs(cfg.phenomenon)
    steps = eval_steps(cfg.train.steps, cfg.train.eval_points, cfg.train.eval_grid)
    pick = np.unique(np.round(np.geomspace(1, len(steps) - 1, max(int(k["ntk_evals"]) - 1, 1))).astype(int))
    ntk_steps = {0, steps[-1], *(steps[i] for i in pick)}
    for m in members:
        m.state["opts"] = {key: k[key] for key in ("probe_n", "ntk_chunk", "kernel")}
        m.state["ntk_steps"] = ntk_steps
    twins = {m.name.partition(":")[2]: m for m in members if m.role == "twin"}
    rows: list[dict[str, Any]] = []
    numbers: dict[str, Any] = {"mode": "pair", "ntk_steps": sorted(ntk_steps), "points": {}}
    whitened: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    cache: dict[tuple, tuple[np.ndarray, str]] = {}
    for m in (m for m in members if m.role == "real"):
        label = m.name.partition(":")[2]
        twin = twins.get(label)
        model, task = (twin.model, twin.task) if twin is not None else (linear_twin(m.model), m.task)
        if id(task) not in whitened:
            whitened[id(task)] = whitened_task(task.x_train.cpu().numpy(), task.y_train.cpu().numpy())
        xw, y = whitened[id(task)]
        ws = [p.detach().double().cpu() for p in m.model.parameters() if p.dim() >= 2]
        out_scale = float(getattr(m.model, "output_scale", 1.0))
        a, b = float(ws[0].pow(2).sum()), float(ws[-1].pow(2).sum()) * out_scale**2
        lam = (a - b) / ws[0].shape[0]
        with torch.no_grad():
            f = torch.cat([model(task.x_train[i : i + 1024]) for i in range(0, len(task.x_train), 1024)])
        sv = np.linalg.svd(product_map(f.cpu().numpy(), xw), compute_uv=False)[: y.shape[1]]
        u0 = float(np.sqrt(np.mean(sv**2)))
        s_top = float(np.linalg.svd(y.T @ xw / len(xw), compute_uv=False)[0])
        times = np.array([time_factor(cfg.train.loss, y.shape[1]) * cfg.optim.lr * s for s in steps])
        key = (id(task), out_scale, *(hash(w.numpy().tobytes()) for w in ws))
        if key not in cache:
            if len(ws) == 2 and all(w.dim() == 2 for w in ws):
                x = task.x_train.double().cpu().reshape(len(task.x_train), -1).numpy()
                # f = s W2 W1 x trained on (W1, W2) is the plain flow of (sqrt(s) W1, sqrt(s) W2) at time s t
                # (docs/theory.md 5.6); KD is scale-free, so the NTK of either parametrisation gives the same KD
                r = math.sqrt(out_scale)
                flow = two_layer.predictor(r * ws[0].numpy(), r * ws[1].numpy(), x, y, method="auto")
                cache[key] = (np.clip(flow(out_scale * times)["kd"], 0.0, None), "two_layer_flow")
            else:
                rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 5]))
                cache[key] = (reduced_kd(times, lam, u0, xw, y, rng), "reduced_balanced")
        kd, method = cache[key]
        name = f"theory:{label}" if label else "theory"
        for s, t, v in zip(steps, times, kd, strict=True):
            rows += [
                {"member": name, "step": s, "time": t, "metric": "kd", "value": float(v)},
                {"member": name, "step": s, "time": t, "metric": "log10_kd", "value": float(lrm.log_kd(v))},
            ]
        extra = {
            "lambda": lam,
            "u0": u0,
            "sigma0": 0.5 * (a + b),
            "s_top": s_top,
            "log10_ratio": math.log10(0.5 * (a + b) / s_top) if s_top > 0 else math.nan,
        }
        rows += [{"member": name, "step": 0, "time": 0.0, "metric": key, "value": v} for key, v in extra.items()]
        numbers["points"][label] = {"A": a, "B": b, **extra, "theory": method}
    return Prediction(curves=pd.DataFrame(rows, columns=["member", "step", "time", "metric", "value"]), numbers=numbers)


def score(curves: pd.DataFrame, prediction: Prediction, cfg: RunCfg) -> Outcome:
    """Map scores, negative controls and the verdict (thresholds in the module docstring)."""
    k = knobs(cfg.phenomenon)
    if k["mode"] == "fig6":
        return _score_fig6(curves, prediction.numbers, k, cfg.seed)
    from comparisons.engine.sweep import point_label, sweep_points

    points = {point_label(p): p for p in sweep_points(cfg)}
    if k["mode"] == "width":
        from comparisons.lazy_rich.width import score_width

        return score_width(curves, points, k, cfg.seed)
    return _score_pair(curves, points, k, cfg.seed)


def figures(run: Run, out_dir: Path) -> list[Path]:
    """Side-by-side log10 KD heatmaps (and a predicted-vs-observed scatter), from the saved run only."""
    from comparisons.lazy_rich.figures import draw

    return draw(run, out_dir, knobs(run.config.get("phenomenon", {})))


def train(cfg: RunCfg, ctx: Context) -> tuple[pd.DataFrame, Prediction]:
    """The Phenomenon.train override: the batched Fig. 6 grid, or the generic matched-pair runner for ``pair``.

    ``Phenomenon.train`` is fixed per phenomenon, so ``mode: pair`` repeats what ``comparisons.engine.run.run`` does for
    phenomena without an override (build members, predict at init, train them together, observe).
    """
    k = knobs(cfg.phenomenon)
    if k["mode"] == "fig6":
        from comparisons.lazy_rich.fig6 import train_fig6

        return train_fig6(dict(k.get("fig6", {})), cfg.seed, cfg.optim.lr, cfg.train.steps, ctx.device)
    from comparisons.engine.loop import train_members
    from comparisons.engine.sweep import build_members

    members = build_members(cfg, ctx)
    prediction = predict(cfg, members)
    rows = train_members(members, ctx, observe, checkpoint=ctx.run_dir / "checkpoint.pt")
    prediction.numbers["diverged"] = {m.name: m.diverged_at for m in members if m.diverged_at is not None}
    return pd.DataFrame(rows, columns=["member", "step", "time", "metric", "value"]), prediction


def _score_fig6(curves: pd.DataFrame, numbers: dict[str, Any], k: dict[str, Any], seed: int = 0) -> Outcome:
    maps = fig6_maps(curves, numbers)
    lam, scale = np.asarray(numbers["lambda"]), np.asarray(numbers["scale"])
    levels = [float(v) for v in k["boundary_kd"]]
    sc = lrm.map_scores(maps["theory"], maps["twin"], np.log10(scale), levels)
    scores = {f"theory_vs_sim_{n}": v for n, v in sc.items()}
    scores["rich_cells_sim"], scores["rich_cells_theory"] = lrm.rich_cells(maps["twin"]), lrm.rich_cells(maps["theory"])
    nulls = {
        "theory_vs_sim_spearman": lrm.cell_permutation_null(maps["theory"], maps["twin"], lrm.spearman, seed=seed),
        "theory_vs_sim_max_abs_dlogkd": lrm.cell_permutation_null(
            maps["theory"], maps["twin"], lrm.max_abs_diff, seed=seed
        ),
    }
    informative = (maps["theory"] > -5) | (maps["twin"] > -5)  # at least a decade above the 1e-6 floor
    scores["theory_vs_sim_spearman_informative"] = lrm.spearman(maps["theory"][informative], maps["twin"][informative])
    oracle = k.get("oracle", {})
    for voice in ("twin", "theory"):
        tag = "sim" if voice == "twin" else "theory"
        scores.update({f"{n}_{tag}": v for n, v in oracle_checks(maps[voice], lam, scale, oracle).items()})
    controls = lrm.control_scores(
        maps["theory"], maps["twin"], sc["spearman"], k["control_margin"], k["control_reject_below"]
    )
    criteria: dict[str, tuple] = {
        "theory_vs_sim_spearman": (">=", float(k["agree_spearman_fig6"]), "normalised"),
        "theory_vs_sim_max_abs_dlogkd": ("<=", float(k["agree_maxdiff_fig6"])),
    }
    kinds = {"theory_vs_sim_spearman": "correlation", "theory_vs_sim_spearman_informative": "correlation"}
    trials: dict[str, float] = {}
    for name in scores:
        if name.startswith("oracle_") and "frac" in name:
            kinds[name] = "fraction"
            trials[name] = float(oracle_cells(lam, scale, oracle, name))
            if trials[name] >= int(k["oracle_min_cells"]):  # a handful of cells cannot confirm a fraction
                criteria[name] = (">=", float(k["oracle_frac"]))
        elif name.startswith("oracle_wedge"):
            criteria[name] = (">=", float(k["oracle_wedge_min"]))
    peak = {v: float(np.nanmax(maps[v])) for v in ("twin", "theory")}
    headline = {
        "predicted": f"max log10KD={peak['theory']:.2f}",
        "observed": f"max log10KD={peak['twin']:.2f}",
        "theory": f"rho={sc['spearman']:.3f} dmax={sc['max_abs_dlogkd']:.2f}",
        "twin": "n/a (sim = observed)",
    }
    notes = [
        f"theory ({numbers.get('theory_method')}) vs GD simulation of {lam.size}x{scale.size} nets; "
        "boundary distances are in log10(scale) units"
    ]
    notes += [
        f"{n} is reported, not judged: its region has {trials[n]:.0f} cells (< oracle_min_cells="
        f"{k['oracle_min_cells']}); oracle_wedge_decades carries that claim"
        for n in trials
        if n not in criteria
    ]
    return Outcome(
        scores=scores,
        negative_controls=controls,
        notes=notes,
        criteria=criteria,
        headline=headline,
        nulls=nulls,
        kinds=kinds,
        trials=trials,
    )


def oracle_cells(lam: np.ndarray, scale: np.ndarray, oracle: dict[str, Any], name: str) -> int:
    """The number of cells of the oracle region behind ``oracle_lazy_frac_*`` / ``oracle_rich_frac_*``."""
    al, sc = np.abs(lam)[:, None], scale[None, :]
    region = np.zeros((lam.size, scale.size), bool)
    if "lazy" in name:
        for reg in oracle.get("lazy", []):
            region |= (al >= reg["abs_lambda_min"]) & (sc >= reg["scale_min"])
    else:
        for reg in oracle.get("rich", []):
            region |= (al <= reg["abs_lambda_max"]) & (sc <= reg["scale_max"])
    return int(region.sum())


def ceiling(run_a: Run, run_b: Run) -> dict[str, float]:
    """The noise ceiling: seed b's observed map standing in for the prediction of seed a's (another task draw).

    fig6: the simulated KD maps of two seeds (two draws of the 10-sample task) scored like theory vs simulation.
    pair: the real KD maps of two seeds scored like the best predictor vs real.
    width: seed b's real KD-width slope standing in for the theory's (comparisons/lazy_rich/width.py).
    """
    k = knobs(run_a.config.get("phenomenon", {}))
    levels = [float(v) for v in k["boundary_kd"]]
    if k["mode"] == "fig6":
        numbers = run_a.summary["prediction"]
        a, b = fig6_maps(run_a.curves, numbers), fig6_maps(run_b.curves, run_b.summary["prediction"])
        sc = lrm.map_scores(b["twin"], a["twin"], np.log10(np.asarray(numbers["scale"])), levels)
        return {f"theory_vs_sim_{n}": v for n, v in sc.items()}
    if k["mode"] == "width":
        from comparisons.lazy_rich import width

        return width.ceiling(run_a.curves, run_b.curves, run_a.summary.get("points", {}), k)
    fa = pair_maps(run_a.curves, run_a.summary.get("points", {}), k)
    fb = pair_maps(run_b.curves, run_b.summary.get("points", {}), k)
    per = [lrm.map_scores(fb[t]["real"], fa[t]["real"], fa[t]["log_ratio"], levels) for t in fa if t in fb]
    return {f"best_vs_real_{n}": float(np.nanmean([p[n] for p in per])) for n in (per[0] if per else {})}


def oracle_checks(log_map: np.ndarray, lam: np.ndarray, scale: np.ndarray, oracle: dict[str, Any]) -> dict[str, float]:
    """The docs/theory.md 5.4 pattern on one log10 KD map (rows lambda, columns scale).

    ``oracle`` holds ``lazy``: regions (``abs_lambda_min``, ``scale_min``) where KD <= ``lazy_kd``; ``rich``: regions
    (``abs_lambda_max``, ``scale_max``) where KD >= ``rich_kd``; ``wedge``: ``center_abs_lambda_max``,
    ``edge_abs_lambda_min``, ``scale_min``, ``scale_max``.

    Returns:
        ``oracle_lazy_frac`` and ``oracle_rich_frac`` (fraction of the region's cells that obey), and
        ``oracle_wedge_decades``: the mean over the wedge's columns of (mean log KD of the centre rows - mean of the
        edge rows), > 0 when KD is larger near lambda = 0.
    """
    al, sc = np.abs(lam)[:, None], scale[None, :]
    out: dict[str, float] = {}
    lazy = np.zeros(log_map.shape, bool)
    for reg in oracle.get("lazy", []):
        lazy |= (al >= reg["abs_lambda_min"]) & (sc >= reg["scale_min"])
    if lazy.any():
        out["oracle_lazy_frac"] = float(np.mean(log_map[lazy] <= math.log10(oracle.get("lazy_kd", 1e-4) + 1e-6)))
    rich = np.zeros(log_map.shape, bool)
    for reg in oracle.get("rich", []):
        rich |= (al <= reg["abs_lambda_max"]) & (sc <= reg["scale_max"])
    if rich.any():
        out["oracle_rich_frac"] = float(np.mean(log_map[rich] >= math.log10(oracle.get("rich_kd", 1e-2))))
    w = oracle.get("wedge")
    if w:
        cols = (scale >= w["scale_min"]) & (scale <= w["scale_max"])
        centre, edge = np.abs(lam) <= w["center_abs_lambda_max"], np.abs(lam) >= w["edge_abs_lambda_min"]
        if cols.any() and centre.any() and edge.any():
            diff = log_map[centre][:, cols].mean(0) - log_map[edge][:, cols].mean(0)
            out["oracle_wedge_decades"] = float(diff.mean())
    return out


def _score_pair(curves: pd.DataFrame, points: dict[str, dict], k: dict[str, Any], seed: int = 0) -> Outcome:
    levels = [float(v) for v in k["boundary_kd"]]
    facets = pair_maps(curves, points, k)
    scores: dict[str, float] = {}
    controls: dict[str, dict] = {}
    notes: list[str] = []
    per_facet: list[dict[str, float]] = []
    for tag, fm in facets.items():
        sfx = f"[{tag}]" if len(facets) > 1 else ""  # one facet: its numbers are the headline numbers
        got: dict[str, float] = {}
        for voice in ("theory", "twin"):
            sc = lrm.map_scores(fm[voice], fm["real"], fm["log_ratio"], levels)
            got.update({f"{voice}_vs_real_{n}": v for n, v in sc.items()})
            for n, c in lrm.control_scores(
                fm[voice], fm["real"], sc["spearman"], k["control_margin"], k["control_reject_below"]
            ).items():
                controls[f"{voice}:{n}{sfx}"] = c
        got.update(
            {
                f"theory_vs_twin_{n}": v
                for n, v in lrm.map_scores(fm["theory"], fm["twin"], fm["log_ratio"], levels).items()
            }
        )
        cells = cell_table(curves, points, fm)
        for voice in ("real", "twin"):  # rich cells: sharper (sigmoidal) loss drops, larger and lower-rank dW
            logkd = cells[f"logkd_{voice}"].to_numpy()
            for obs in ("sharpness", "sigmoid_vs_exp", "rwc", "erank_dw_first"):
                got[f"{obs}_vs_logkd_spearman_{voice}"] = lrm.spearman(cells[f"{obs}_{voice}"].to_numpy(), logkd)
        per_facet.append(got)
        if sfx:
            scores.update({f"{n}{sfx}": v for n, v in got.items()})
    if per_facet:  # headline numbers: the mean over facets
        for n in per_facet[0]:
            vals = [f[n] for f in per_facet if np.isfinite(f.get(n, math.nan))]
            scores[n] = float(np.mean(vals)) if vals else math.nan
    first = f"boundary_dist_kd{levels[0]:g}" if levels else "spearman"
    best = max(("theory", "twin"), key=lambda v: _nan_low(scores.get(f"{v}_vs_real_spearman")))
    for n in ("spearman", "max_abs_dlogkd", *(f"boundary_dist_kd{lv:g}" for lv in levels)):
        scores[f"best_vs_real_{n}"] = scores.get(f"{best}_vs_real_{n}", math.nan)
    s_best = scores["best_vs_real_spearman"]
    criteria: dict[str, tuple] = {"best_vs_real_spearman": (">=", float(k["agree_spearman"]), "normalised")}
    if levels:
        criteria[f"best_vs_real_{first}"] = ("<=", float(k["agree_boundary"]))
    nulls = _pair_nulls(facets, best, levels, seed)
    real_b = (
        [np.nanmean(lrm.boundary(fm["real"], fm["log_ratio"], math.log10(levels[0]))) for fm in facets.values()]
        if levels
        else [math.nan]
    )
    headline = {"predicted": f"best={best}", "observed": f"KD=0.1 at log10 ratio {np.nanmean(real_b):.2f}"}
    for v in ("theory", "twin"):
        headline[v] = (
            f"rho={scores.get(f'{v}_vs_real_spearman', math.nan):.2f} "
            f"dB={scores.get(f'{v}_vs_real_{first}', math.nan):.2f}"
        )
    notes.append(
        f"best predictor of the real KD map: {best} (Spearman {s_best:.3f}); boundary distances are in "
        "log10(Sigma_0 / S) units; theory = 2-layer linear gradient flow from the measured init "
        "(2-layer nets), else the lambda-balanced 2-layer net at the measured lambda and product"
    )
    return Outcome(
        scores=scores,
        negative_controls=controls,
        notes=notes,
        criteria=criteria,
        headline=headline,
        nulls=nulls,
        kinds={n: "correlation" for n in scores if "spearman" in n},
    )


def _pair_nulls(facets: dict[str, dict[str, Any]], best: str, levels: list[float], seed: int) -> dict[str, list]:
    """Cell-permutation nulls of the best predictor's scores vs real, averaged over facets draw by draw."""
    out: dict[str, list[float]] = {}
    stats = {"spearman": lrm.spearman}
    for level in levels[:1]:
        stats[f"boundary_dist_kd{level:g}"] = lambda p, o, fm, lv=level: lrm.boundary_distance(
            p, o, fm["log_ratio"], math.log10(lv)
        )
    for name, fn in stats.items():
        draws = []
        for fm in facets.values():
            stat = fn if name == "spearman" else (lambda p, o, fm=fm, fn=fn: fn(p, o, fm))
            draws.append(lrm.cell_permutation_null(fm[best], fm["real"], stat, seed=seed))
        out[f"best_vs_real_{name}"] = list(np.nanmean(np.asarray(draws, dtype=np.float64), axis=0))
    return out


def _nan_low(v: float | None) -> float:
    return -math.inf if v is None or not np.isfinite(v) else float(v)


PHENOMENON = Phenomenon(
    name="lazy_rich", observe=observe, predict=predict, score=score, figures=figures, train=train, ceiling=ceiling
)
