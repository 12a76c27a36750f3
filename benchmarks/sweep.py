"""Sweep throughput: K members trained as one batched model (``sweep.vectorize=true``) vs a Python loop over them.

Run: ``python -m benchmarks.sweep [--repeats 5] [--skip-fig6a]`` (all cores).

Both sides run lintwin's own trainer, ``comparisons.engine.loop.train_members``, on members built by the runner from a
composed config (``comparisons.engine.sweep.build_members``), twin off, two eval steps, no observe: the
only difference is
``sweep.vectorize`` (true: comparisons/vectorized.py; false: the loop). Every repeat starts from the same initial
weights. Cases:

- ``sparse_parity K=64``: 64 MLPs 37-64-1 (multitask sparse parity, n = 32 bits, 5 skills, online batches of 500,
  SGD, mean MSE), an 8 x 8 grid over init scale and lr; 100 steps.
- ``mnist K=16``: 16 MLPs 784-256-10 on an MNIST subset (1000 images; a 784-d linear teacher when MNIST is not in
  LINTWIN_DATA), batch 128, SGD with momentum, cross-entropy, a 4 x 4 grid over init scale and lr; 60 steps.
- ``fig6a K=1600``: the lazy/rich engineer's benchmark, ``benchmarks.sweep_fig6a`` (1600 two-layer linear nets of
  width 2, 4000 full-batch steps; its loop is timed on a subset and scaled), run in a subprocess and parsed.

Ratios are median loop time over median vectorised time, measured in turns in the same process.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.timing import Timing

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "sparse_parity K=64 (37-64-1, B=500)": dict(
        steps=100,
        overrides=[
            "task=sparse_parity",
            "task.n_test=1000",
            "task.n_probe=100",
            "model.depth=2",
            "model.width=64",
            "optim=sgd",
            "optim.lr=0.05",
            "train.batch_size=500",
            "train.loss=mse_mean",
            "sweep.grid={model.init_scale:[0.25,0.5,0.75,1.0,1.25,1.5,1.75,2.0],"
            "optim.lr:[0.01,0.02,0.03,0.04,0.05,0.06,0.07,0.08]}",
        ],
    ),
    "mnist K=16 (784-256-10, B=128)": dict(
        steps=60,
        overrides=[
            "task=mnist",
            "task.n_train=1000",
            "task.n_test=500",
            "model.depth=2",
            "model.width=256",
            "optim=sgd",
            "optim.momentum=0.9",
            "train.batch_size=128",
            "train.loss=ce",
            "sweep.grid={model.init_scale:[0.5,1.0,1.5,2.0],optim.lr:[0.01,0.02,0.05,0.1]}",
        ],
    ),
}


def compose(overrides: list[str]):
    """A validated RunCfg from conf/ (as the CLI composes it)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from comparisons import cli
    from comparisons.engine.config import validate

    if hasattr(cli, "replace_grid_overrides"):  # sweep.grid={...} means "this grid instead", as on the CLI
        overrides = cli.replace_grid_overrides(overrides)
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf"), job_name="bench"):
        return validate(hydra_compose(config_name="config", overrides=overrides))


def mlp_flops(model: torch.nn.Module, batch: int) -> float:
    """GEMM FLOPs of one forward + backward step of an MLP (no input gradient for the first layer)."""
    layers = model.linear_layers()
    return sum(2.0 * batch * lyr.in_features * lyr.out_features * (2 if i == 0 else 3) for i, lyr in enumerate(layers))


