"""Figures of an emergence run, drawn from saved files only (curves.csv + summary.json of the run and its seeds).

- ``emergence_time`` (time variant), the paper-style figure (arXiv:2502.21009 Fig. 4; arXiv:2404.17563): (a) R_k/S
  against the step, calibrated theory solid over the real net dashed with a band over seeds, the twin dotted;
  (b) emergence step against p_k on log axes with the predicted slope -1; (c) the shuffled-control net; (d) the
  test loss against t on log axes with the predicted exponent -alpha/(alpha+1).
- ``emergence_data`` / ``emergence_params``: final R_k/S against D or N (calibrated theory solid, real markers with
  a band over seeds) and the final test loss with the predicted exponent.

Seeds: a run under ``<parent>/seed_<s>/`` (``seeds=[...]``) is drawn with its complete sibling seeds, and a parent
with ``seed_*`` children with all of them; the band spans the seeds (min to max), the dashed line is their mean.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comparisons.engine.metrics import first_crossing
from comparisons.engine.rundir import Run

CONTROL_MEMBER = "real:control=shuffled_control"


def figures(run: Run, out_dir: Path) -> list[Path]:
    """Draw the run's figure into ``out_dir`` (PNG + PDF); returns their paths ([] without a prediction)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    nums = run.summary.get("prediction", {})
    if "variant" not in nums:
        return []
    sns.set_theme(style="whitegrid", palette="colorblind", font_scale=0.8)
    seeds = seed_curves(run)
    if nums["variant"] == "time":
        fig, name = _time_figure(plt, sns, seeds, nums, run.summary), "emergence_time"
    else:
        fig, name = _final_figure(plt, sns, seeds, nums, run.summary), f"emergence_{nums['variant']}"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        path = out_dir / f"{name}.{ext}"
        fig.savefig(path, dpi=150, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def seed_curves(run: Run) -> list[pd.DataFrame]:
    """The curves of this run and of its complete sibling (or child) seed runs, this run's first."""
    path = run.path
    kids = sorted(path.glob("seed_*/curves.csv"))
    if path.name.startswith("seed_"):
        kids = sorted(path.parent.glob("seed_*/curves.csv"))
    others = [pd.read_csv(k) for k in kids if k.parent != path and (k.parent / "COMPLETE").exists()]
    own = [] if kids and not path.name.startswith("seed_") else [run.curves]
    return (own + others) or [run.curves]


def _stack(seeds: list[pd.DataFrame], member: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps (T,) and values (n_seeds, T) of one member's metric, on the steps all seeds share."""
    series = []
    for c in seeds:
        rows = c[(c["member"] == member) & (c["metric"] == metric)]
        series.append(rows.groupby("step")["value"].mean())
    series = [s for s in series if not s.empty]
    if not series:
        return np.array([]), np.zeros((0, 0))
    df = pd.concat(series, axis=1, join="inner").sort_index()
    return df.index.to_numpy(dtype=np.float64), df.to_numpy(dtype=np.float64).T


def _band(ax: Any, x: np.ndarray, v: np.ndarray, color: Any, **kw: Any) -> None:
    """Mean line (kw style) and a min-max band over seeds."""
    if v.size == 0:
        return
    ax.plot(x, v.mean(0), color=color, **kw)
    if v.shape[0] > 1:
        ax.fill_between(x, v.min(0), v.max(0), color=color, alpha=0.2, lw=0)


def _time_figure(plt: Any, sns: Any, seeds: list[pd.DataFrame], nums: dict[str, Any], summary: dict[str, Any]):
    p, n = np.asarray(nums["p"]), len(nums["p"])
    pal = sns.color_palette("colorblind", n)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    ax = axes[0, 0]
    for k in range(n):
        m = f"skill_{k + 1}"
        x, th = _stack(seeds, "theory", m)
        if th.size:
            ax.plot(x, th.mean(0), color=pal[k], lw=1.8)
        x, v = _stack(seeds, "real", m)
        _band(ax, x, v, pal[k], ls="--", lw=1.2)
        x, v = _stack(seeds, "twin", m)
        if v.size:
            ax.plot(x, v.mean(0), color=pal[k], ls=":", lw=0.8)
    ax.axhline(nums.get("level", 0.5), color="grey", lw=0.6)
    ax.set(
        xlabel="step",
        ylabel="$R_k/S$",
        ylim=(-0.05, 1.1),
        title=f"(a) skills: theory (solid, tau={_num(summary, 'tau')}) vs ReLU MLP (dashed), twin (dotted)",
    )
    ax = axes[0, 1]
    t_obs = np.array([[_first_cross(c, k, nums) for k in range(n)] for c in seeds])  # (n_seeds, n_s)
    t_pred = np.array([summary.get("scores", {}).get(f"t_pred_{k + 1}", math.nan) for k in range(n)])
    for k in range(n):
        ax.scatter(np.full(len(seeds), p[k]), t_obs[:, k], color=pal[k], s=18, zorder=3, label=f"k={k + 1}")
    ax.plot(p, t_pred, color="black", lw=1.5, label="theory (slope -1)")
    sl = summary.get("scores", {}).get("slope", math.nan)
    iv = summary.get("score_intervals", {}).get("slope")
    ivs = f" [{iv[0]:.2f}, {iv[1]:.2f}]" if iv else ""
    _log_axes(ax, np.concatenate([t_obs.ravel(), t_pred]))
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set(
        xlabel="$p_k$",
        ylabel=f"step at $R_k/S={nums.get('level', 0.5)}$",
        title=f"(b) emergence step: fitted slope {sl:.2f}{ivs} (predicted -1)",
    )
    ax.legend(fontsize=7)
    ax = axes[1, 0]
    for k in range(n):
        x, v = _stack(seeds, CONTROL_MEMBER, f"skill_{k + 1}")
        _band(ax, x, v, pal[k], ls="-.", lw=1.2)
        ax.axhline(p[k], color=pal[k], lw=0.6, ls=":")
    ax.axhline(nums.get("level", 0.5), color="grey", lw=0.6)
    ax.set(
        xlabel="step",
        ylabel="$R_k/S$",
        ylim=(-0.05, 1.1),
        title="(c) negative control: control bits shuffled (dotted: p_k)",
    )
    ax = axes[1, 1]
    lr_eff = nums["time_factor"] * nums["lr"]
    xt, th = _stack(seeds, "theory", "test_loss")
    if th.size:
        ax.plot(xt[xt > 0] * lr_eff, th.mean(0)[xt > 0], color="black", lw=1.5, label="theory (n_s skills)")
    x, v = _stack(seeds, "real", "test_loss")
    _band(
        ax, x[x > 0] * lr_eff, v[:, x > 0], sns.color_palette("colorblind")[0], ls="--", lw=1.2, label="real test loss"
    )
    a = nums.get("exponents", {}).get("time")
    sc = summary.get("scores", {})
    t_em = np.array([sc.get(f"t_obs_{k + 1}", math.nan) for k in range(n)]) * lr_eff
    t_em = t_em[np.isfinite(t_em) & (t_em > 0)]
    real = v.mean(0)[x > 0] if v.size else np.array([])
    if a is not None and t_em.size >= 2 and real.size:
        ts = x[x > 0] * lr_eff
        win = ts[(ts >= t_em.min()) & (ts <= t_em.max())]
        mid = math.sqrt(t_em.min() * t_em.max())
        ax.plot(
            win,
            np.interp(mid, ts, real) * (win / mid) ** a,
            color="grey",
            ls=":",
            lw=1.5,
            label=f"$t^{{{a:.3f}}}$ (n_s = inf), over the emergence window",
        )
    if real.size and np.any(real > 0):
        ax.set_ylim(np.nanmin(real[real > 0]) / 3, np.nanmax(real) * 1.5)
    _log_axes(ax, v.ravel() if v.size else np.array([]))
    ax.set(
        xlabel="training time t = lr x step (x2 for mean-reduced MSE)",
        ylabel="test loss",
        title=f"(d) loss exponent: real {sc.get('exponent_time_real', math.nan):.2f}, theory "
        f"{sc.get('exponent_time_theory', math.nan):.2f}, predicted {a if a is not None else math.nan:.3f}",
    )
    ax.legend(fontsize=7)
    fig.suptitle(f"Emergence in multitask sparse parity ({len(seeds)} seed(s)); verdict {summary.get('verdict')}")
    fig.tight_layout()
    return fig


def _final_figure(plt: Any, sns: Any, seeds: list[pd.DataFrame], nums: dict[str, Any], summary: dict[str, Any]):
    from linear_models import skills

    variant, p, n = nums["variant"], np.asarray(nums["p"]), len(nums["p"])
    labels, xs = list(nums["points"]), np.array(list(nums["points"].values()), dtype=np.float64)
    pal = sns.color_palette("colorblind", n)
    const = summary.get("scores", {}).get("constant", nums.get("constant", math.nan))
    fine = np.geomspace(xs.min(), xs.max(), 200)
    if variant == "data":
        th = np.atleast_2d(skills.data_strength_calibrated(fine, p, D_c=const)) if math.isfinite(const) else None
    else:
        th = np.atleast_2d(skills.parameter_strength_calibrated(fine, n, N_c=const)) if math.isfinite(const) else None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = axes[0]
    for k in range(n):
        if th is not None:
            ax.plot(fine, th[:, k], color=pal[k], lw=1.8, label=f"k={k + 1}, p={p[k]:.3f}")
        v = np.array([[_last(c, f"real:{lb}", f"skill_{k + 1}") for lb in labels] for c in seeds])
        _band(ax, xs, v, pal[k], ls="--", marker="o", ms=3, lw=1.0)
    what = "D (training samples)" if variant == "data" else "N (hidden width)"
    ax.set(
        xscale="log",
        xlabel=what,
        ylabel="final $R_k/S$",
        ylim=(-0.05, 1.1),
        title=f"(a) calibrated theory (solid, {nums.get('fit')}={const:.3g}) vs ReLU MLP (dashed)",
    )
    ax.legend(fontsize=7)
    ax = axes[1]
    loss = np.array([[_last(c, f"real:{lb}", "test_loss") for lb in labels] for c in seeds])
    _band(ax, xs, loss, sns.color_palette("colorblind")[0], ls="--", marker="o", ms=3, label="real test loss")
    th_loss = np.array([_last(seeds[0], f"theory:{lb}", "test_loss") for lb in labels])
    ax.plot(xs, th_loss, color="black", marker="s", ms=3, lw=1.5, label="calibrated theory")
    key = "data" if variant == "data" else "params"
    a = nums.get("exponents", {}).get(key)
    if a is not None and np.isfinite(loss).any():
        mid = xs[len(xs) // 2]
        ref = float(np.nanmean(loss, axis=0)[len(xs) // 2])
        ax.plot(fine, ref * (fine / mid) ** a, color="grey", ls=":", label=f"$x^{{{a:.3f}}}$ predicted")
    sc = summary.get("scores", {})
    _log_axes(ax, loss.ravel())
    for a_ in axes:
        a_.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set(
        xlabel=what,
        ylabel="final test loss",
        title=f"(b) exponent: real {sc.get(f'exponent_{key}_real', math.nan):.2f}, "
        f"theory {sc.get(f'exponent_{key}_theory', math.nan):.2f}, predicted {a:.3f}",
    )
    ax.legend(fontsize=7)
    fig.suptitle(f"Emergence, {variant} variant ({len(seeds)} seed(s)); verdict {summary.get('verdict')}")
    fig.tight_layout()
    return fig


def _log_axes(ax: Any, y: np.ndarray) -> None:
    """Log-log axes when there is positive data to show (a run too short to emerge stays linear)."""
    if np.any(np.isfinite(y) & (y > 0)):
        ax.set(xscale="log", yscale="log")


def _first_cross(curves: pd.DataFrame, k: int, nums: dict[str, Any]) -> float:

    x, v = _stack([curves], "real", f"skill_{k + 1}")
    return first_crossing(x, v[0], nums.get("level", 0.5), "linear") if v.size else math.nan


def _last(curves: pd.DataFrame, member: str, metric: str) -> float:
    rows = curves[(curves["member"] == member) & (curves["metric"] == metric)]
    return float(rows.sort_values("step")["value"].iloc[-1]) if len(rows) else math.nan


def _num(summary: dict[str, Any], key: str) -> str:
    v = summary.get("scores", {}).get(key, math.nan)
    return f"{v:.3g}" if isinstance(v, int | float) and math.isfinite(v) else "-"
