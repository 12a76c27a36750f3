"""Time to grok: wall-clock until test accuracy >= 99% on a + b mod 97 (50% of the pairs for training).

Run: ``python -m benchmarks.grok [--repeats 5] [--baseline-runs 1]`` (all cores).

- lintwin: ``experiment=grokking_fast`` (conf/experiment/grokking_fast.yaml), run in-process through
  ``comparisons.engine.run.run`` into a temporary folder, ``repeats`` times after one warm-up run. Its
  summary.json holds
  ``real/t_gen`` (the first eval step with test accuracy >= ``phenomenon.gen_threshold`` = 0.99, on all held-out
  pairs) and ``real/t_gen_s`` (seconds since the run's prediction at init, i.e. the training clock, evals
  included); both are read back from there.
- baseline: OUR RE-IMPLEMENTATION of the setup of the well-known public PyTorch grokking code (no code of it is
  used or fetched): a 2-layer decoder-only transformer on the sequence [a, op, b, =] (d_model 128, 4 heads,
  post-LayerNorm blocks with a 4x GELU MLP, causal self-attention, learned positions, final LayerNorm, logits of
  the last position), AdamW lr 1e-3, weight decay 1, betas (0.9, 0.98), a 10-step linear warm-up, batch 512 from
  shuffled epochs, cross-entropy; test accuracy on all held-out pairs after every epoch (10 steps). It is run to
  99% ``baseline_runs`` times (default once: about a minute each); its step time is also timed ``repeats``
  times over 50 steps, so its time to 99% can be estimated as steps x median step time.

The ratio is the baseline's measured time to 99% over lintwin's median time to 99%, both in this process.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.timing import Timing, measure

P, TRAIN_FRACTION, TARGET = 97, 0.5, 0.99


def run_lintwin(repeats: int = 5) -> dict:
    """``experiment=grokking_fast`` ``repeats`` times (after one warm-up) in-process; numbers from summary.json."""
    from benchmarks.sweep import compose
    from comparisons.engine.run import run

    root = Path(tempfile.mkdtemp(prefix="lintwin-grok-"))
    steps, secs, totals = [], [], []
    try:
        for i in range(repeats + 1):
            cfg = compose(
                [
                    "experiment=grokking_fast",
                    f"paths.runs_root={root}",
                    f"paths.run_dir={root / str(i)}",
                    "resume=false",
                    "train.progress=off",
                    "logger=none",
                ]
            )
            t0 = time.perf_counter()
            run(cfg)
            total = time.perf_counter() - t0
            summary = json.loads((root / str(i) / "summary.json").read_text())
            scores = summary["scores"]
            if i == 0:
                continue  # warm-up
            steps.append(scores.get("real/t_gen", math.nan))
            secs.append(scores.get("real/t_gen_s", math.nan))
            totals.append(total)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"steps": steps, "time": Timing(secs), "total": Timing(totals), "cfg": cfg}


class Block(nn.Module):
    """Post-LayerNorm decoder block: causal self-attention, then a 4x GELU MLP."""

    def __init__(self, d: int, heads: int) -> None:
        """Build the block of width ``d`` with ``heads`` heads."""
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.attn_norm = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.mlp_norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (N, T, d) -> (N, T, d)."""
        a = self.attn_norm(x + self.attn(x, x, x, attn_mask=mask, need_weights=False)[0])
        return self.mlp_norm(a + self.mlp(a))


class BaselineTransformer(nn.Module):
    """Two decoder blocks over [a, op, b, =] tokens; logits (over p + 2 tokens) of the last position."""

    def __init__(self, vocab: int, d: int = 128, heads: int = 4, layers: int = 2, seq: int = 4) -> None:
        """Build the model (PyTorch default inits)."""
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(seq, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, vocab)
        self.register_buffer("mask", torch.triu(torch.full((seq, seq), -math.inf), diagonal=1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (N, 4) long -> logits (N, vocab)."""
        h = self.tok(tokens) + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        for blk in self.blocks:
            h = blk(h, self.mask)
        return self.head(self.norm(h))[:, -1]


def baseline_data(seed: int = 0) -> tuple[torch.Tensor, ...]:
    """All (a, b) pairs as [a, op, b, =] with op = p, = = p + 1; a seeded 50/50 split. Returns xtr, ytr, xte, yte."""
    a, b = torch.meshgrid(torch.arange(P), torch.arange(P), indexing="ij")
    a, b = a.flatten(), b.flatten()
    x = torch.stack([a, torch.full_like(a, P), b, torch.full_like(a, P + 1)], 1)
    y = (a + b) % P
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n = int(TRAIN_FRACTION * len(x))
    return x[perm[:n]], y[perm[:n]], x[perm[n:]], y[perm[n:]]


def baseline_trainer(seed: int = 0):
    """(model, step(i) -> None, test_acc() -> float) of the re-implemented baseline setup."""
    xtr, ytr, xte, yte = baseline_data(seed)
    torch.manual_seed(seed)  # nn.MultiheadAttention draws its init from the global stream; a benchmark script only
    model = BaselineTransformer(P + 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(s / 10, 1.0))
    gen = torch.Generator().manual_seed(seed + 1)
    state = {"perm": torch.randperm(len(xtr), generator=gen), "at": 0}

    def step() -> None:
        if state["at"] >= len(xtr):
            state["perm"], state["at"] = torch.randperm(len(xtr), generator=gen), 0
        idx = state["perm"][state["at"] : state["at"] + 512]
        state["at"] += 512
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
        opt.step()
        sched.step()

    @torch.no_grad()
    def test_acc() -> float:
        model.eval()
        acc = torch.cat([model(xte[i : i + 2048]).argmax(-1) == yte[i : i + 2048] for i in range(0, len(xte), 2048)])
        model.train()
        return float(acc.float().mean())

    return model, step, test_acc


def run_baseline(runs: int = 1, repeats: int = 5, max_steps: int = 6000, max_seconds: float = 300.0) -> dict:
    """The baseline to 99% test accuracy ``runs`` times (eval every epoch = 10 steps), and its step time."""
    steps_per_epoch = math.ceil(int(TRAIN_FRACTION * P * P) / 512)
    reached, secs = [], []
    for r in range(runs):
        _, step, test_acc = baseline_trainer(seed=r)
        t0, s, hit = time.perf_counter(), 0, None
        while s < max_steps and time.perf_counter() - t0 < max_seconds:
            step()
            s += 1
            if s % steps_per_epoch == 0 and test_acc() >= TARGET:
                hit = s
                break
        reached.append(hit)
        secs.append(time.perf_counter() - t0 if hit else math.nan)
    _, step, _ = baseline_trainer(seed=0)
    per_step = measure(lambda: [step() for _ in range(50)], repeats=repeats, warmup=1)
    per_step = Timing([t / 50 for t in per_step.samples])
    return {"steps": reached, "time": Timing(secs), "step_time": per_step}


def main() -> None:
    """Print both sides and the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--baseline-runs", type=int, default=1)
    args = ap.parse_args()
    ours = run_lintwin(args.repeats)
    print(
        f"lintwin grokking_fast: 99% test at steps {ours['steps']}, {ours['time'].text()} (training clock); "
        f"whole run {ours['total'].text()}"
    )
    base = run_baseline(args.baseline_runs, args.repeats)
    print(
        f"baseline (our re-implementation): 99% test at steps {base['steps']}, {base['time'].text()}; "
        f"step {base['step_time'].text('ms', 1e3)}"
    )
    print(f"ratio (baseline / lintwin, medians): {base['time'].median / ours['time'].median:.1f}x")


if __name__ == "__main__":
    main()
