"""Task registry (timm-like, tiny) and :func:`build`, the one entry point from a ``task:`` config section.

Same shape as huggingface/pytorch-image-models:timm/models/_registry.py (docs/design.md "Registry"): a module-level
dict filled by ``@register_task`` keyed on the function name; ``build`` drops ``None`` values so unset keys
keep their defaults, and lists close matches where timm only says "Unknown model".
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from tasks.base import Task, TaskError

_TASKS: dict[str, Callable[..., Task]] = {}
_BUILD_ARGS = ("device", "dtype", "generator")  # passed by build(), never read from the config


def register_task(fn: Callable[..., Task]) -> Callable[..., Task]:
    """Register a task constructor under ``fn.__name__``.

    The constructor takes keyword-only ``device``, ``dtype``, ``generator`` and its own config keys,
    each with a default, and returns a :class:`Task`.

    Raises:
        ValueError: The name is registered twice (a programming error, not a config error).
    """
    if fn.__name__ in _TASKS:
        raise ValueError(f"task {fn.__name__!r} is registered twice")
    _TASKS[fn.__name__] = fn
    return fn


def list_tasks() -> list[str]:
    """Registered task names, sorted."""
    return sorted(_TASKS)


def task_keys(name: str) -> list[str]:
    """The config keys (besides ``name``) that task ``name`` accepts, in signature order."""
    params = inspect.signature(_lookup(name)).parameters
    return [p for p in params if p not in _BUILD_ARGS]


def build(
    cfg: Mapping[str, Any],
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator,
) -> Task:
    """Build a task from its config section.

    Args:
        cfg: The ``task:`` section: ``name`` plus that task's keyword args (a dict or an omegaconf
            DictConfig). Keys set to None keep the task's default.
        device: Where every tensor is created.
        dtype: Float dtype of inputs and targets (token inputs stay long, labels long).
        generator: The run's data stream; every random draw of the task comes from it.

    Returns:
        The task.

    Raises:
        TaskError: Missing or unknown name, unknown key, bad value or missing data (one line each).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> task = build({"name": "modular", "p": 7, "op": "+"}, generator=g)
        >>> task.x_train.shape, task.meta["out_dim"]
        (torch.Size([14, 14]), 7)
    """
    cfg = _plain(cfg)
    if not isinstance(cfg, dict):
        raise TaskError(f"task: expected a mapping with task.name and its keys, got {type(cfg).__name__}")
    name = cfg.pop("name", None)
    if name is None:
        raise TaskError(f"task.name: missing; set task.name to one of {', '.join(list_tasks())}")
    fn = _lookup(name)
    known = task_keys(name)
    for key in cfg:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean task.{close[0]}? " if close else ""
            raise TaskError(f"task.{key}: unknown key for task {name}; {hint}known: {', '.join(known)}")
    if not isinstance(generator, torch.Generator):
        raise TaskError("tasks.build needs generator=torch.Generator (the run's data stream)")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TaskError(f"dtype={dtype} must be a torch float dtype (e.g. dtype: float32)")
    kwargs = {k: v for k, v in cfg.items() if v is not None}  # as timm's create_model: None keeps the default
    params = inspect.signature(fn).parameters
    for k, v in kwargs.items():  # a knob whose default is a whole number takes whole numbers only
        d = params[k].default
        if isinstance(d, int) and not isinstance(d, bool) and not _whole(v):
            raise TaskError(f"task.{k}={v!r} must be an integer (default {d})")
    try:
        return fn(device=torch.device(device), dtype=dtype, generator=generator, **kwargs)
    except MemoryError:
        raise TaskError(
            f"task {name} with {kwargs} needs more memory than this machine has; choose smaller sizes"
        ) from None
    except RuntimeError as e:
        if "allocate" not in str(e):
            raise
        raise TaskError(
            f"task {name} with {kwargs} needs more memory than this machine has; choose smaller sizes"
        ) from None


def _whole(v: Any) -> bool:
    """A finite integer-valued number (bools excluded)."""
    if isinstance(v, bool):
        return False
    try:
        f = float(v)
    except (TypeError, ValueError):
        return False
    return math.isfinite(f) and f == int(f)


def _lookup(name: Any) -> Callable[..., Task]:
    if name not in _TASKS:
        close = difflib.get_close_matches(str(name), list(_TASKS), n=3)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise TaskError(f"task.name={name!r} is not a known task; {hint}known: {', '.join(list_tasks())}")
    return _TASKS[name]


def _plain(value: Any) -> Any:
    """Recursively turn Mappings (DictConfig) into dicts and non-string Sequences (ListConfig) into lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_plain(v) for v in value]
    return value
