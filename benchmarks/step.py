"""Step efficiency: one MLP training step (forward, backward, SGD update) as a fraction of the GEMM peak.

Run: ``python -m benchmarks.step [--repeats 5]`` (all cores).

Models are ``deep_models`` MLPs (ReLU, biases), MSE loss, batch >= 512, on random inputs:
- ``mnist_mlp``: 784-512-512-512-10 at batch 512 (the MNIST grokking MLP, docs/theory.md 6.4);
- ``wide_mlp``: 784-2048-2048-10 at batch 1024 (GEMM-dominated).

FLOPs counted are the GEMMs only: 2 B d_in d_out per layer forward, twice that backward (input and weight
gradients) except the first layer, which needs no input gradient. Elementwise work (bias, ReLU, loss, update)
is not counted, so the fraction is a lower bound on how busy the multiply units are. Each model is timed with
``linear_impl=default`` (``nn.Linear``, MKL) and ``linear_impl=conv1x1`` (oneDNN 1x1 convolutions,
``deep_models.mlp``), in turns; both start from the same weights and their outputs are checked equal to float
tolerance before timing.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.timing import interleaved
from deep_models import create_model

MODELS = {  # name: (input dim, hidden widths, outputs, batch)
    "mnist_mlp": (784, [512, 512, 512], 10, 512),
    "wide_mlp": (784, [2048, 2048], 10, 1024),
}


def gemm_flops(d_in: int, widths: list[int], out: int, batch: int) -> float:
    """GEMM FLOPs of one forward + backward pass (see the module docstring)."""
    dims = [d_in, *widths, out]
    total = 0.0
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        total += 2.0 * batch * a * b * (2 if i == 0 else 3)
    return total


def run(peak_gflops: float, repeats: int = 5) -> list[dict]:
    """Time every model with both Linear implementations.

    Args:
        peak_gflops: The machine's GEMM peak (benchmarks.gemm), GFLOP/s.
        repeats: Timed steps per implementation (after 3 warm-up steps).

    Returns:
        Rows ``{model, impl, step_ms: Timing in ms, gflops, fraction_of_peak}`` (rates from the median step).
    """
    rows = []
    for name, (d_in, widths, out, batch) in MODELS.items():
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(batch, d_in, generator=g), torch.randn(batch, out, generator=g)
        nets = {
            impl: create_model(
                "mlp",
                input_shape=(d_in,),
                out_dim=out,
                depth=len(widths) + 1,
                width=widths[0],
                generator=torch.Generator().manual_seed(1),
                linear_impl=impl,
            )
            for impl in ("default", "conv1x1")
        }
        if len(set(widths)) != 1:
            raise ValueError("MODELS entries use equal hidden widths")
        with torch.no_grad():
            torch.testing.assert_close(nets["conv1x1"](x), nets["default"](x), rtol=1e-4, atol=1e-4)
        steps = {impl: _step_fn(net, x, y) for impl, net in nets.items()}
        times = interleaved(steps, repeats=repeats, warmup=3)
        flops = gemm_flops(d_in, widths, out, batch)
        for impl, t in times.items():
            gflops = flops / t.median / 1e9
            rows.append(
                {
                    "model": f"{name} {d_in}-{'-'.join(map(str, widths))}-{out} B={batch}",
                    "impl": impl,
                    "step": t,
                    "gflops": gflops,
                    "fraction_of_peak": gflops / peak_gflops,
                }
            )
    return rows


def _step_fn(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    opt = torch.optim.SGD(net.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = 0.5 * (net(x) - y).pow(2).sum(-1).mean()
        loss.backward()
        opt.step()

    return step


def main() -> None:
    """Print the step-efficiency table (measures the GEMM peak first)."""
    from benchmarks import gemm

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    peak = gemm.run(args.repeats)["peak_gflops"]
    print(f"GEMM peak {peak:.0f} GFLOP/s")
    for r in run(peak, args.repeats):
        print(
            f"{r['model']:40s} {r['impl']:8s} {r['step'].text('ms', 1e3):28s} {r['gflops']:6.0f} GFLOP/s "
            f"{100 * r['fraction_of_peak']:5.1f}% of peak"
        )


if __name__ == "__main__":
    main()
