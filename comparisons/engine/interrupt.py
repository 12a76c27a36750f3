"""SIGTERM and SIGINT: finish the current training step, write a checkpoint, stop with one line.

``cli.main`` installs the handlers (:func:`handlers`) around a job. Inside a training loop (:func:`training`) a
signal only sets a flag; the loop checks :func:`requested` once per step, at the point where it would write a
periodic checkpoint, writes one, and raises :class:`Interrupted` with that step. A rerun of the same command resumes
from it bit-identically. Outside a training loop (task loading, scoring, figures), or on a second signal, the
handler raises :class:`Interrupted` at once. :class:`Interrupted` is a ``BaseException``, like
``KeyboardInterrupt``, so that the ``except Exception`` of a tracker or a figure never swallows it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_STATE: dict[str, Any] = {"requested": None, "training": 0}


class Interrupted(BaseException):  # noqa: N818 - named like KeyboardInterrupt, which it generalises
    """The run was stopped by a signal; ``step`` is the step of the checkpoint written (None: none written)."""

    def __init__(self, signum: int, step: int | None) -> None:
        super().__init__(signum, step)
        self.signum, self.step = signum, step

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process killed by it (143 SIGTERM, 130 SIGINT)."""
        return 128 + int(self.signum)

    def line(self) -> str:
        """The one line the CLI prints."""
        where = f"at step {self.step}" if self.step is not None else "outside a training step"
        return f"interrupted {where}; rerun the same command to resume"


@contextlib.contextmanager
def handlers() -> Iterator[None]:
    """Catch SIGTERM and SIGINT for the block (main thread only; elsewhere Python cannot set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, _handle)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _STATE.update(requested=None, training=0)


@contextlib.contextmanager
def training() -> Iterator[None]:
    """Mark a training loop: a signal inside it waits for the loop's next :func:`requested` check.

    Raises:
        Interrupted: On leaving the block, when a signal came after the loop's last check (its final checkpoint
            is written by then).
    """
    _STATE["training"] += 1
    try:
        yield
    finally:
        _STATE["training"] -= 1
    if _STATE["requested"] is not None:
        raise Interrupted(_STATE["requested"], None)


def requested() -> int | None:
    """The signal received during training and not yet acted on, else None."""
    return _STATE["requested"]


def _handle(signum: int, frame: Any) -> None:
    if _STATE["requested"] is not None or not _STATE["training"]:
        raise Interrupted(signum, None)  # outside a loop, or a second signal: stop now
    _STATE["requested"] = signum
