"""``python -m benchmarks`` (``make bench``): every speed benchmark of lintwin, then one markdown table.

Run on an otherwise idle machine, with all cores (leave OMP_NUM_THREADS unset; the table records the setting):

    python -m benchmarks [--repeats 5] [--only gemm,a,b,c,d,e] [--out results.md]

Sections (details in each module's docstring and in docs/benchmarks.md):

- gemm: peak fp32 GEMM rate over the backends torch ships (benchmarks/gemm.py); the denominator of every
  "fraction of peak".
- (a) time to 99% test accuracy on a + b mod 97, ``experiment=grokking_fast`` vs our re-implementation of the
  public transformer setup (benchmarks/grok.py).
- (b) sweep throughput, vectorised vs a loop over members: the Fig. 6a grid (benchmarks/sweep_fig6a.py, the
  lazy/rich engineer's), K=64 sparse-parity MLPs and K=16 MNIST MLPs (benchmarks/sweep.py).
- (c) MLP training-step efficiency, ``linear_impl=default`` vs ``conv1x1`` (benchmarks/step.py).
- (d) closed-form predictors vs simulation to the same horizon (benchmarks/theory.py, the theory engineer's).
- (e) ``lintwin experiment=suite`` end to end, once (benchmarks/suite.py).

Every timed figure is the median and [min-max] over ``--repeats`` repeats after a warm-up, except the suite (one
run: it takes minutes) and the baseline's full run to 99% (``--baseline-runs``, default 1). Ratios are medians
measured one after the other in this run. The whole command takes about 6-8 minutes on 2 idle cores.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.timing import machine

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("gemm", "a", "b", "c", "d", "e", "paper_mnist")


def main() -> None:
    """Run the chosen sections and print the table (and write it to ``--out``)."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per figure (after a warm-up)")
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections: " + ",".join(SECTIONS))
    ap.add_argument("--baseline-runs", type=int, default=1, help="full runs of the grokking baseline to 99%%")
    ap.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    ap.add_argument("sections", nargs="*", help="sections to run (the same as --only), e.g. paper_mnist")
    args = ap.parse_args()
    only = [s.strip() for s in (",".join(args.sections) or args.only).split(",") if s.strip()]
    bad = [s for s in only if s not in SECTIONS]
    if bad:
        ap.error(f"--only: unknown section(s) {', '.join(bad)}; choose from {', '.join(SECTIONS)}")
    os.chdir(tempfile.mkdtemp(prefix="lintwin-bench-"))  # no stray files in the repo
    t_start = time.perf_counter()
    rows: list[tuple[str, str, str, str, str]] = []  # benchmark, figure, ratio/fraction, target, status
    details: list[str] = []
    peak = None
    if "gemm" in only or "c" in only or "b" in only or "paper_mnist" in only:
        from benchmarks import gemm

        _say("gemm: peak fp32 GEMM rate")
        g = gemm.run(args.repeats)
        peak = g["peak_gflops"]
        details += ["### GEMM (GFLOP/s, median [min-max])", "", gemm.table(g), ""]
        by = {r["backend"]: r for r in g["rows"] if r["shape"] == "square 2048"}
        rows.append(
            (
                "GEMM peak fp32",
                f"{peak:.0f} GFLOP/s ({g['peak_backend']}, {g['peak_shape']})",
                ", ".join(f"{k.split(' ')[0]} {v['gflops_median']:.0f}" for k, v in by.items()),
                "-",
                "-",
            )
        )
    if "a" in only:
        rows += _grok(args, details)
    if "b" in only:
        rows += _sweeps(args, peak, details)
    if "c" in only:
        from benchmarks import step

        _say("(c) MLP step efficiency")
        for r in step.run(peak, args.repeats):
            frac = r["fraction_of_peak"]
            rows.append(
                (
                    f"(c) step {r['model']} [{r['impl']}]",
                    r["step"].text("ms", 1e3),
                    f"{r['gflops']:.0f} GFLOP/s = {100 * frac:.0f}% of peak",
                    ">= 60% of peak",
                    "met" if frac >= 0.6 else "gap",
                )
            )
    if "d" in only:
        rows += _theory(args, details)
    if "e" in only:
        from benchmarks import suite

        _say("(e) lintwin experiment=suite, once")
        r = suite.run()
        ok = r["returncode"] == 0
        rows.append(
            (
                "(e) `lintwin experiment=suite` (make demo), 1 run",
                f"{r['seconds']:.0f} s" + ("" if ok else f" (exit {r['returncode']})"),
                "-",
                "<= 180 s",
                "met" if ok and r["seconds"] <= 180 else "gap",
            )
        )
        details += ["### Suite scoreboard (tail)", "", "```", r["tail"], "```", ""]
    if "paper_mnist" in only:
        rows += _paper_mnist(args, peak, details)
    text = _render(rows, details, time.perf_counter() - t_start, args)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


def _grok(args, details: list[str]) -> list[tuple]:
    from benchmarks import grok

    _say("(a) time to grok: lintwin experiment=grokking_fast")
    ours = grok.run_lintwin(args.repeats)
    _say("(a) time to grok: baseline (our re-implementation of the public transformer setup)")
    base = grok.run_baseline(args.baseline_runs, args.repeats)
    ratio = base["time"].median / ours["time"].median
    steps = sorted({int(s) for s in ours["steps"] if s == s})
    est = [s * base["step_time"].median for s in base["steps"] if s]
    details += [
        f"(a) lintwin steps to 99%: {ours['steps']}; whole `run()` incl. figures: {ours['total'].text()}.",
        f"(a) baseline steps to 99%: {base['steps']}; step time {base['step_time'].text('ms', 1e3)}; "
        f"steps x median step time = {', '.join(f'{e:.1f} s' for e in est) or 'n/a'}.",
        "",
    ]
    return [
        ("(a) grokking_fast to 99% test (a+b mod 97)", f"{ours['time'].text()} at step {steps}", "-", "-", "-"),
        (
            "(a) baseline transformer (our re-impl.) to 99%",
            f"{base['time'].text()} at step {base['steps']}",
            f"{ratio:.1f}x faster",
            ">= 5x",
            "met" if ratio >= 5 else "gap",
        ),
    ]


