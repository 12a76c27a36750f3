"""Figure of docs/findings.md: predicted vs simulated learning curves of the diagonal network at three imbalances.

Run: ``OMP_NUM_THREADS=1 python -m benchmarks.figure_diagonal``; writes docs/figures/diagonal_imbalance.{png,pdf}.
Lines: the closed form of docs/theory.md eq. (3.1.3) (``linear_models.diagonal.solution``); markers: float64 gradient
descent at lr 0.02 from the same init. Right panel: time to reach S/2 against |lambda|, closed form vs GD, with the
balanced (eq. 3.1.2) and lazy (ln 2 / (v |lambda|)) limits.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

from linear_models import diagonal  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "figures" / "diagonal_imbalance"
S, V, S0, LR = 1.0, 1.0, 1e-3, 0.02  # target, input variance, initial strength a0 b0, GD step
LAMBDAS = (0.0, 0.1, 3.0)  # balanced (rich), slightly unbalanced, strongly unbalanced (lazy)


def init(lam: float, s0: float = S0) -> tuple[float, float]:
    """(a0, b0) with a0 b0 = s0 and a0^2 - b0^2 = lam (docs/theory.md 3.1)."""
    k = np.sqrt(lam**2 + 4 * s0**2)
    return float(np.sqrt((k + lam) / 2)), float(np.sqrt((k - lam) / 2))


def half_time_gd(lam: float, horizon: float) -> float:
    """First continuous time at which GD reaches S/2 (linear interpolation between steps)."""
    a0, b0 = init(lam)
    tr = diagonal.simulate(a0, b0, S, V, lr=LR, steps=int(horizon / LR))
    s = tr["s"][:, 0]
    i = int(np.argmax(s >= S / 2))
    return float(tr.t[i - 1] + (S / 2 - s[i - 1]) / (s[i] - s[i - 1]) * LR)


def main() -> None:
    """Draw and save the figure."""
    sns.set_theme(context="paper", style="ticks", palette="colorblind")
    colors = sns.color_palette("colorblind", len(LAMBDAS))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(8.0, 3.2), constrained_layout=True)

    horizon, steps = 10.0, int(10.0 / LR)
    t_fine = np.linspace(0, horizon, 400)
    for lam, col in zip(LAMBDAS, colors, strict=True):
        a0, b0 = init(lam)
        sim = diagonal.simulate(a0, b0, S, V, lr=LR, steps=steps, record_steps=10)
        ax.plot(t_fine, diagonal.solution(t_fine, S, S0, lam, V) / S, color=col, lw=1.8, label=rf"$\lambda={lam:g}$")
        ax.plot(sim.t[::2], sim["s"][::2, 0] / S, "o", color=col, ms=3.0, mfc="none", mew=0.8)
    ax.plot([], [], "ko", ms=3.0, mfc="none", label=f"GD, lr={LR:g}")
    ax.plot([], [], "k-", lw=1.8, label="closed form (3.1.3)")
    ax.set(xlabel=r"time $t$ = lr $\times$ step", ylabel=r"mode strength $s(t)/S$", title="(a) learning curves")
    ax.legend(frameon=False, fontsize=7, loc="lower right")

    lam_grid = np.logspace(-3, 1.5, 200)
    bx.loglog(lam_grid, diagonal.time_to_reach(S / 2, S, S0, lam_grid, V), color="k", lw=1.8, label="closed form")
    t_bal = float(diagonal.time_to_reach(S / 2, S, S0, 0.0, V))
    bx.axhline(t_bal, color="0.5", ls="--", lw=1, label=r"balanced: $\ln(S/s_0-1)/(2vS)$")
    bx.loglog(lam_grid, np.log(2) / (V * lam_grid), color="0.5", ls=":", lw=1, label=r"lazy: $\ln 2/(v|\lambda|)$")
    lam_pts = np.array([1e-3, 1e-2, 0.1, 0.3, 1.0, 3.0, 10.0])
    bx.loglog(
        lam_pts, [half_time_gd(lam, 2 * t_bal) for lam in lam_pts], "o", color=colors[0], mfc="none", ms=4, label="GD"
    )
    bx.set(xlabel=r"imbalance $|\lambda| = |a^2 - b^2|$", ylabel=r"time to reach $S/2$", title="(b) half-time")
    bx.set_ylim(0.03, 10)
    bx.legend(frameon=False, fontsize=7, loc="lower left")
    sns.despine(fig)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "pdf"):
        fig.savefig(OUT.with_suffix(f".{ext}"), dpi=200)
    plt.close(fig)


if __name__ == "__main__":
    main()
