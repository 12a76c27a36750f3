"""One process per run dir: a second launch is refused at once naming the holder; a dead holder holds nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from comparisons.engine import lock
from tests.conftest import ROOT

BASE = ["phenomenon=grokking", "train.steps=5", "train.eval_points=3", "train.progress=off"]
HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from comparisons.engine import lock
    with lock.hold(Path(sys.argv[1])):
        print("held", flush=True)
        sys.stdin.read()  # hold until the test closes stdin or kills us
    """
)


def test_second_launch_is_refused_and_a_dead_holder_frees_the_dir(lintwin, toy_phenomenon, tmp_path: Path) -> None:
    d = tmp_path / "D"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(d)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"  # waits on the holder itself, not on a clock
        res = lintwin(*BASE, f"paths.run_dir={d}")
        assert res.returncode == 2 and res.stderr.strip().splitlines() == [
            f"lintwin: run dir {d} is in use by pid {holder.pid} on host {socket.gethostname()} (lock {d / '.lock'}); "
            "wait for that run to end, or use another paths.run_dir"
        ]
        assert not (d / "status.json").exists() and not (d / "config.yaml").exists()  # refused before any write
    finally:
        holder.kill()  # dies holding the lock: the kernel drops it, the file stays with the dead pid
        holder.wait()
    assert (d / ".lock").read_text().split()[0] == str(holder.pid)
    res = lintwin(*BASE, f"paths.run_dir={d}")
    assert res.returncode == 0 and (d / "COMPLETE").exists(), res.stderr
    assert (d / ".lock").read_text().split() == [str(os.getpid()), socket.gethostname()]


def test_the_lock_is_reentrant_in_one_process_and_released_after(tmp_path: Path) -> None:
    with lock.hold(tmp_path / "D"), lock.hold(tmp_path / "D"):
        pass
    probe = subprocess.run(
        [sys.executable, "-c", HOLDER, str(tmp_path / "D")], cwd=ROOT, input="", capture_output=True, text=True
    )
    assert probe.returncode == 0 and probe.stdout.strip() == "held"  # released: another process takes it


def test_a_busy_dir_is_refused_by_run_too(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "D")],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(lock.RunDirBusy, match=f"in use by pid {holder.pid}"), lock.hold(tmp_path / "D"):
            pass
    finally:
        holder.stdin.close()
        holder.wait()
