"""Figures of a neural-collapse run, drawn from its saved files only (curves.csv, summary.json, config.yaml).

- ``nc_curves``: NC1-NC4 on log axes against the step, real vs twin vs theory (UFM), one row per loss, first sweep
  point; the NC1 panel adds the test NC1 of the shuffled-label control.
- ``nc_modes``: the normalised rise of ||M u_a|| along the twin's Sigma_yx modes, observed (real, twin) and
  predicted (deep linear net, docs/theory.md 3.2, 7.3), MSE, first sweep point.
- ``nc_sweeps``: terminal slope of ln tr(Sigma_W)/tr(Sigma_B) against weight decay (the UFM predicts 2 wd) and end
  NC1 against init scale (wd = 0), when swept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comparisons.engine.config import phenomenon_knobs
from comparisons.engine.rundir import Run
from comparisons.neural_collapse.curves import effective_time, member_optim, terminal_slope
from comparisons.neural_collapse.scores import RETIRED, _wide

FORMATS = ("png", "pdf")
PANELS = [
    ("nc1", "NC1  tr(Σ_W Σ_B⁺)/C"),
    ("nc2_etf_error", "NC2  ETF error"),
    ("nc3", "NC3  self-duality"),
    ("nc4", "NC4  NCC mismatch"),
]


def figures(run: Run, out_dir: Path) -> list[Path]:
    """Draw the figures of one run into ``out_dir`` (PNG + PDF each); returns the PNG and PDF paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", palette="colorblind", font_scale=0.8)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = run.summary.get("prediction", {}).get("members", {})
    if not info:
        return []
    wide = _wide(run.curves)
    pal = sns.color_palette("colorblind")
    colors = {"real": pal[0], "twin": pal[1], "theory": "black", "control": pal[7]}
    paths: list[Path] = []
    for name, draw in (("nc_curves", _curves), ("nc_modes", _modes), ("nc_sweeps", _sweeps)):
        fig = draw(plt, wide, info, run, colors)
        if fig is None:
            continue
        for ext in FORMATS:
            path = out_dir / f"{name}.{ext}"
            fig.savefig(path, dpi=150)  # tight_layout already ran; bbox_inches="tight" would lay out twice
            paths.append(path)
        plt.close(fig)
    return paths


def _reference(info: dict[str, Any], loss: str) -> dict[str, str]:
    """First non-control real and twin member of a loss, its theory member and its shuffled-label control."""
    out: dict[str, str] = {}
    for name, m in info.items():
        if m["loss"] != loss:
            continue
        if not m["control"]:
            if m["role"] not in out and (not out or info[next(iter(out.values()))]["point"] == m["point"]):
                out[m["role"]] = name
                out.setdefault("theory", m["theory"])
        elif m["control"] == "random_labels":
            out["control"] = name
    return out


def _x(df: pd.DataFrame) -> np.ndarray:
    return np.maximum(df.index.to_numpy(dtype=np.float64), 0.5)  # step 0 drawn at 0.5 on the log axis


