"""Validated run configuration: Hydra's DictConfig -> plain frozen-free dataclasses, checked once at start-up.

Every problem becomes one :class:`ConfigError` whose message names the key and a fix; ``cli.py`` prints it as one
line and exits 2 (docs/design.md "Failure model"). Task, model and phenomenon sections stay dictionaries here: their
keys are checked by the builders that consume them (``tasks.build``, ``deep_models.create_model``, the phenomenon
module), which the runner calls before any training starts.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A bad input: the message is one line naming the problem and the fix."""


LOSSES = ("mse", "mse_mean", "ce")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")
MAX_STEPS = 10**9  # beyond this a typo (train.steps=1e12) would run for years and its curves would not fit memory
MAX_NAME = 100
_NAME = re.compile(r"[A-Za-z0-9._+=,@-]+")
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"  # the Hydra tree

# The phenomenon registry (docs/design.md "The phenomenon interface"): every package comparisons/<name>/ with a
# phenomenon.py, found on disk so that adding one is one package + one conf/phenomenon/<name>.yaml; "suite" runs them.
PHENOMENA = (*sorted(p.parent.name for p in Path(__file__).resolve().parents[1].glob("*/phenomenon.py")), "suite")
# Jobs over other runs that are not in the registry (get_phenomenon refuses them): "homotopy" runs presets along the
# twin-to-real homotopy (comparisons/homotopy.py).
RUNNERS = ("homotopy",)
STRENGTH_KEY = "nonlinearity_strength"  # model.nonlinearity_strength: 0 = the linear twin, 1 = the real network


@dataclass
class TrainCfg:
    """``train.*``: steps, batch size, loss, the eval grid, checkpointing."""

    steps: int = MISSING
    batch_size: int | None = None
    loss: str = "mse"
    eval_points: int = 40
    eval_grid: str = "log"
    eval_max_samples: int = 2000
    checkpoint_every: int = 500
    snapshot_every: int = 0
    flush_denormal: bool = False
    progress: str = "auto"

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"train.steps={self.steps} must be >= 1 (e.g. train.steps=1000)")
        if self.steps > MAX_STEPS:
            raise ConfigError(
                f"train.steps={self.steps} is more than {MAX_STEPS:.0e} steps; give e.g. train.steps=1000"
            )
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"train.batch_size={self.batch_size} must be >= 1, or null for full batch")
        _choice("train.loss", self.loss, LOSSES)
        _choice("train.eval_grid", self.eval_grid, ("log", "linear"))
        _choice("train.progress", self.progress, ("auto", "on", "off"))
        if self.eval_points < 2:
            raise ConfigError(f"train.eval_points={self.eval_points} must be >= 2 (e.g. train.eval_points=40)")
        if self.eval_max_samples < 1:
            raise ConfigError(
                f"train.eval_max_samples={self.eval_max_samples} must be >= 1 (e.g. train.eval_max_samples=2000)"
            )
        if self.checkpoint_every < 0:
            raise ConfigError(f"train.checkpoint_every={self.checkpoint_every} must be >= 0 (0 = only at the end)")
        if self.snapshot_every < 0:
            raise ConfigError(f"train.snapshot_every={self.snapshot_every} must be >= 0 (0 = no snapshots)")


@dataclass
class OptimCfg:
    """``optim.*``: the optimizer, its learning rate and schedule."""

    name: str = MISSING
    lr: float = MISSING
    weight_decay: float = 0.0
    momentum: float = 0.0
    nesterov: bool = False
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    schedule: str = "constant"
    milestones: list[float] = field(default_factory=lambda: [1 / 3, 2 / 3])
    gamma: float = 0.1
    fused: bool = False

    def __post_init__(self) -> None:
        _choice("optim.name", self.name, OPTIMIZERS)
        if self.fused and self.name == "sgd":
            raise ConfigError("optim.fused=true is for adam and adamw; remove it for optim=sgd")
        if not self.lr > 0:
            raise ConfigError(f"optim.lr={self.lr} must be > 0 (e.g. optim.lr=0.01)")
        if not math.isfinite(self.lr):
            raise ConfigError(f"optim.lr={self.lr} must be finite (e.g. optim.lr=0.01)")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ConfigError(
                f"optim.weight_decay={self.weight_decay} must be >= 0 and finite (e.g. optim.weight_decay=0.0)"
            )
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"optim.momentum={self.momentum} must be in [0, 1) (e.g. optim.momentum=0.9)")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(
                f"optim.betas={list(self.betas)} must be two numbers in [0, 1) (e.g. optim.betas=[0.9,0.999])"
            )
        if not (self.eps > 0 and math.isfinite(self.eps)):
            raise ConfigError(f"optim.eps={self.eps} must be > 0 and finite (e.g. optim.eps=1e-8)")
        if not (self.gamma > 0 and math.isfinite(self.gamma)):  # the lr is multiplied by gamma: <= 0 makes it <= 0
            raise ConfigError(f"optim.gamma={self.gamma} must be > 0 and finite (e.g. optim.gamma=0.1)")
        _choice("optim.schedule", self.schedule, SCHEDULES)
        if any(not 0 < m < 1 for m in self.milestones):
            raise ConfigError(f"optim.milestones={self.milestones} must be fractions of train.steps in (0, 1)")