def run_case(overrides: list[str], steps: int, repeats: int) -> dict:
    """Time ``train_members`` vectorised and looped on the same members (fresh copies per repeat)."""
    from comparisons.engine.loop import train_members
    from comparisons.engine.members import Context, Member, streams

    common = [
        *overrides,
        f"train.steps={steps}",
        "twin.enabled=false",
        "train.eval_points=2",
        "train.progress=off",
        "train.checkpoint_every=0",
        "device=cpu",
    ]
    if "task=mnist" in overrides and not _has_mnist():
        common = [o for o in common if not o.startswith("task")] + [
            "task=teacher_student",
            "task.d_in=784",
            "task.out_dim=10",
            "task.n_train=1000",
            "task.n_test=500",
            "task.singular_values=[10,9,8,7,6,5,4,3,2,1]",
            "train.loss=mse",
        ]
    cfgs = {v: compose([*common, f"sweep.vectorize={v}"]) for v in ("true", "false")}
    from comparisons.engine.sweep import build_members

    ctx0 = Context(
        cfg=cfgs["true"], device=torch.device("cpu"), dtype=torch.float32, run_dir=Path("."), streams=streams(0)
    )
    template = build_members(cfgs["true"], ctx0)

    def fresh() -> list[Member]:
        return [
            Member(name=m.name, role=m.role, model=copy.deepcopy(m.model), task=m.task, point=m.point, optim=m.optim)
            for m in template
        ]

    def timed(vec: str) -> float:
        members = fresh()  # copying the members is not part of the timing
        ctx = Context(
            cfg=cfgs[vec], device=torch.device("cpu"), dtype=torch.float32, run_dir=Path("."), streams=streams(0)
        )
        t0 = time.perf_counter()
        train_members(members, ctx)
        return time.perf_counter() - t0

    times = {"vectorised": Timing(), "loop": Timing()}
    for i in range(repeats + 1):  # the first round is the warm-up
        for key, vec in (("vectorised", "true"), ("loop", "false")):
            t = timed(vec)
            if i:
                times[key].samples.append(t)
    bs = cfgs["true"].train.batch_size or len(template[0].task.x_train)
    flops = mlp_flops(template[0].model, bs) * steps * len(template)
    return {
        "k": len(template),
        "task": template[0].task.name,
        "vectorised": times["vectorised"],
        "loop": times["loop"],
        "ratio": times["loop"].median / times["vectorised"].median,
        "gflops_vectorised": flops / times["vectorised"].median / 1e9,
        "gflops_loop": flops / times["loop"].median / 1e9,
    }


def run_fig6a(repeats: int, loop_members: int = 40) -> dict:
    """``benchmarks.sweep_fig6a`` in a subprocess (its own threads setting), parsed into numbers."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.sweep_fig6a",
        "--repeats",
        str(repeats),
        "--loop-members",
        str(loop_members),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    if res.returncode != 0:
        return {"error": (res.stderr.strip().splitlines() or ["failed"])[-1]}
    out = {"raw": res.stdout.strip()}
    for key, pattern in (
        ("vectorised", r"vectorised \(one batched model\)\s*:\s*([\d.]+) s\s*\[([\d.]+)-([\d.]+)\]"),
        ("loop", r"loop over members.*?:\s*([\d.]+) s\s*\[([\d.]+)-([\d.]+)\]"),
    ):
        m = re.search(pattern, res.stdout)
        if m:
            med, lo, hi = map(float, m.groups())
            out[key] = Timing([lo, med, hi])  # median, min and max as printed
    m = re.search(r"speed-up.*?:\s*([\d.]+)x", res.stdout)
    if m:
        out["ratio"] = float(m.group(1))
    return out


def _has_mnist() -> bool:
    root = Path(os.environ.get("LINTWIN_DATA", ROOT.parent / "shared" / "data"))
    return (root / "MNIST").exists()


def main() -> None:
    """Print the sweep table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-fig6a", action="store_true")
    args = ap.parse_args()
    os.chdir(tempfile.mkdtemp(prefix="lintwin-bench-"))
    for name, case in CASES.items():
        r = run_case(case["overrides"], case["steps"], args.repeats)
        print(
            f"{name} [{r['task']}]: vectorised {r['vectorised'].text()}, loop {r['loop'].text()}, "
            f"ratio {r['ratio']:.1f}x, {r['gflops_vectorised']:.1f} vs {r['gflops_loop']:.1f} GFLOP/s"
        )
    if not args.skip_fig6a:
        print(run_fig6a(args.repeats).get("raw", "fig6a failed"))


if __name__ == "__main__":
    main()
