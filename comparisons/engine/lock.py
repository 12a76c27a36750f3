"""One process per run dir: an ``fcntl`` lock on ``<run_dir>/.lock``, held for the whole run.

The lock file holds the holder's pid and host. A second launch into the same run dir is refused at once with
one line naming them (:class:`RunDirBusy`, exit 2). The kernel drops an ``flock`` when its process ends, however it
ends, so a lock left by a dead process is no lock: the next launch takes it. Within one process the lock is
re-entrant (a seed's child run or the CLI around :func:`comparisons.engine.run.run` may take it again).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from comparisons.engine.rundir import RunDirError

LOCK = ".lock"
_HELD: dict[Path, list] = {}  # resolved run dir -> [open lock file, depth]: the locks this process holds


class RunDirBusy(RunDirError):
    """Another live process holds the run dir's lock."""


@contextlib.contextmanager
def hold(run_dir: Path) -> Iterator[None]:
    """Hold the lock of ``run_dir`` (made if needed) for the ``with`` block.

    Raises:
        RunDirBusy: Another process holds it: one line with its pid and host, and the fix.
        RunDirError: The run dir cannot be made or the lock file cannot be written.
    """
    key = Path(os.path.abspath(run_dir))
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield
        finally:
            _HELD[key][1] -= 1
        return
    f = _acquire(key)
    _HELD[key] = [f, 1]
    try:
        yield
    finally:
        del _HELD[key]
        f.close()  # releases the flock; the file stays (removing it would race with a process about to lock it)


def holder(run_dir: Path) -> str:
    """Who the lock file of ``run_dir`` names (``pid N on host H``), or ``unknown`` when it cannot be read."""
    try:
        text = (Path(run_dir) / LOCK).read_text().split()
        return f"pid {text[0]} on host {text[1]}"
    except (OSError, IndexError):
        return "unknown"


def _acquire(run_dir: Path):
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        f = open(run_dir / LOCK, "a+")  # noqa: SIM115 - held open for the whole run, closed by hold()
    except OSError as e:
        raise RunDirError(
            f"cannot write the run dir {run_dir} ({e.strerror}); set paths.runs_root to a writable folder"
        ) from None
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise RunDirBusy(
            f"run dir {run_dir} is in use by {holder(run_dir)} (lock {run_dir / LOCK}); wait for that run to end, "
            "or use another paths.run_dir"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()} {socket.gethostname()}\n")
    f.flush()
    return f