def _curves(plt, wide, info, run, colors):
    losses = list(dict.fromkeys(m["loss"] for m in info.values()))
    fig, axes = plt.subplots(len(losses), len(PANELS), figsize=(3.2 * len(PANELS), 2.7 * len(losses)), squeeze=False)
    for i, loss in enumerate(losses):
        ref = _reference(info, loss)
        for j, (metric, title) in enumerate(PANELS):
            ax = axes[i, j]
            for voice in ("real", "twin", "theory"):
                df = wide.get(ref.get(voice, ""))
                if df is None or f"train_{metric}" not in df:
                    continue
                floor = 1e-4 if metric == "nc4" else 1e-12
                y = df[f"train_{metric}"].clip(lower=floor)
                style = "--" if voice == "theory" else "-"
                label = {"theory": "theory (UFM)"}.get(voice, voice) + (" train" if voice != "theory" else "")
                ax.plot(_x(df), y, style, color=colors[voice], label=label, lw=1.4)
                if voice != "theory" and f"test_{metric}" in df:
                    ax.plot(
                        _x(df),
                        df[f"test_{metric}"].clip(lower=floor),
                        ":",
                        color=colors[voice],
                        label=f"{voice} test",
                        lw=1.2,
                    )
            ctrl = wide.get(ref.get("control", ""))
            if metric == "nc1" and ctrl is not None and "test_nc1" in ctrl:
                ax.plot(_x(ctrl), ctrl["test_nc1"], ":", color=colors["control"], label="shuffled labels, test")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{title}  [{loss}{' - outside theory' if loss == 'ce' else ''}]", fontsize=8)
            ax.set_xlabel("step")
            if i == 0 and j == 0:
                ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def _modes(plt, wide, info, run, colors):
    losses = list(dict.fromkeys(m["loss"] for m in info.values()))
    ref = _reference(info, losses[0]) if losses else {}
    voices = [v for v in ("real", "twin", "theory") if ref.get(v) in wide]
    if not voices:
        return None
    import seaborn as sns

    fig, axes = plt.subplots(1, len(voices), figsize=(3.6 * len(voices), 2.8), squeeze=False, sharey=True)
    for ax, voice in zip(axes[0], voices, strict=True):
        df = wide[ref[voice]]
        prefix = "pred_mode_" if voice == "theory" else "train_mode_"
        cols = [c for c in df.columns if c.startswith(prefix) and c.rsplit("_", 1)[1].isdigit()]  # not ":lo"/":hi"
        cols = sorted(cols, key=lambda c: int(c.rsplit("_", 1)[1]))
        pal = sns.color_palette("viridis", len(cols))
        for k, col in enumerate(cols):
            y = df[col].to_numpy(dtype=np.float64)
            if voice != "theory":
                y = (y - y[0]) / max(np.nanmax(y) - y[0], 1e-300)
            ax.plot(_x(df), y, color=pal[k], lw=1.2, label=f"mode {k + 1}" if voice == voices[0] else None)
        ax.axhline(0.5, color="grey", lw=0.6, ls=":")
        ax.set_xscale("log")
        ax.set_title(
            {"theory": "deep linear prediction"}.get(voice, f"{voice} (observed)") + f" [{losses[0]}]", fontsize=8
        )
        ax.set_xlabel("step")
    axes[0, 0].set_ylabel("normalised rise of ||M u_a||")
    axes[0, 0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def _sweeps(plt, wide, info, run, colors):
    from comparisons.engine.config import OptimCfg

    cfg = run.config
    optim = OptimCfg(**{k: v for k, v in cfg["optim"].items() if k in OptimCfg.__dataclass_fields__})
    steps = int(cfg["train"]["steps"])
    frac = float(phenomenon_knobs("neural_collapse", cfg.get("phenomenon", {}), tuple(RETIRED))["terminal_frac"])
    rows = []
    for name, m in info.items():
        df = wide.get(name)
        if m["control"] or df is None or not {"train_nc1", "train_nc1_tr"} <= set(df.columns):
            continue
        opt = member_optim(optim, m.get("optim", {}))
        tau = effective_time(df.index.to_numpy(dtype=np.float64), opt, steps, m.get("factor", 1.0))
        t0 = effective_time(frac * steps, opt, steps, m.get("factor", 1.0))
        rows.append(
            {
                "voice": m["role"],
                "loss": m["loss"],
                "wd": m["wd"],
                "init": m["init_scale"],
                "slope": terminal_slope(tau, df["train_nc1_tr"].to_numpy(), float(t0)),
                "end_nc1": float(df["train_nc1"].ffill().iloc[-1]),
            }
        )
    points = run.summary.get("prediction", {}).get("points", {})
    for label, p in points.items():
        df = wide.get(f"theory:{label}" if label else "theory")
        if df is None or not {"train_nc1", "train_nc1_tr"} <= set(df.columns):
            continue
        opt = member_optim(optim, p.get("optim", {}))
        tau = effective_time(df.index.to_numpy(dtype=np.float64), opt, steps, 1.0)
        t0 = effective_time(frac * steps, opt, steps, 1.0)
        rows += [
            {
                "voice": "theory",
                "loss": loss,
                "wd": p["wd"],
                "init": p.get("init_scale"),
                "slope": terminal_slope(tau, df["train_nc1_tr"].to_numpy(), float(t0)),
                "end_nc1": float(df["train_nc1"].ffill().iloc[-1]),
            }
            for loss in dict.fromkeys(m["loss"] for m in info.values())
        ]
    data = pd.DataFrame(rows)
    if data.empty or (data["wd"].nunique() < 2 and data["init"].nunique() < 2):
        return None
    losses = list(data["loss"].unique())
    fig, axes = plt.subplots(len(losses), 2, figsize=(7.5, 2.8 * len(losses)), squeeze=False)
    for i, loss in enumerate(losses):
        d = data[data["loss"] == loss]
        for voice, g in d.groupby("voice"):
            style = dict(color=colors.get(voice, "grey"), marker="o", ls="--" if voice == "theory" else "-")
            s = g.groupby("wd")["slope"].mean()
            axes[i, 0].plot(s.index, -s.to_numpy(), label=voice, **style)
            z = g[g["wd"] == 0].groupby("init")["end_nc1"].mean()
            if len(z):
                axes[i, 1].plot(z.index, z.to_numpy(), label=voice, **style)
        wds = np.array(sorted(d["wd"].unique()))
        axes[i, 0].plot(wds, 2 * wds, ":", color="grey", label="UFM: 2 wd")
        axes[i, 0].set_xlabel("weight decay")
        axes[i, 0].set_ylabel("-d ln [tr Σ_W / tr Σ_B] / d tau (terminal)")
        axes[i, 0].set_title(f"terminal NC1 rate [{loss}]", fontsize=8)
        axes[i, 1].set_xscale("log")
        axes[i, 1].set_yscale("log")
        axes[i, 1].set_xlabel("init scale (wd = 0)")
        axes[i, 1].set_ylabel("end train NC1")
        axes[i, 1].set_title(f"incomplete collapse [{loss}]", fontsize=8)
        axes[i, 0].legend(fontsize=6)
    fig.tight_layout()
    return fig