def _sweeps(args, peak: float | None, details: list[str]) -> list[tuple]:
    from benchmarks import sweep

    out = []
    _say("(b) Fig. 6a grid via benchmarks.sweep_fig6a")
    f6 = sweep.run_fig6a(args.repeats)
    if "ratio" in f6:
        out.append(
            (
                "(b) Fig. 6a 1600 nets x 4000 steps: vectorised",
                f6["vectorised"].text() if "vectorised" in f6 else "-",
                "-",
                "-",
                "-",
            )
        )
        out.append(
            (
                "(b) Fig. 6a: loop (scaled from a subset)",
                f6["loop"].text() if "loop" in f6 else "-",
                f"{f6['ratio']:.0f}x",
                ">= 50x",
                "met" if f6["ratio"] >= 50 else "gap",
            )
        )
        details += ["### benchmarks.sweep_fig6a output", "", "```", f6["raw"], "```", ""]
    else:
        out.append(("(b) Fig. 6a grid", f"failed: {f6.get('error', '?')}", "-", ">= 50x", "gap"))
    targets = {"sparse_parity": 3.0, "mnist": 1.2}
    for name, case in sweep.CASES.items():
        _say(f"(b) {name}")
        r = sweep.run_case(case["overrides"], case["steps"], args.repeats)
        target = next(v for k, v in targets.items() if name.startswith(k))
        frac = (
            f", {100 * r['gflops_vectorised'] / peak:.0f}% vs {100 * r['gflops_loop'] / peak:.0f}% of peak"
            if peak
            else ""
        )
        out.append(
            (
                f"(b) {name} [{r['task']}, {case['steps']} steps]",
                f"vectorised {r['vectorised'].text()}; loop {r['loop'].text()}",
                f"{r['ratio']:.1f}x{frac}",
                f">= {target}x",
                "met" if r["ratio"] >= target else "gap",
            )
        )
    return out


def _paper_mnist(args, peak: float | None, details: list[str]) -> list[tuple]:
    from benchmarks import paper_mnist

    _say("paper_mnist: experiment=grokking_mnist_paper at 1/10 of the steps, end to end")
    r = paper_mnist.run(peak, repeats=min(args.repeats, 3))
    details += [f"paper_mnist: {paper_mnist.summary(r)}", ""]
    if not r["time"].samples:
        return [("paper_mnist (1/10 steps)", "failed", "-", "full <= 10 min", "gap")]
    full = r.get("full_extrapolated_s", r["full_predicted_s"]) / 60
    frac = f", {100 * r['fraction']:.0f}% of peak" if r.get("fraction") else ""
    return [
        (
            f"paper_mnist: grokking_mnist_paper, {r['steps']} steps, 11 nets",
            r["time"].text(),
            f"{r['gflops']:.0f} GFLOP/s{frac}; full run predicted {full:.1f} min",
            "full <= 10 min",
            "met" if full <= 10 else "gap",
        )
    ]


def _theory(args, details: list[str]) -> list[tuple]:
    """benchmarks/theory.py (the theory engineer's) in a subprocess, its table parsed."""
    _say("(d) closed form vs simulation via benchmarks.theory")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, "-m", "benchmarks.theory", "--repeats", str(max(args.repeats, 5))],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=900,
    )
    details += ["### benchmarks.theory output", "", "```", (res.stdout + res.stderr).strip(), "```", ""]
    pat = re.compile(
        r"^(?P<name>\S.*?)\s+(?P<s>[\d.]+) \((?P<slo>[\d.]+)-(?P<shi>[\d.]+)\)\s+"
        r"(?P<p>[\d.]+) \((?P<plo>[\d.]+)-(?P<phi>[\d.]+)\)\s+(?P<x>[\d.]+)x\s*$"
    )
    out = []
    for line in res.stdout.splitlines():
        m = pat.match(line)
        if m:
            x = float(m["x"])
            out.append(
                (
                    f"(d) {m['name']}",
                    f"simulate {m['s']} [{m['slo']}-{m['shi']}] ms; predictor {m['p']} [{m['plo']}-{m['phi']}] ms",
                    f"{x:.0f}x",
                    ">= 1000x",
                    "met" if x >= 1000 else "gap",
                )
            )
    return out or [("(d) closed form vs simulation", f"failed (exit {res.returncode})", "-", ">= 1000x", "gap")]


def _render(rows: list[tuple], details: list[str], seconds: float, args) -> str:
    info = machine()
    head = [
        f"## lintwin benchmarks, {info['date']}",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores; torch {info['torch']} ({info['torch_threads']} threads, "
        f"OMP_NUM_THREADS={info['OMP_NUM_THREADS']}), numpy {info['numpy']}, CUDA: {info['cuda']}; "
        f"1-min load average at the end {info['load_avg_1min']}. {args.repeats} repeats after a warm-up; "
        f"median [min-max]. Total {seconds / 60:.1f} min.",
        "",
        "| benchmark | figure | ratio / fraction | target | status |",
        "|---|---|---|---|---|",
    ]
    body = [f"| {' | '.join(r)} |" for r in rows]
    return "\n".join(head + body + ["", *details])


def _say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "0")) or torch.get_num_threads())
    main()
