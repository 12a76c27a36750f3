"""Figures of the lazy/rich phenomenon, drawn from a saved run dir only (curves.csv + summary.json + config.yaml).

- ``lazy_rich_fig6``: simulation | theory | theory - simulation maps of log10(KD + 1e-6) (docs/theory.md 2.6, 5.2-5.4).
- ``lazy_rich_maps``: per facet, theory | twin | real heatmaps and a predicted-vs-real scatter.
- ``lazy_rich_width`` (mode width): final KD (real / twin / theory) and RWC (real / twin, with h^-1/2) against width.

Colour: viridis (colour-blind safe), floor -6 as in the paper's Fig. 6 code; differences use the diverging PuOr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from comparisons.engine.rundir import Run
from comparisons.engine.sweep import human
from comparisons.lazy_rich.grid import fig6_maps, pair_maps
from comparisons.lazy_rich.width import width_table

CMAP = "viridis"
KD_LABEL = "log10(KD + 1e-6)"
DIFF_CMAP = "PuOr"


def draw(run: Run, out_dir: Path, k: dict[str, Any]) -> list[Path]:
    """All lazy/rich figures of a run; returns the written PNG and PDF paths."""
    import matplotlib

    matplotlib.use("Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    numbers = run.summary.get("prediction", {})
    if numbers.get("grid") == "fig6":
        return _fig6(run, numbers, out_dir)
    if k["mode"] == "width":
        return _width(run, k, out_dir)
    points = run.summary.get("points") or {"": {}}
    return _pairs(run, points, k, out_dir)


def _width(run: Run, k: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    table = width_table(run.curves, run.summary.get("points") or {}, k["width_key"])
    s = run.summary.get("scores", {})
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2), constrained_layout=True)
    style = {"real": ("C3", "o", "-"), "twin": ("C0", "s", "-"), "theory": ("k", "", "--")}
    names = {"real": "real network", "twin": "linear twin", "theory": "theory (2-layer linear flow)"}
    ww = table["width"].to_numpy(dtype=np.float64)
    for ax, prefix, what in ((axes[0], "", "kernel distance KD(0, T)"), (axes[1], "rwc_", "relative weight change")):
        for voice, (colour, marker, ls) in style.items():
            col = table[f"{prefix}{voice}"]
            ok = np.isfinite(col) & (col > 0)
            if ok.any():
                ax.plot(ww[ok], col[ok], ls, color=colour, marker=marker, label=names[voice])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("hidden width h")
        ax.set_ylabel(f"{what} at the end")
    ok = np.isfinite(table["rwc_real"]) & (table["rwc_real"] > 0)
    if ok.any():
        w0, r0 = ww[ok][0], float(table["rwc_real"][ok].iloc[0])
        axes[1].plot(ww, r0 * (ww / w0) ** -0.5, ":", color="0.5", label="h^-1/2 (NTK scaling)")
    axes[0].set_title(
        f"KD slope: real {s.get('kd_width_slope_real', np.nan):.2f}, "
        f"theory {s.get('kd_width_slope_theory', np.nan):.2f}",
        fontsize=10,
    )
    axes[1].set_title(f"RWC slope: real {s.get('rwc_width_slope_real', np.nan):.2f}", fontsize=10)
    for ax in axes:
        ax.legend(fontsize=8)
    fig.suptitle(f"{run.summary.get('name', 'width')}: lazy with width (NTK parametrisation)", fontsize=11)
    return _save(fig, out_dir / "lazy_rich_width")


def _fig6(run: Run, numbers: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    median = bool(run.summary.get("aggregated")) and (run.curves["metric"] == "log10_kd:median").any()
    maps = fig6_maps(run.curves, numbers, "log10_kd:median" if median else "log10_kd")
    lam, scale = np.asarray(numbers["lambda"]), np.asarray(numbers["scale"])
    s = run.summary.get("scores", {})
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), constrained_layout=True)
    title = f"{run.summary.get('name', 'fig6')}: {numbers.get('init')} init, t = {numbers.get('t_end'):g}"
    if median:
        q = run.summary.get("score_quartiles", {}).get("rich_cells_sim", [np.nan] * 3)
        title += f"; median map of {run.summary.get('n')} task draws, rich cells IQR [{q[0]:.0f}, {q[2]:.0f}]"
    panels = [
        ("GD simulation", maps["twin"], CMAP, (-6, 0), KD_LABEL),
        (f"theory ({numbers.get('theory_method')})", maps["theory"], CMAP, (-6, 0), KD_LABEL),
        ("theory - simulation", maps["theory"] - maps["twin"], DIFF_CMAP, None, "theory - simulation (decades of KD)"),
    ]
    for ax, (name, m, cmap, lim, bar) in zip(axes, panels, strict=True):
        if lim is None:
            v = max(float(np.nanmax(np.abs(m))), 1e-3)
            lim = (-v, v)
        _heat(ax, m, lam, scale, cmap, lim, "weight-to-target ratio (scale)", "layer imbalance lambda", bar=bar)
        ax.set_title(name)
    fig.suptitle(
        f"{title}; Spearman {s.get('theory_vs_sim_spearman', np.nan):.3f}, "
        f"max |d log10 KD| {s.get('theory_vs_sim_max_abs_dlogkd', np.nan):.3f}"
    )
    return _save(fig, out_dir / "lazy_rich_fig6")


def _pairs(run: Run, points: dict[str, dict], k: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    facets = pair_maps(run.curves, points, k)
    s = run.summary.get("scores", {})
    fig, axes = plt.subplots(len(facets), 4, figsize=(19, 4.2 * len(facets)), squeeze=False, constrained_layout=True)
    for axrow, (tag, fm) in zip(axes, facets.items(), strict=True):
        sfx = f"[{tag}]" if len(facets) > 1 else ""
        rows = [_tick(v) for v in fm["rows"]]
        cols = [_tick(v) for v in fm["cols"]]
        for ax, voice in zip(axrow[:3], ("theory", "twin", "real"), strict=True):
            _heat(ax, fm[voice], rows, cols, CMAP, (-6, 0), human(fm["col_key"]), human(fm["row_key"]), numeric=False)
            extra = (
                ""
                if voice == "real"
                else (
                    f": Spearman {s.get(f'{voice}_vs_real_spearman{sfx}', np.nan):.2f}, "
                    f"boundary {s.get(f'{voice}_vs_real_boundary_dist_kd0.1{sfx}', np.nan):.2f}"
                )
            )
            ax.set_title(f"{voice} {tag}".strip() + extra)
        ax = axrow[3]
        for voice, marker in (("theory", "o"), ("twin", "s")):
            ax.scatter(fm["real"].ravel(), fm[voice].ravel(), marker=marker, label=voice, alpha=0.8)
        ax.plot([-6, 0], [-6, 0], color="grey", lw=1, ls="--")
        ax.set_xlabel("real log10(KD + 1e-6)")
        ax.set_ylabel("predicted log10(KD + 1e-6)")
        ax.legend(loc="upper left")
        ax.set_title(f"predicted vs real {tag}")
    fig.suptitle(f"{run.summary.get('name', 'lazy_rich')}: empirical-NTK kernel distance at the last step")
    return _save(fig, out_dir / "lazy_rich_maps")


def _heat(ax, m, rows, cols, cmap, lim, xlabel, ylabel, numeric=True, bar: str = KD_LABEL) -> None:
    import seaborn as sns

    m = np.asarray(m, dtype=np.float64)[::-1]  # imbalance increases upward, as in the paper
    rows = list(rows)[::-1]
    if numeric:
        step_r, step_c = max(1, len(rows) // 8), max(1, len(cols) // 8)
        ylab = [f"{v:.2g}" if i % step_r == 0 else "" for i, v in enumerate(rows)]
        xlab = [f"{v:.3g}" if i % step_c == 0 else "" for i, v in enumerate(cols)]
    else:
        ylab, xlab = rows, cols
    sns.heatmap(
        m,
        ax=ax,
        cmap=cmap,
        vmin=lim[0],
        vmax=lim[1],
        xticklabels=xlab,
        yticklabels=ylab,
        cbar_kws={"shrink": 0.8, "label": bar},
    )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def _tick(v: str) -> str:
    import ast

    try:
        val = ast.literal_eval(v)
    except (ValueError, SyntaxError):
        return v
    if isinstance(val, (list, tuple)):
        return f"r={val[0]:.3g}" if len(val) == 2 and abs(val[0] * val[1] - 1) < 1e-6 else str(list(val))
    return f"{val:.3g}" if isinstance(val, float) else str(val)


def _save(fig, stem: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=130)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths
