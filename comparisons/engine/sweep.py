"""Members from a config: the product of sweep.grid, and for every point the task, the real network and its twin.

``model.nonlinearity_strength`` (s in [0, 1], default 1; any registered model, also as a ``sweep.grid`` key) moves
the "real" member along the twin-to-real homotopy: it trains ``deep_models.with_nonlinearity(real, s)`` (s = 0 is the
twin, s = 1 the real network; docs/theory.md 1.5), built from the same initial weights, while the twin member stays
``linear_twin(real)``.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import torch
from omegaconf import OmegaConf

import tasks
from comparisons.engine.config import STRENGTH_KEY, ConfigError, RunCfg, to_container, validate
from comparisons.engine.members import Context, Member, streams
from deep_models import create_model, linear_twin, list_models, with_nonlinearity


def build_members(cfg: RunCfg, ctx: Context) -> list[Member]:
    """Real network + twin for every sweep point, sharing tasks (and so batches) where task configs agree."""
    task_cache: dict[str, tasks.Task] = {}
    members: list[Member] = []
    for point in sweep_points(cfg):
        pcfg = apply_point(cfg, point)
        label = point_label(point)
        task = _build_task(pcfg, ctx, task_cache)
        real = _build_model(pcfg, task, ctx)
        strength = nonlinearity_strength(pcfg)
        trained = real if strength == 1.0 else with_nonlinearity(real, strength)  # same initial weights
        suffix = f":{label}" if label else ""
        members.append(
            Member(name=f"real{suffix}", role="real", model=trained, task=task, point=point, optim=pcfg.optim)
        )
        if pcfg.twin.enabled:
            twin_task = task
            if pcfg.twin.whiten:
                key = json.dumps(pcfg.task, sort_keys=True, default=str) + ":white"
                if key not in task_cache:
                    task_cache[key] = _task_call(tasks.whiten, task)
                twin_task = task_cache[key]
            members.append(
                Member(
                    name=f"twin{suffix}",
                    role="twin",
                    model=linear_twin(real),
                    task=twin_task,
                    point=point,
                    optim=pcfg.optim,
                )
            )
    return members


def nonlinearity_strength(cfg: RunCfg) -> float:
    """``model.nonlinearity_strength`` as a float (1.0 = the real network when the key is absent)."""
    return float(cfg.model.get(STRENGTH_KEY, 1.0))


def sweep_points(cfg: RunCfg) -> list[dict[str, Any]]:
    """The product of ``sweep.grid`` (dotted key -> values) as a list of override dicts; ``[{}]`` when empty."""
    grid = cfg.sweep.grid
    if not grid:
        return [{}]
    keys = list(grid)
    return [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*(grid[k] for k in keys))]


def point_label(point: dict[str, Any]) -> str:
    """A short member suffix for a sweep point: ``init_scale=5,weight_decay=0.1``.

    A value that is a mapping sets several keys at once (a zipped axis, e.g. ``model: [{width: 16, output_scale:
    0.25}, ...]``); its keys are spelled out: ``width=16,output_scale=0.25``.
    """
    parts = []
    for k, v in point.items():
        items = v.items() if isinstance(v, dict) else [(k, v)]
        parts += [f"{kk.rsplit('.', 1)[-1]}={vv}" for kk, vv in items]
    return ",".join(parts)


def human(text: str) -> str:
    """A config key or point label for a figure: ``model.init_scale`` -> ``init scale``, ``init_scale=0.125,
    control=shuffled_labels`` -> ``init scale 0.125, control shuffled labels``."""
    parts = []
    for part in str(text).split(","):
        key, eq, value = part.partition("=")
        key = key.rsplit(".", 1)[-1].replace("_", " ")
        parts.append(f"{key} {value.replace('_', ' ')}" if eq else key)
    return ", ".join(parts)


def apply_point(cfg: RunCfg, point: dict[str, Any]) -> RunCfg:
    """``cfg`` with a sweep point's dotted overrides applied (and validated again)."""
    if not point:
        return cfg
    conf = OmegaConf.create(to_container(cfg))
    for key, value in point.items():
        if OmegaConf.select(conf, key, default="__missing__") == "__missing__" and key.split(".")[0] not in (
            "task",
            "model",
            "phenomenon",
        ):
            raise ConfigError(f"sweep.grid.{key}: no such config key; use a dotted key such as optim.weight_decay")
        OmegaConf.update(conf, key, value, force_add=True)
    return validate(conf)


def _build_task(cfg: RunCfg, ctx: Context, cache: dict[str, tasks.Task]) -> tasks.Task:
    spec = dict(cfg.task)
    if spec.get("data_root") is None and cfg.paths.data_root and "data_root" in tasks.task_keys(spec["name"]):
        spec["data_root"] = cfg.paths.data_root
    key = json.dumps(spec, sort_keys=True, default=str)
    if key not in cache:
        gen = streams(cfg.seed)["task"]  # identical per point: points differing only elsewhere share the data
        cache[key] = _task_call(tasks.build, spec, device=ctx.device, dtype=ctx.dtype, generator=gen)
    return cache[key]


def _task_call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except tasks.TaskError as e:
        raise ConfigError(str(e)) from None


def _build_model(cfg: RunCfg, task: tasks.Task, ctx: Context) -> torch.nn.Module:
    spec = dict(cfg.model)
    name = spec.pop("name")
    spec.pop(STRENGTH_KEY, None)  # applied by build_members, not by the model's constructor
    if name not in list_models():
        import difflib

        close = difflib.get_close_matches(name, list_models(), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(f"model.name: unknown model {name!r}; {hint}known: {', '.join(list_models())}")
    gen = streams(cfg.seed)["init"]  # identical per point: every point starts from the same base draw
    try:
        model = create_model(
            name, input_shape=tuple(task.meta["input_shape"]), out_dim=int(task.meta["out_dim"]), generator=gen, **spec
        )
    except TypeError as e:
        msg = str(e)
        key = msg.split("'")[1] if "unexpected keyword argument" in msg and "'" in msg else None
        if key:
            raise ConfigError(
                f"model.{key}: unknown key for model {name}; remove it (see conf/model/{name}.yaml)"
            ) from None
        raise ConfigError(f"model: {msg}") from None
    except ValueError as e:
        raise ConfigError(f"model: {str(e).splitlines()[0]}") from None
    except (MemoryError, RuntimeError) as e:  # e.g. model.width=1e12: the allocator refuses
        if isinstance(e, RuntimeError) and "allocate" not in str(e):
            raise
        raise ConfigError(
            f"model {name} with {spec} needs more memory than this machine has; choose smaller model.width/depth"
        ) from None
    model = model.to(device=ctx.device, dtype=ctx.dtype)
    _check_shapes(model, task, name, cfg)
    return model


def _check_shapes(model: torch.nn.Module, task: tasks.Task, name: str, cfg: RunCfg) -> None:
    try:
        with torch.no_grad():
            out = model(task.x_train[:2])
    except RuntimeError as e:
        raise ConfigError(
            f"model {name} does not accept task {task.name} inputs of shape "
            f"{tuple(task.x_train.shape[1:])} ({str(e).splitlines()[0][:80]}); pick a matching model"
        ) from None
    if out.shape[-1] != task.meta["out_dim"]:
        raise ConfigError(
            f"model {name} outputs {out.shape[-1]} values but task {task.name} needs "
            f"{task.meta['out_dim']}; pick a matching model"
        )
    if cfg.train.loss == "ce" and task.labels_train is None:
        raise ConfigError(f"train.loss=ce needs class labels but task {task.name} is a regression; use train.loss=mse")
