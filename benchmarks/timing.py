"""Shared helpers of the benchmarks: repeated timing with a warm-up, and a description of the machine.

Every figure in benchmarks/README.md is the median and the min-max over ``repeats`` timed calls after ``warmup``
untimed ones; ratios are medians over medians measured in the same process, one after the other.
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]


def time_lintwin(
    args: list[str], timeout: float, inspect: Callable[[Path], dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Time one ``lintwin ARGS`` in a fresh process writing into a temporary runs root (removed afterwards).

    Returns:
        ``{"seconds", "returncode", "lines"}`` (wall-clock seconds of the whole process, its exit code, -1 on a
        timeout, and its output lines), plus what ``inspect(runs_root)`` returns before the folder is removed.
    """
    tmp = Path(tempfile.mkdtemp(prefix="lintwin-bench-"))
    cmd = [
        sys.executable,
        "-m",
        "comparisons.cli",
        *args,
        f"paths.runs_root={tmp / 'runs'}",
        f"paths.hydra_root={tmp / 'outputs'}",
        "resume=false",
        "train.progress=off",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.setdefault("LINTWIN_DATA", str(ROOT.parent / "shared" / "data"))
    t0 = time.perf_counter()
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)
        code, lines = res.returncode, (res.stdout + res.stderr).strip().splitlines()
    except subprocess.TimeoutExpired:
        code, lines = -1, [f"timed out after {timeout:.0f} s"]
    seconds = time.perf_counter() - t0
    extra = inspect(tmp / "runs") if inspect is not None else {}
    shutil.rmtree(tmp, ignore_errors=True)
    return {"seconds": seconds, "returncode": code, "lines": lines, **extra}


@dataclass
class Timing:
    """Seconds of ``repeats`` calls."""

    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def lo(self) -> float:
        return min(self.samples)

    @property
    def hi(self) -> float:
        return max(self.samples)

    def text(self, unit: str = "s", scale: float = 1.0) -> str:
        """``median [min-max] unit``, e.g. ``1.23 [1.20-1.31] s``."""
        return f"{_num(self.median * scale)} [{_num(self.lo * scale)}-{_num(self.hi * scale)}] {unit}"


def measure(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> Timing:
    """Time ``fn()`` ``repeats`` times after ``warmup`` untimed calls (first-call allocation, JIT, caches)."""
    for _ in range(warmup):
        fn()
    out = Timing()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.samples.append(time.perf_counter() - t0)
    return out


def interleaved(fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1) -> dict[str, Timing]:
    """Time several functions in turns (a, b, a, b, ...), so a change in machine load hits all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    out = {k: Timing() for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            out[k].samples.append(time.perf_counter() - t0)
    return out


def machine() -> dict[str, str]:
    """Date, CPU model, cores, threads and library versions: the header of every results table."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 0
    import numpy

    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": model,
        "cores": str(cores),
        "torch_threads": str(torch.get_num_threads()),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "load_avg_1min": f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a",
    }


def _num(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"
