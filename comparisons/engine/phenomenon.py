"""The phenomenon interface (docs/design.md "The phenomenon interface") and its registry.

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


@dataclass
class Prediction:
    """The theory's voice: curves (member "theory" or "theory:<point>") and named numbers."""

    curves: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["member", "step", "time", "metric", "value"])
    )
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    """Scores of one run (one seed) and how each is judged; the verdict itself is the engine's.

    ``criteria``: the documented thresholds, ``{score: (op, threshold)}`` with op one of ">=", "<=", ">", "<", or
    ``{score: (op, threshold, "normalised")}`` for a threshold on the agreement normalised between the score's null
    (0) and its noise ceiling (1). ``nulls``: ``{score: [the same score where it must fail]}``, permutation draws
    (>= 200 where cheap) or the negative controls' values. ``kinds``: ``"real"`` (default), ``"correlation"`` or
    ``"fraction"`` (with ``trials[score]``, the number of trials behind the fraction); they pick the seed interval.
    :mod:`comparisons.engine.stats` turns these into intervals, p-values, ceilings and the verdict, once for all
    phenomena. ``negative_controls`` maps a control's name to ``{"score": float, "rejected": bool, "note": str}``;
    "rejected" means the wrong prediction (or the broken data) was told apart from the real one. ``headline`` holds
    the scoreboard's short strings: ``predicted`` and ``observed`` (the key numbers, e.g. "t_grok=1200"), ``theory``
    and ``twin`` (each voice's main score, e.g. "rmse=0.04"). There is no verdict here: the engine's
    :func:`comparisons.engine.stats.verdict` decides, for every phenomenon alike.
    """

    scores: dict[str, float]
    negative_controls: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    criteria: dict[str, tuple] = field(default_factory=dict)
    headline: dict[str, str] = field(default_factory=dict)
    nulls: dict[str, list[float]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    trials: dict[str, float] = field(default_factory=dict)


@dataclass
class Phenomenon:
    """One phenomenon: observe (per member, per eval step), predict (at init), score, figures (from saved runs).

    ``train`` optionally replaces the generic matched-pair trainer for experiments that are not a pair (the Fig. 6a
    grid of linear nets): it returns the observed curves and the prediction. ``ceiling(run_a, run_b)`` optionally
    gives the noise ceiling: the same scores computed between two independent seeds of the observed side (e.g. seed
    b's real net standing in for the theory's prediction of seed a's real net).
    """

    name: str
    observe: Callable[[Member, int], dict[str, float]]
    predict: Callable[[RunCfg, list[Member]], Prediction]
    score: Callable[[pd.DataFrame, Prediction, RunCfg], Outcome]
    figures: Callable[[Run, Path], list[Path]]
    train: Callable[[RunCfg, Context], tuple[pd.DataFrame, Prediction]] | None = None
    ceiling: Callable[[Run, Run], dict[str, float]] | None = None


def get_phenomenon(name: str) -> Phenomenon:
    """The ``PHENOMENON`` object of ``comparisons/<name>/phenomenon.py`` (the registry: :data:`PHENOMENA`)."""
    if name not in PHENOMENA or name == "suite":
        raise ConfigError(f"phenomenon.name={name!r}: no such phenomenon; known: {', '.join(PHENOMENA[:-1])}")
    module = importlib.import_module(f"comparisons.{name}.phenomenon")
    return module.PHENOMENON
