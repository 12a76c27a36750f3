"""The phenomenon interface (DESIGN.md "The phenomenon interface") and its registry.

A phenomenon package (``comparisons/<name>/phenomenon.py``, e.g. grokking, lazy_rich, neural_collapse, emergence)
defines four functions and
ends with ``PHENOMENON = Phenomenon(...)``. Nothing else in the code knows phenomenon-specific details.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from comparisons.engine.config import PHENOMENA, ConfigError

if TYPE_CHECKING:
    from comparisons.engine.config import RunCfg
    from comparisons.engine.members import Context, Member
    from comparisons.engine.rundir import Run

VERDICTS = ("agree", "disagree", "inconclusive")


@dataclass
class Prediction:
    """The theory's voice: curves (member "theory" or "theory:<point>") and named numbers."""

    curves: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["member", "step", "time", "metric", "value"])
    )
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    """Scores of one run: named numbers, a verdict and the negative controls.

    ``negative_controls`` maps a control's name to ``{"score": float, "rejected": bool, "note": str}``; a control
    "rejected" means the wrong prediction (or the broken data) was correctly told apart from the real one.
    ``criteria`` are the documented thresholds behind the verdict, ``{score_name: (op, threshold)}`` with op one of
    ">=", "<=", ">", "<"; seed aggregation re-derives the verdict from them on 95% intervals
    (:func:`comparisons.engine.aggregate.verdict_from_intervals`). ``headline`` holds the scoreboard's short strings:
    ``predicted`` and ``observed`` (the key numbers, e.g. "t_grok=1200"), ``theory`` and ``twin`` (each voice's main
    score, e.g. "rmse=0.04").
    """

    scores: dict[str, float]
    verdict: str
    negative_controls: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    criteria: dict[str, tuple[str, float]] = field(default_factory=dict)
    headline: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")


@dataclass
class Phenomenon:
    """One phenomenon: observe (per member, per eval step), predict (at init), score, figures (from saved runs).

    ``train`` optionally replaces the generic matched-pair trainer for experiments that are not a pair (the Fig. 6a
    grid of linear nets): it returns the observed curves and the prediction.
    """

    name: str
    observe: Callable[[Member, int], dict[str, float]]
    predict: Callable[[RunCfg, list[Member]], Prediction]
    score: Callable[[pd.DataFrame, Prediction, RunCfg], Outcome]
    figures: Callable[[Run, Path], list[Path]]
    train: Callable[[RunCfg, Context], tuple[pd.DataFrame, Prediction]] | None = None


def get_phenomenon(name: str) -> Phenomenon:
    """The ``PHENOMENON`` object of ``comparisons/<name>/phenomenon.py`` (the registry: :data:`PHENOMENA`)."""
    if name not in PHENOMENA or name == "suite":
        raise ConfigError(f"phenomenon.name={name!r}: no such phenomenon; known: {', '.join(PHENOMENA[:-1])}")
    module = importlib.import_module(f"comparisons.{name}.phenomenon")
    return module.PHENOMENON
