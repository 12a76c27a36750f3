"""Figures of a grokking run, drawn from its saved files only (curves.csv, summary.json, config.yaml).

- ``grokking_accuracy``: the paper's MNIST format (docs/theory.md 6.4): train and test accuracy against log steps, one
  panel per point (real solid, twin dashed), with t_fit, t_gen and the predicted onset t_fit + delay marked.
- ``grokking_ratio``: Sigma(t)/S observed against the pure-weight-decay prediction (docs/theory.md 6.3), and the
  kernel distance to the step-0 NTK (docs/theory.md 2.6), per point, real nets.
- ``grokking_delay_law``: the observed ``law_observable`` (t_gen, or the delay) against 1/(lr wd) and against
  ln(init scale), with the predicted t_grok and its band (c within a factor ``band_factor``, and the spread of
  Sigma_0/S over replicates); censored runs drawn at their lower bound as open triangles. Only when an axis is
  swept.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from comparisons.engine.rundir import Run
from comparisons.engine.sweep import human
from comparisons.grokking.metrics import grok_timing


def figures(run: Run, out_dir: Path) -> list[Path]:
    """Draw the figures of one run into ``out_dir`` (PNG + PDF each); returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    from comparisons.grokking.scores import knobs

    sns.set_theme(style="whitegrid", palette="colorblind", font_scale=0.8)
    info = run.summary.get("prediction", {}).get("members", {})
    if not info:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    kn = knobs(run.config)
    wide = {
        n: g.pivot_table(index="step", columns="metric", values="value").sort_index()
        for n, g in run.curves.groupby("member")
    }
    timing = {
        n: grok_timing(
            w.index.to_numpy(),
            w["train_acc"].to_numpy(),
            w["test_acc"].to_numpy(),
            kn["fit_threshold"],
            kn["gen_threshold"],
        )
        for n, w in wide.items()
        if {"train_acc", "test_acc"} <= set(w.columns)
    }
    paths: list[Path] = []
    for name, draw in (("grokking_accuracy", _accuracy), ("grokking_ratio", _ratio), ("grokking_delay_law", _law)):
        fig = draw(plt, wide, info, timing, kn)
        if fig is None:
            continue
        for ext in ("png", "pdf"):
            path = out_dir / f"{name}.{ext}"
            fig.savefig(path, dpi=150)  # tight_layout() already; bbox_inches="tight" would draw twice
            paths.append(path)
        plt.close(fig)
    return paths


def _accuracy(plt, wide, info, timing, kn):
    import seaborn as sns

    pal = sns.color_palette("colorblind")
    reals = [n for n, m in info.items() if m["role"] == "real" and n in wide]
    if not reals:
        return None
    cols = min(5, len(reals))
    rows = math.ceil(len(reals) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, reals, strict=False):
        m = info[name]
        twin = name.replace("real", "twin", 1)
        for member, ls, who in ((name, "-", "real"), (twin, "--", "twin")):
            if member not in wide:
                continue
            w = wide[member][wide[member].index > 0]
            ax.plot(w.index, w["train_acc"], ls, color=pal[0], label=f"{who} train")
            ax.plot(w.index, w["test_acc"], ls, color=pal[1], label=f"{who} test")
        t = timing.get(name)
        if t is not None and t.t_fit:
            ax.axvline(t.t_fit, color="grey", lw=0.8, ls=":")
            if not t.censored:
                ax.axvline(t.t_gen, color=pal[1], lw=0.8, ls=":")
            pd_ = m.get("predicted_delay")
            if pd_ is not None and math.isfinite(pd_) and pd_ > 0:
                ax.axvline(t.t_fit + pd_, color="black", lw=1.0, ls="-.", label="predicted onset")
        ax.set_xscale("log")
        tag = " [control]" if m.get("control") else ""
        ax.set_title(
            f"{human(m['point']) if m['point'] else 'run'}{tag}\n"
            f"Σ0/S={m['ratio']:.2g}, γ+={m['gamma_plus']:.2f} ({m['call']})",
            fontsize=7,
        )
        ax.set_xlabel("step")
    for ax in axes.flat[len(reals) :]:
        ax.axis("off")
    axes[0, 0].set_ylabel("accuracy")
    axes[0, 0].legend(fontsize=6, loc="lower right")
    twins = any(n.replace("real", "twin", 1) in wide for n in reals)
    lines = "real solid, twin dashed" if twins else "real network"
    fig.suptitle(f"Grokking: train/test accuracy ({lines}); dotted: t_fit, t_gen; dash-dot: predicted onset")
    fig.tight_layout()
    return fig


