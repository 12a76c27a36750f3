"""The Fig. 6a grid (1600 two-layer linear nets, 4000 GD steps) trained as one batched model vs a loop over members.

Run: ``OMP_NUM_THREADS=1 python -m benchmarks.sweep_fig6a [--repeats 5] [--loop-members 80] [--full-loop]``.

Both sides run the same code, the experiment's batched GD ``comparisons.lazy_rich.fig6.gd_two_layer`` (float64 torch
on the CPU) followed by the Gram-based KD (docs/theory.md 3.3), on the grid of ``conf/experiment/lazy_rich_fig6a.yaml``
(docs/theory.md 5.2): vectorised, the whole (40, 40) grid is one call with a (40, 40) batch shape; looped, one call per
member. For reference, the numpy batched GD of ``linear_models.two_layer.simulate_two_layer`` is timed too.
A full loop over 1600 members
takes minutes per repeat, so each repeat times the loop over ``--loop-members`` evenly spaced members and scales it
to 1600 (the per-member cost does not depend on which member it is); ``--full-loop`` also times one complete loop.
The table gives the median and the min-max over ``--repeats`` repeats (after one warm-up), and the speed-up of the
medians. Both sides produce the same KD (checked).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from comparisons.lazy_rich.fig6 import gd_two_layer
from linear_models import two_layer
from linear_models.deep_linear import whiten

N_LAMBDA, N_SCALE, LR, STEPS = 40, 40, 0.01, 4000


def grid(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """X (10, 2) whitened, per-cell targets (40, 40, 10, 2), W1, W2 (40, 40, 2, 2) as in docs/theory.md 5.2."""
    rng = np.random.default_rng(seed)
    lam, scale = np.meshgrid(np.linspace(-9, 9, N_LAMBDA), np.linspace(1, 20, N_SCALE), indexing="ij")
    x = whiten(rng.standard_normal((10, 2)))
    y = rng.standard_normal((10, 2))
    w1, w2 = two_layer.lambda_balanced_init(lam, scale, 2, 2, 2, rng)
    return x, y[None, None] / scale[..., None, None], w1, w2


def kd_of(w1: np.ndarray, w2: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """GD for STEPS steps, then KD(K_0, K_STEPS) of each net in the batch."""
    w1_t, w2_t = gd_two_layer(w1, w2, x, y, LR, STEPS)
    m0, g0 = two_layer.ntk_grams(w1, w2)
    m1, g1 = two_layer.ntk_grams(w1_t, w2_t)
    return two_layer.ntk_distance(m0, g0, m1, g1, x.T @ x)


def kd_numpy(w1: np.ndarray, w2: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The same with linear_models' numpy batched GD (the reference implementation)."""
    tr = two_layer.simulate_two_layer(w1, w2, x, y, lr=LR, steps=STEPS, record_steps=[0, STEPS])
    m, g = two_layer.ntk_grams(tr["W1"], tr["W2"])
    return two_layer.ntk_distance(m[0], g[0], m[1], g[1], x.T @ x)


def main() -> None:
    """Time both sides and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--loop-members", type=int, default=80)
    ap.add_argument("--full-loop", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    x, y, w1, w2 = grid()
    flat = (N_LAMBDA * N_SCALE,)
    w1f, w2f, yf = w1.reshape(flat + w1.shape[2:]), w2.reshape(flat + w2.shape[2:]), y.reshape(flat + y.shape[2:])
    idx = np.linspace(0, flat[0] - 1, args.loop_members).round().astype(int)

    def vectorised() -> np.ndarray:
        return kd_of(w1, w2, x, y).ravel()

    def loop(members: np.ndarray) -> np.ndarray:
        return np.array([kd_of(w1f[i], w2f[i], x, yf[i]) for i in members])

    ref = vectorised()  # warm-up, and the reference KD
    np.testing.assert_allclose(loop(idx[:4]), ref[idx[:4]], rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(kd_numpy(w1, w2, x, y).ravel(), ref, rtol=1e-6, atol=1e-12)
    t_vec, t_loop, t_np = [], [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        kd_numpy(w1, w2, x, y)
        t_np.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        vectorised()
        t_vec.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        loop(idx)
        t_loop.append((time.perf_counter() - t0) * flat[0] / len(idx))
    print(
        f"Fig. 6a grid: {flat[0]} nets x {STEPS} steps, float64 torch CPU, OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, {args.repeats} repeats (median [min-max])"
    )
    print(f"  vectorised (one batched model) : {_fmt(t_vec)}")
    print(f"  vectorised, numpy reference    : {_fmt(t_np)}")
    print(f"  loop over members (scaled from {len(idx)} members to {flat[0]}): {_fmt(t_loop)}")
    if args.full_loop:
        t0 = time.perf_counter()
        np.testing.assert_allclose(loop(np.arange(flat[0])), ref, rtol=1e-8, atol=1e-14)
        print(f"  loop over all {flat[0]} members, once: {time.perf_counter() - t0:.1f} s")
    print(f"  speed-up (median loop / median vectorised): {np.median(t_loop) / np.median(t_vec):.0f}x")


def _fmt(ts: list[float]) -> str:
    return f"{np.median(ts):8.2f} s  [{min(ts):.2f}-{max(ts):.2f}]"


if __name__ == "__main__":
    main()
