"""The paper's MNIST grokking figure at a tenth of its steps: sustained FLOP rate as a fraction of the GEMM peak.

Run: ``python -m benchmarks paper_mnist`` (or ``python -m benchmarks.paper_mnist [--repeats 3] [--steps 1200]``;
all cores unless ``OMP_NUM_THREADS`` says otherwise).

``lintwin experiment=grokking_mnist_paper train.steps=1200`` (5 settings + control, real + twin = 11 nets of
784-512-512-512-10, Adam, batch 128) runs end to end in a fresh process per repeat (start-up, data, training, the
40 evaluations with their NTK probes, figures), into a temporary runs folder with ``resume=false``. The GEMM peak
(benchmarks/gemm.py) is measured in this process just before, with the same thread count.

FLOPs counted: training 6 x P x batch x steps x nets (forward + backward) plus evaluation 2 x P x samples x nets
per eval step (train and test sets, capped at ``eval_max_samples``; the eval steps are read back from the run's
curves.csv), P = parameters of one net. NTK probes, metrics and figures are not counted (they are in the time),
so the rate is a lower bound on the hardware's useful work. The full run (12,000 steps) is predicted two ways: 10 x
the reduced run (an upper bound: the ~40 evaluations, start-up and figures do not scale with the steps), and by
extrapolating the reduced run and a half-length one along the steps (the fixed part and the per-step cost, each run
timed in the same invocation): T(full) = T(S) + (T(S) - T(S/2)) (12000 - S) / (S/2). It holds only while the step
costs the same late in training as early: before ``train.flush_denormal`` the step slowed down by half after ~1500
steps (denormals) and the full run took 12.8 min against 9.9 predicted; with it, 9.0 min measured (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from benchmarks.timing import time_lintwin

LAYERS = (784, 512, 512, 512, 10)
NETS, BATCH, N_TRAIN, N_TEST, CAP, FULL_STEPS = 11, 128, 1000, 2000, 2000, 12000


def params() -> int:
    """Parameters of one 784-512-512-512-10 net (the twin has the same shapes)."""
    return sum(a * b + b for a, b in zip(LAYERS[:-1], LAYERS[1:], strict=True))


def flops(steps: int, eval_steps: int) -> float:
    """Training plus evaluation FLOPs of the whole run (see the module docstring)."""
    p = params()
    return 6.0 * p * BATCH * steps * NETS + 2.0 * p * (min(N_TRAIN, CAP) + min(N_TEST, CAP)) * eval_steps * NETS


def run_once(steps: int, timeout: float = 1800.0) -> dict:
    """One reduced run in a fresh process: ``{"seconds", "returncode", "eval_steps", "tail"}``."""

    def eval_steps(runs: Path) -> dict:
        curves = sorted(runs.glob("**/curves.csv"))
        return {"eval_steps": pd.read_csv(curves[0]).step.nunique() if curves else 0}

    r = time_lintwin(["experiment=grokking_mnist_paper", f"train.steps={steps}"], timeout, eval_steps)
    return {**{k: r[k] for k in ("seconds", "returncode", "eval_steps")}, "tail": "\n".join(r["lines"][-6:])}


def run(peak: float | None, repeats: int = 3, steps: int = FULL_STEPS // 10) -> dict:
    """``repeats`` reduced runs (no warm-up: each is a fresh process); rates against ``peak`` GFLOP/s."""
    from benchmarks.timing import Timing

    t, runs = Timing(), []
    for _ in range(repeats):
        r = run_once(steps)
        runs.append(r)
        if r["returncode"] == 0:
            t.samples.append(r["seconds"])
    ev = max((r["eval_steps"] for r in runs), default=0)
    total = flops(steps, ev)
    out = {"time": t, "runs": runs, "steps": steps, "eval_steps": ev, "gflop": total / 1e9, "peak": peak}
    if t.samples:
        out["gflops"] = total / t.median / 1e9
        out["fraction"] = out["gflops"] / peak if peak else None
        out["full_predicted_s"] = t.median * FULL_STEPS / steps
        half = [r["seconds"] for r in (run_once(steps // 2) for _ in range(repeats)) if r["returncode"] == 0]
        if half:
            t_half = sorted(half)[len(half) // 2]
            per_step = (t.median - t_half) / (steps - steps // 2)
            out["half_s"], out["per_step_s"] = t_half, per_step
            out["full_extrapolated_s"] = t.median + per_step * (FULL_STEPS - steps)
    return out


def main() -> None:
    """Measure the GEMM peak, then the reduced runs; print one summary."""
    from benchmarks import gemm

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=FULL_STEPS // 10)
    args = ap.parse_args()
    peak = gemm.run(3)["peak_gflops"]
    print(summary(run(peak, args.repeats, args.steps)))


def summary(r: dict) -> str:
    """One paragraph: time, FLOP rate, fraction of peak, predicted full time."""
    if not r["time"].samples:
        return "paper_mnist: every run failed:\n" + r["runs"][-1]["tail"]
    frac = f" = {100 * r['fraction']:.0f}% of the {r['peak']:.0f} GFLOP/s GEMM peak" if r.get("fraction") else ""
    return (
        f"paper_mnist ({r['steps']} steps, {r['eval_steps']} eval steps, {len(r['time'].samples)} runs): "
        f"{r['time'].text()}; {r['gflop']:.0f} GFLOP -> {r['gflops']:.0f} GFLOP/s{frac}; "
        f"full {FULL_STEPS} steps predicted <= {r['full_predicted_s'] / 60:.1f} min (x{FULL_STEPS // r['steps']})"
        + (
            f"; {r['steps'] // 2} steps: {r['half_s']:.1f} s, so {1000 * r['per_step_s']:.1f} ms per step and "
            f"{r['full_extrapolated_s'] / 60:.1f} min for the full run (extrapolated)"
            if "full_extrapolated_s" in r
            else ""
        )
    )


if __name__ == "__main__":
    main()
