"""A run dir belongs to one run: its identity (config, data files, code version) is stored and checked.

``<run_dir>/identity.json`` is written before training starts and holds

- ``config_hash`` and ``config``: the hashed view of the resolved config (:func:`rundir.hashed_config`: output
  paths, logger, resume and the progress bar left out; a file-based task's absolute data root put in);
- ``data``: for a task that reads files, its data root and each data file's path (relative to the root), size
  and mtime;
- ``git_commit``: the commit of the code that made it.

Before a complete run is skipped or a checkpoint is resumed, :func:`check` compares the stored identity with this
run's. Another config or changed data files are refused in one line naming the differing keys and the fix, unless
``resume=force`` (keep the dir as this config's) or ``resume=false`` (retrain it here). Another git commit is not a
refusal: :func:`stale_commit` says so and the runner reuses the run with a notice, or retrains it with
``rerun=stale``. A run dir written before identity.json existed is checked against its config.yaml.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import yaml

from comparisons.engine import rundir
from comparisons.engine.config import ConfigError, RunCfg, to_container

log = logging.getLogger(__name__)

IDENTITY = "identity.json"
SHOWN = 4  # differing keys named in the refusal; the rest are counted


class RunDirTaken(ConfigError):
    """The run dir holds another run (another config or changed data files)."""


def run_identity(cfg: RunCfg) -> dict[str, Any]:
    """The identity of the run ``cfg`` describes: config hash and view, data files, git commit."""
    config = to_container(cfg)
    return {
        "config_hash": rundir.config_hash(config),
        "config": json.loads(json.dumps(rundir.hashed_config(config), default=str)),
        "data": data_identity(config),
        "git_commit": rundir.git_commit(),
    }


def data_identity(config: dict[str, Any]) -> dict[str, Any] | None:
    """Data root and ``{path, size, mtime_ns}`` of each data file a resolved config reads (None: no files)."""
    root = rundir.data_root(config)
    if root is None:
        return None
    from tasks.images import data_files

    _, files = data_files(config["task"]["name"], root)
    stats = [(f, f.stat()) for f in files]
    return {
        "root": str(root),
        "files": [
            {"path": str(f.relative_to(root)), "size": st.st_size, "mtime_ns": st.st_mtime_ns} for f, st in stats
        ],
    }


def stored_identity(run_dir: Path) -> dict[str, Any] | None:
    """The identity stored in ``run_dir``: identity.json, else one rebuilt from config.yaml and summary.json (run
    dirs written before identity.json), else None (an empty or foreign folder)."""
    try:
        return json.loads((run_dir / IDENTITY).read_text())
    except FileNotFoundError:
        pass
    except (OSError, ValueError):
        raise ConfigError(
            f"{run_dir / IDENTITY} is unreadable; delete it (or the run dir) or set resume=false to retrain"
        ) from None
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(config, dict):
        return None
    try:
        commit = json.loads((run_dir / "summary.json").read_text()).get("git_commit")
    except (OSError, ValueError, AttributeError):
        commit = None
    hashed = json.loads(json.dumps(rundir.hashed_config(config), default=str))
    return {"config_hash": rundir.config_hash(config), "config": hashed, "data": None, "git_commit": commit}


def write_identity(run_dir: Path, identity: dict[str, Any]) -> None:
    """Store ``identity`` in ``run_dir`` (atomically)."""
    rundir.write_json(run_dir / IDENTITY, identity)


def differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What tells two identities apart, one short phrase each (git commit excluded): config keys, data files."""
    out = [
        f"{k}: {_show(a)} there, {_show(b)} here"
        for k, a, b in _diff(_flat(stored.get("config") or {}), _flat(current.get("config") or {}))
    ]
    old, new = stored.get("data"), current.get("data")
    if old is not None and new is not None:  # a run dir without data identity (older lintwin) is judged by config
        if old.get("root") != new.get("root"):
            out.append(f"data root: {old.get('root')} there, {new.get('root')} here")
        else:
            before = {f["path"]: f for f in old.get("files", [])}
            after = {f["path"]: f for f in new.get("files", [])}
            for path in sorted(before.keys() | after.keys()):
                a, b = before.get(path), after.get(path)
                if a is None or b is None:
                    out.append(f"data file {path}: {'added' if a is None else 'gone'} since")
                elif (a["size"], a["mtime_ns"]) != (b["size"], b["mtime_ns"]):
                    out.append(f"data file {path}: changed since (size {a['size']} -> {b['size']}, mtime)")
    return out


def check(run_dir: Path, cfg: RunCfg, current: dict[str, Any]) -> dict[str, Any] | None:
    """Refuse to reuse or resume ``run_dir`` for ``cfg`` when it holds another run.

    Args:
        run_dir: The run dir, which may hold a complete run, a checkpoint, or nothing.
        cfg: This run's validated config (``resume`` decides: true checks, false and force do not refuse).
        current: :func:`run_identity` of ``cfg``.

    Returns:
        The stored identity (None when the folder holds none).

    Raises:
        RunDirTaken: The stored identity differs in config or data and ``resume`` is true.
    """
    stored = stored_identity(run_dir)
    if stored is None or cfg.resume is not True:
        if stored is not None and cfg.resume == "force" and differences(stored, current):
            log.warning(
                "resume=force: %s is kept as this config's run although %s", run_dir, differences(stored, current)[0]
            )
        return stored
    has_state = rundir.is_complete(run_dir) or any(run_dir.glob("checkpoint*.pt"))
    diffs = differences(stored, current)
    if diffs and has_state:
        more = f" (and {len(diffs) - SHOWN} more)" if len(diffs) > SHOWN else ""
        raise RunDirTaken(
            f"run dir {run_dir} holds another run ({'; '.join(diffs[:SHOWN])}{more}); use another paths.run_dir, "
            "or resume=false to retrain it with this config, or resume=force to keep it as this config's"
        )
    return stored


def stale_commit(stored: dict[str, Any] | None, current: dict[str, Any]) -> str | None:
    """The stored git commit when it differs from this checkout's (a stale run), else None."""
    if stored is None:
        return None
    old = stored.get("git_commit")
    if old and old != current["git_commit"]:
        return str(old)
    return None


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.update(_flat(v, key) if isinstance(v, dict) and v else {key: v})
    return out


def _diff(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    missing = object()
    return [
        (k, a.get(k, "unset"), b.get(k, "unset"))
        for k in sorted(a.keys() | b.keys())
        if a.get(k, missing) != b.get(k, missing)
    ]


def _show(v: Any) -> str:
    text = json.dumps(v, default=str) if not isinstance(v, str) else v
    return text if len(text) <= 40 else text[:37] + "..."
