"""The suite end to end: ``lintwin experiment=suite`` (what ``make demo`` runs) in a fresh process, timed once.

Run: ``python -m benchmarks.suite`` (all cores). The suite trains every phenomenon's CPU preset with its negative
control and writes one scoreboard; one run takes minutes, so it is timed once (no repeats), into a temporary
runs folder with ``resume=false`` (nothing cached). The time includes interpreter start-up and imports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(timeout: float = 900.0) -> dict:
    """Time one ``lintwin experiment=suite``.

    Returns:
        ``{"seconds", "returncode", "tail"}``: wall-clock seconds of the whole process, its exit code and the last
        lines of its output (the scoreboard).
    """
    tmp = Path(tempfile.mkdtemp(prefix="lintwin-suite-"))
    cmd = [
        sys.executable,
        "-m",
        "comparisons.cli",
        "experiment=suite",
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
        code, out = res.returncode, (res.stdout + res.stderr).strip().splitlines()
    except subprocess.TimeoutExpired:
        code, out = -1, [f"timed out after {timeout:.0f} s"]
    seconds = time.perf_counter() - t0
    shutil.rmtree(tmp, ignore_errors=True)
    return {"seconds": seconds, "returncode": code, "tail": "\n".join(out[-25:])}


def main() -> None:
    """Print the time and the scoreboard."""
    r = run()
    print(r["tail"])
    print(f"lintwin experiment=suite: {r['seconds']:.0f} s, exit code {r['returncode']}")


if __name__ == "__main__":
    main()