def _ratio(plt, wide, info, timing, kn):
    import seaborn as sns

    reals = [n for n, m in info.items() if m["role"] == "real" and not m.get("control") and n in wide]
    if not reals or not any("ratio" in wide[n] for n in reals):
        return None
    pal = sns.color_palette("colorblind", max(len(reals), 3))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
    for color, name in zip(pal, reals, strict=False):
        w = wide[name]
        label = human(info[name]["point"]) if info[name]["point"] else "real"
        if "ratio" in w:
            a1.plot(w.index, w["ratio"].to_numpy(), color=color, label=label)
        theory = wide.get("theory:" + info[name]["point"] if info[name]["point"] else "theory")
        if theory is not None and "ratio" in theory:
            keep = theory["ratio"] >= 0.5 * kn["c"]  # drawn down to the predicted onset, Sigma = c S
            a1.plot(theory.index[keep], theory["ratio"][keep], ":", color=color)
        if "kd" in w:
            kd = w["kd"].dropna()
            a2.plot(kd.index[kd.index > 0], np.log10(kd[kd.index > 0] + 1e-6), "o-", ms=3, color=color, label=label)
        t = timing.get(name)
        if t is not None and not t.censored:
            for ax in (a1, a2):
                ax.axvline(t.t_gen, color=color, lw=0.7, ls="--")
    a1.axhline(kn["ratio_threshold"], color="black", lw=0.8)
    a1.set(yscale="log", xlabel="step", ylabel="Σ(t)/S", title="Σ(t)/S (dotted: weight decay alone, to Σ = c S)")
    a2.set(xscale="log", xlabel="step", ylabel="log10(KD + 1e-6)", title="kernel distance to step-0 NTK")
    a1.legend(fontsize=6)
    fig.tight_layout()
    return fig


def _law(plt, wide, info, timing, kn):
    import seaborn as sns

    reals = [n for n, m in info.items() if m["role"] == "real" and not m.get("control") and n in timing]
    lrwd = {1.0 / (info[n]["lr_eff"] * info[n]["wd"]) for n in reals if info[n]["wd"] > 0}
    inits = {info[n]["init_scale"] for n in reals if info[n].get("init_scale")}
    axes_on = [k for k, vals in (("lrwd", lrwd), ("init", inits)) if len(vals) >= 2]
    if not axes_on:
        return None
    fig, axes = plt.subplots(1, len(axes_on), figsize=(5.2 * len(axes_on), 3.8), squeeze=False)
    for ax, axis in zip(axes.flat, axes_on, strict=True):
        other = "init_scale" if axis == "lrwd" else "lrwd"
        key = {n: _other(info[n], other) for n in reals}
        levels = sorted(set(key.values()))
        pal = sns.color_palette("colorblind", max(len(levels), 3))
        for color, level in zip(pal, levels, strict=False):
            group = [n for n in reals if key[n] == level]
            xs = [_x(info[n], axis) for n in group]
            for n, x in zip(group, xs, strict=True):
                t = timing[n]
                if t.t_fit is None:
                    continue
                if kn["law_observable"] == "t_gen":
                    y, marker = (t.t_gen, "o") if not t.censored else (t.budget, "^")
                else:
                    y, marker = (t.delay, "o") if not t.censored else (t.delay_lower_bound, "^")
                ax.scatter(x, max(y, 1.0), color=color, marker=marker, facecolors=color if marker == "o" else "none")
            _band(ax, group, info, axis, kn, color, f"{'init' if other == 'init_scale' else '1/(lr wd)'}={level:.3g}")
        ax.set_xlabel("1/(lr wd) [steps]" if axis == "lrwd" else "ln(init scale)")
        ax.set_ylabel(
            "steps to generalise, t_gen" if kn["law_observable"] == "t_gen" else "delay t_gen - t_fit [steps]"
        )
        if axis == "init":
            ax.set_xscale("linear")
        ax.legend(fontsize=6, title="line: predicted t_grok; band: c x [1/f, f], seeds", title_fontsize=6)
    title = (
        "Delay law (docs/theory.md 6.3): predicted t_grok = ln(Σ0/(c S)) / (2 lr wd), counted from init. "
        "Dots: observed; open triangles: not generalised by the end (lower bound)."
    )
    fig.suptitle(textwrap.fill(title, width=int(13 * fig.get_figwidth())), fontsize=9)
    fig.tight_layout()
    return fig


def _band(ax, group: list[str], info: dict[str, Any], axis: str, kn: dict[str, Any], color, label: str) -> None:
    """Predicted line (mean ratio) and band (c within band_factor, ratio range over replicates) along ``axis``."""
    pts = [(_x(info[n], axis), info[n]) for n in group if info[n]["decoupled"] and info[n]["wd"] > 0]
    if len(pts) < 2:
        return
    xs = sorted({x for x, _ in pts})
    c, f = float(kn["c"]), float(kn["band_factor"])
    mid, lo, hi = [], [], []
    for x in xs:
        ms = [m for xx, m in pts if xx == x]
        ratios = np.array([m["ratio"] for m in ms])
        rate = np.mean([2.0 * m["lr_eff"] * m["wd"] for m in ms])
        mid.append(max(0.0, math.log(ratios.mean() / c)) / rate)
        lo.append(max(0.0, math.log(ratios.min() / (c * f))) / rate)
        hi.append(max(0.0, math.log(ratios.max() * f / c)) / rate)
    ax.plot(xs, mid, color=color, label=label)
    ax.fill_between(xs, lo, hi, color=color, alpha=0.15)


def _x(m: dict[str, Any], axis: str) -> float:
    return 1.0 / (m["lr_eff"] * m["wd"]) if axis == "lrwd" else math.log(m["init_scale"])


def _other(m: dict[str, Any], other: str) -> float:
    return float(m["init_scale"] or 0.0) if other == "init_scale" else 1.0 / (m["lr_eff"] * m["wd"] or math.inf)