@dataclass
class TwinCfg:
    """``twin.*``: whether the layerwise linear twin is trained beside the real net."""

    enabled: bool = True
    whiten: bool = False


@dataclass
class SweepCfg:
    """``sweep.*``: the grid of sweep points (members of one run) and the vectorisation switch."""

    grid: dict[str, Any] | None = None
    vectorize: str = "auto"

    def __post_init__(self) -> None:
        self.grid = self.grid or {}
        for key, values in self.grid.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"sweep.grid.{key}={values!r} must be a non-empty list (e.g. sweep.grid.{key}=[1,2])")
        _choice("sweep.vectorize", str(self.vectorize).lower(), ("auto", "false", "true"))


@dataclass
class PathsCfg:
    """``paths.*``: data root, runs root, Hydra's output root and an explicit run dir."""

    data_root: str = "./data"
    runs_root: str = "runs"
    hydra_root: str = "outputs"
    run_dir: str | None = None


@dataclass
class LoggerCfg:
    """``logger.*``: none or W&B, and the W&B run's mode, project, group and tags."""

    name: str = "none"
    mode: str = "offline"
    project: str = "lintwin"
    entity: str | None = None
    group: str | None = None
    dir: str | None = None
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _choice("logger.name", self.name, ("none", "wandb"))
        _choice("logger.mode", self.mode, ("offline", "online", "disabled"))


@dataclass
class RunCfg:
    """The validated config of one run: every group above plus seed(s), device, dtype and the phenomenon."""

    task: dict[str, Any] = MISSING
    model: dict[str, Any] = MISSING
    optim: OptimCfg = MISSING
    phenomenon: dict[str, Any] = MISSING
    logger: LoggerCfg = MISSING
    paths: PathsCfg = MISSING
    train: TrainCfg = MISSING
    twin: TwinCfg = field(default_factory=TwinCfg)
    sweep: SweepCfg = field(default_factory=SweepCfg)
    seed: int = 0
    seeds: list[int] | None = None
    device: str = "auto"
    dtype: str = "float32"
    resume: Any = True  # true | false | "force" (conf/config.yaml)
    rerun: str = "keep"
    name: str | None = None
    experiment: Any = None
    debug: Any = None

    def __post_init__(self) -> None:
        _choice("dtype", self.dtype, ("float32", "float64"))
        if self.device != "auto" and not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"device={self.device!r} is not a device; use device=auto, cpu or cuda[:N]")
        for section in ("task", "model", "phenomenon"):
            if "name" not in getattr(self, section):
                raise ConfigError(f"{section}.name is missing; pick one with {section}=<name>")
        _choice("phenomenon.name", self.phenomenon["name"], PHENOMENA + RUNNERS)
        if self.phenomenon["name"] in PHENOMENA and self.phenomenon["name"] != "suite":
            phenomenon_knobs(self.phenomenon["name"], self.phenomenon)  # a misspelt knob fails before training
        if STRENGTH_KEY in self.model:
            _check_strength(self.model[STRENGTH_KEY])
        for value in (self.sweep.grid or {}).get(f"model.{STRENGTH_KEY}", []):  # every grid value, before training
            _check_strength(value)
        if self.seeds is not None and not self.seeds:
            raise ConfigError("seeds=[] is empty; give a list such as seeds=[0,1,2], or seeds=null")
        for s in [self.seed, *(self.seeds or [])]:
            if not 0 <= s < 2**63:  # numpy's SeedSequence takes non-negative integers only
                raise ConfigError(f"seed={s} must be a non-negative integer (e.g. seed=0)")
        self.resume = _resume(self.resume)
        _choice("rerun", self.rerun, ("keep", "stale"))
        if self.name is not None:
            check_name(self.name)


