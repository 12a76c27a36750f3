"""The suite end to end: ``lintwin experiment=suite`` (what ``make demo`` runs) in a fresh process, timed once.

Run: ``python -m benchmarks.suite`` (all cores). The suite trains every phenomenon's CPU preset with its negative
control and writes one scoreboard; one run takes minutes, so it is timed once (no repeats), into a temporary
runs folder with ``resume=false`` (nothing cached). The time includes interpreter start-up and imports.
"""

from __future__ import annotations

from benchmarks.timing import time_lintwin


def run(timeout: float = 900.0) -> dict:
    """Time one ``lintwin experiment=suite``.

    Returns:
        ``{"seconds", "returncode", "tail"}``: wall-clock seconds of the whole process, its exit code and the last
        lines of its output (the scoreboard).
    """
    r = time_lintwin(["experiment=suite"], timeout)
    return {"seconds": r["seconds"], "returncode": r["returncode"], "tail": "\n".join(r["lines"][-25:])}


def main() -> None:
    """Print the time and the scoreboard."""
    r = run()
    print(r["tail"])
    print(f"lintwin experiment=suite: {r['seconds']:.0f} s, exit code {r['returncode']}")


if __name__ == "__main__":
    main()
