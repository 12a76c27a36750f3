"""Peak fp32 GEMM rate of this machine: the best FLOP/s that any backend torch ships reaches on the same product.

Run: ``python -m benchmarks.gemm [--repeats 5]`` (all cores; set OMP_NUM_THREADS to restrict).

Products C = A B with A (M, K), B (K, N), 2 M K N FLOPs each: a square one (2048^3) and the three GEMMs of an MLP
layer 784 -> 1024 at batch 512 (forward x W^T, input gradient g W, weight gradient g^T x). Backends:

- ``torch.mm``: MKL sgemm.
- ``numpy``: numpy's own BLAS (OpenBLAS in the PyPI wheels).
- ``conv1x1``: the product as a 1x1 convolution on a channels-last (1, K, M, 1) view of A, which torch hands to
  oneDNN's AVX-512 kernels when it runs multi-threaded (``deep_models.mlp.conv1x1_linear``, the MLP fast path).
- ``conv1x1 x16``: the same on a (16, K, M/16, 1) view, which torch hands to oneDNN at any thread count.
  Each conv column names the kernel torch actually picked.

(A as a batch of M 1x1 images, (M, K, 1, 1), also reaches oneDNN, but its brgconv kernel runs an order of magnitude
slower on these shapes, so it is not timed.)

The peak is the best median rate over backends and products. Training benchmarks divide their achieved rate by it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.timing import measure

SHAPES = {  # name: (M, K, N)
    "square 2048": (2048, 2048, 2048),
    "MLP fwd 512x784->1024": (512, 784, 1024),
    "MLP dgrad 512x1024->784": (512, 1024, 784),
    "MLP wgrad 1024x512->784": (1024, 512, 784),
}


def backends(a: torch.Tensor, b: torch.Tensor) -> dict[str, Callable[[], object]]:
    """The same product A (M, K) B (K, N) through each backend."""
    m, k = a.shape
    n = b.shape[1]
    bt = b.t().contiguous()  # (N, K): a Linear weight
    an, bn = a.numpy(), b.numpy()
    img = a.view(1, m, 1, k).permute(0, 3, 1, 2)  # (1, K, M, 1) channels-last
    filt = bt.view(n, 1, 1, k).permute(0, 3, 1, 2)  # (N, K, 1, 1)
    img16 = a.view(16, m // 16, 1, k).permute(0, 3, 1, 2)  # (16, K, M/16, 1): batch >= 16 reaches oneDNN 1-threaded
    return {
        "torch.mm (MKL)": lambda: torch.mm(a, b),
        "numpy (OpenBLAS)": lambda: an @ bn,
        f"conv1x1 ({conv_backend(img, filt)})": lambda: F.conv2d(img, filt),
        f"conv1x1 x16 ({conv_backend(img16, filt)})": lambda: F.conv2d(img16, filt),
    }


def conv_backend(img: torch.Tensor, filt: torch.Tensor) -> str:
    """Which kernel torch picks for this 1x1 convolution: ``oneDNN`` (multi-threaded) or its own GEMM path."""
    try:
        be = str(torch._C._select_conv_backend(img, filt, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, None))
    except (AttributeError, RuntimeError, TypeError):
        return "oneDNN?"
    return "oneDNN" if "Mkldnn" in be else be.rsplit(".", 1)[-1] + ", not oneDNN"


def run(repeats: int = 5) -> dict:
    """Measure every product on every backend.

    Returns:
        ``{"rows": [{shape, backend, gflops_median, gflops_min, gflops_max}], "peak_gflops", "peak_backend",
        "peak_shape"}``; GFLOP/s from the median, the slowest and the fastest repeat.
    """
    rows = []
    g = torch.Generator().manual_seed(0)
    for shape, (m, k, n) in SHAPES.items():
        a, b = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)
        ref = torch.mm(a, b)
        flops = 2.0 * m * k * n
        for name, fn in backends(a, b).items():
            out = torch.as_tensor(fn())
            out = out.permute(0, 2, 3, 1).reshape(m, n) if out.dim() == 4 else out
            if not torch.allclose(torch.as_tensor(out), ref, rtol=1e-3, atol=1e-2):
                raise AssertionError(f"{name} computes a different product on {shape}")
            t = measure(fn, repeats=repeats, warmup=2)
            rows.append(
                {
                    "shape": shape,
                    "backend": name,
                    "gflops_median": flops / t.median / 1e9,
                    "gflops_min": flops / t.hi / 1e9,
                    "gflops_max": flops / t.lo / 1e9,
                }
            )
    best = max(rows, key=lambda r: r["gflops_median"])
    return {
        "rows": rows,
        "peak_gflops": best["gflops_median"],
        "peak_backend": best["backend"],
        "peak_shape": best["shape"],
    }


def table(res: dict) -> str:
    """Markdown table: one row per product, one column per backend (median GFLOP/s [min-max])."""
    names = list(dict.fromkeys(r["backend"] for r in res["rows"]))
    lines = ["| product | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for shape in dict.fromkeys(r["shape"] for r in res["rows"]):
        cells = []
        for name in names:
            r = next(r for r in res["rows"] if r["shape"] == shape and r["backend"] == name)
            cells.append(f"{r['gflops_median']:.0f} [{r['gflops_min']:.0f}-{r['gflops_max']:.0f}]")
        lines.append(f"| {shape} | " + " | ".join(cells) + " |")
    lines.append(f"\nPeak: {res['peak_gflops']:.0f} GFLOP/s ({res['peak_backend']}, {res['peak_shape']}).")
    return "\n".join(lines)


def main() -> None:
    """Print the GEMM table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"torch threads {torch.get_num_threads()}, numpy {np.__version__}; GFLOP/s median [min-max]")
    print(table(run(args.repeats)))


if __name__ == "__main__":
    main()