def validate(cfg: DictConfig) -> RunCfg:
    """Merge a composed config onto :class:`RunCfg` and run every check.

    Args:
        cfg: The composed Hydra config (without the ``hydra`` key).

    Returns:
        The plain dataclass view of the run.

    Raises:
        ConfigError: One line naming the offending key and a fix.
    """
    try:
        merged = OmegaConf.merge(OmegaConf.structured(RunCfg), cfg)
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except ConfigError:
        raise
    except OmegaConfBaseException as e:
        key = e.full_key or "config"
        first = str(e).splitlines()[0]
        if "not in struct" in first or "Key '" in first and "not in" in first:
            parent, _, leaf = key.rpartition(".")
            known = _known_keys(parent)
            hint = difflib.get_close_matches(leaf, known, n=3)
            fix = f"did you mean {', '.join(parent + '.' + h if parent else h for h in hint)}?" if hint else ""
            fix = fix or (f"known keys: {', '.join(known)}" if known else "remove it")
            raise ConfigError(f"{key}: unknown config key; {fix}") from None
        raise ConfigError(f"{key}: {first}") from None


@functools.cache
def _phenomenon_defaults(name: str) -> dict[str, Any]:
    path = CONF_DIR / "phenomenon" / f"{name}.yaml"
    return {k: v for k, v in (yaml.safe_load(path.read_text()) or {}).items() if k != "name"}


def phenomenon_knobs(name: str, phen: Any, retired: tuple[str, ...] = ()) -> dict[str, Any]:
    """A phenomenon's knobs: ``conf/phenomenon/<name>.yaml`` (their only defaults) overridden by ``phen``.

    A ``null`` keeps the default (as ``create_model`` does for model knobs); ``retired`` keys (read from old run dirs)
    are dropped.

    Raises:
        ConfigError: An unknown key, with the closest known ones.
    """
    defaults = _phenomenon_defaults(name)
    given = {k: v for k, v in dict(phen or {}).items() if k != "name" and k not in retired}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(defaults), n=2)
        fix = f"did you mean {' or '.join('phenomenon.' + c for c in close)}?" if close else ""
        fix = fix or f"known: {', '.join(defaults)}"
        raise ConfigError(f"phenomenon.{unknown[0]}: unknown {name} knob; {fix}")
    return {**defaults, **{k: v for k, v in given.items() if v is not None}}


def to_container(cfg: RunCfg) -> dict[str, Any]:
    """The run config as a plain dict (for config.yaml, hashing and W&B)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def _known_keys(parent: str) -> list[str]:
    node: Any = RunCfg
    for part in [p for p in parent.split(".") if p]:
        fields = getattr(node, "__dataclass_fields__", {})
        if part not in fields:
            return []
        node = fields[part].type
        node = globals().get(node, node) if isinstance(node, str) else node
    return sorted(getattr(node, "__dataclass_fields__", {}))


def _check_strength(value: Any) -> None:
    """``model.nonlinearity_strength`` must be a finite number in [0, 1] (deep_models.with_nonlinearity)."""
    try:
        ok = not isinstance(value, bool | str | bytes) and math.isfinite(float(value)) and 0.0 <= float(value) <= 1.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(
            f"model.{STRENGTH_KEY}={value!r} must be a finite number in [0, 1] (0 = linear twin, 1 = real network); "
            f"e.g. model.{STRENGTH_KEY}=0.5"
        )


def check_name(name: str) -> None:
    """A run name is one folder under ``paths.runs_root``: no separators, no ``..``, at most 100 characters.

    Raises:
        ConfigError: The name could leave its root, or is not a plain folder name.
    """
    if name in ("", ".", "..") or len(name) > MAX_NAME or not _NAME.fullmatch(name):
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise ConfigError(
            f"name={shown!r} is not a plain folder name; use 1-{MAX_NAME} letters, digits and . _ - + = , @ "
            "(no / or \\, not . or ..), e.g. name=my_run"
        )


def _resume(value: Any) -> bool | str:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "false", "force"):
        return {"true": True, "false": False}.get(text, "force")
    raise ConfigError(f"resume={value!r} is not known; choose one of: true, false, force")


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        close = difflib.get_close_matches(str(value), allowed, n=1)
        hint = f"did you mean {key}={close[0]}? " if close else ""
        raise ConfigError(f"{key}={value!r} is not known; {hint}choose one of: {', '.join(allowed)}")


def _compose(overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name="lintwin"):
        return compose(config_name="config", overrides=overrides)


def compose_experiment(name: str, overrides: list[str]) -> DictConfig:
    """Compose ``experiment=<name>`` plus overrides, inside or outside a running Hydra app."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    args = [f"experiment={name}", *overrides]
    if GlobalHydra.instance().is_initialized():
        return compose(config_name="config", overrides=args)
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name="lintwin"):
        return compose(config_name="config", overrides=args)
