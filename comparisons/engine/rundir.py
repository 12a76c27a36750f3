"""The run directory: the one contract between training and reporting (docs/design.md "The run directory").

Layout::

    <run_dir>/config.yaml  curves.csv  summary.json  figures/  checkpoint.pt  COMPLETE

Every file is written to ``<name>.tmp`` and then ``os.replace``-d into place, so a reader never sees half a file;
``COMPLETE`` is written last. :func:`load_run` is the only reader; reporting, figures and W&B use nothing else.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from comparisons.engine import rundir
from comparisons.engine.config import RunCfg, to_container

CURVE_COLUMNS = ["member", "step", "time", "metric", "value"]
COMPLETE = "COMPLETE"
DIGEST = "sha256"  # the checkpoint key holding state_digest() of the rest


class RunDirError(ValueError):
    """A run dir that cannot be read or written: one line naming the file and the fix."""


@dataclass
class Run:
    """A loaded run directory."""

    path: Path
    config: dict[str, Any]
    curves: pd.DataFrame  # columns CURVE_COLUMNS
    summary: dict[str, Any]

    @property
    def complete(self) -> bool:
        """Whether the run dir holds its COMPLETE marker."""
        return (self.path / COMPLETE).exists()


def config_hash(config: dict[str, Any]) -> str:
    """A short stable hash of a resolved config, minus output paths (the sweep key, docs/design.md "Sweeps").

    The hashed view is :func:`hashed_config`: a file-based task's data root is part of it, so the same config
    on another data root (another ``LINTWIN_DATA``) is another run dir.
    """
    blob = json.dumps(hashed_config(config), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


# Keys added after runs were hashed: left out of the hash at their default, so earlier run dirs keep their hash; any
# other value is another run.
LATER_KEYS = {("train", "snapshot_every"): 0, ("train", "flush_denormal"): False, ("optim", "fused"): False}


def hashed_config(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved config that decides a run's results: what :func:`config_hash` hashes.

    Output paths, the logger, ``resume``, ``rerun``, ``debug`` and the progress bar change no result and are
    left out; for a task that reads files (one with a ``data_root`` key) the absolute data root is put in
    ``task.data_root``.
    """
    keyed = {k: v for k, v in config.items() if k not in ("paths", "logger", "resume", "rerun", "debug")}
    if isinstance(keyed.get("train"), dict):  # the progress bar changes no result: a relaunch without it must match
        keyed["train"] = {k: v for k, v in keyed["train"].items() if k != "progress"}
    for (group, key), default in LATER_KEYS.items():  # at their default, hashed as before the key existed
        if isinstance(keyed.get(group), dict) and keyed[group].get(key, default) == default:
            keyed[group] = {k: v for k, v in keyed[group].items() if k != key}
    root = data_root(config)
    if root is not None:
        keyed["task"] = {**keyed["task"], "data_root": str(root)}
    return keyed


def data_root(config: dict[str, Any]) -> Path | None:
    """The absolute data root a resolved config reads (``task.data_root``, else ``paths.data_root``, else
    ``$LINTWIN_DATA``), or None for a task that reads no files."""
    task = config.get("task")
    if not isinstance(task, dict) or not _reads_files(str(task.get("name"))):
        return None
    from tasks.images import data_files

    return data_files(task["name"], task.get("data_root") or (config.get("paths") or {}).get("data_root"))[0]


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    write_bytes(path, text.encode())


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON atomically (numpy and torch scalars converted, NaN kept)."""
    write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=False, allow_nan=True) + "\n")


def write_yaml(path: Path, obj: Any) -> None:
    """Write ``obj`` as YAML atomically."""
    write_text(path, yaml.safe_dump(_jsonable(obj), sort_keys=False))


def write_curves(path: Path, curves: pd.DataFrame) -> None:
    """Write the long curve table atomically, in ``CURVE_COLUMNS`` order."""
    write_text(path, curves[CURVE_COLUMNS].to_csv(index=False, float_format="%.10g"))


def snapshot_path(run_dir: Path, step: int) -> Path:
    """Where ``train.snapshot_every`` keeps the members' weights at ``step``: ``snapshots/step_<step>.pt``."""
    return Path(run_dir) / "snapshots" / f"step_{step:09d}.pt"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomically save a checkpoint with the sha256 of its content (``torch.save`` into memory, one atomic write).

    ``state`` may hold only tensors, dicts, lists, tuples, numbers, strings, bools and None: what
    ``torch.load(weights_only=True)`` reads back without running code.
    """
    buf = io.BytesIO()
    torch.save({**state, DIGEST: state_digest(state)}, buf)
    write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` and verify its sha256; refuse anything else in one line.

    Raises:
        RunDirError: Unreadable, not a lintwin checkpoint, or its content does not match its checksum.
    """
    fix = "delete it to restart that run, or set resume=false"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never runs code from the file
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise RunDirError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__}); {fix}") from None
    if not isinstance(state, dict) or DIGEST not in state:
        raise RunDirError(f"checkpoint {path} has no sha256 (not written by this lintwin); {fix}")
    stored = state.pop(DIGEST)
    if stored != state_digest(state):
        raise RunDirError(f"checkpoint {path} fails its sha256 check (its content changed on disk); {fix}")
    return state


def state_digest(state: Any) -> str:
    """sha256 of a checkpoint's content: every tensor's dtype, shape and bytes, and every other value, in order.

    Raises:
        TypeError: ``state`` holds a value ``weights_only=True`` could not load back (an object, a generator).
    """
    h = hashlib.sha256()
    _digest(state, h)
    return h.hexdigest()


def mark_complete(run_dir: Path) -> None:
    """Write the COMPLETE marker: the last file of a run."""
    write_text(run_dir / COMPLETE, "")


def is_complete(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds the COMPLETE marker."""
    return (run_dir / COMPLETE).exists()


def load_run(path: str | Path) -> Run:
    """Read a run directory written by :func:`comparisons.engine.run.run`.

    Raises:
        RunDirError: The folder is not a run dir or a file is unreadable.
    """
    path = Path(path)
    try:
        config = yaml.safe_load((path / "config.yaml").read_text())
        summary = json.loads((path / "summary.json").read_text())
        curves = pd.read_csv(path / "curves.csv")
    except FileNotFoundError as e:
        raise RunDirError(f"{path} is not a finished lintwin run dir: {Path(e.filename).name} is missing") from None
    except (json.JSONDecodeError, yaml.YAMLError, pd.errors.ParserError) as e:
        raise RunDirError(f"{path}: unreadable run file ({type(e).__name__}); rerun that job") from None
    return Run(path=path, config=config, curves=curves, summary=summary)


def find_runs(path: str | Path) -> list[Path]:
    """All run dirs (folders holding summary.json) at or below ``path``, sorted."""
    return sorted(p.parent for p in Path(path).rglob("summary.json"))


def _digest(obj: Any, h: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for k, v in obj.items():
            _digest(k, h)
            _digest(v, h)
    elif isinstance(obj, (set, frozenset)):  # set order is not stable across a save and load: hash it sorted
        h.update(f"S{len(obj)}".encode())
        for v in sorted(obj, key=repr):
            _digest(v, h)
    elif isinstance(obj, (list, tuple)):
        h.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)}".encode())
        for v in obj:
            _digest(v, h)
    elif obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    else:
        raise TypeError(f"a checkpoint cannot hold a {type(obj).__name__} (weights_only=True would refuse it)")


def _reads_files(task_name: str) -> bool:
    import tasks

    try:
        return "data_root" in tasks.task_keys(task_name)
    except Exception:  # noqa: BLE001 - an unknown task reads nothing; tasks.build names it later
        return False


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return obj


def resolve_run_dir(cfg: RunCfg) -> Path:
    """``paths.run_dir`` if set, else ``<runs_root>/<name>/<config hash>`` (so a rerun finds and resumes it)."""
    if cfg.paths.run_dir:
        return Path(cfg.paths.run_dir)
    name = cfg.name or cfg.phenomenon["name"]
    return Path(cfg.paths.runs_root) / name / rundir.config_hash(to_container(cfg))


def versions() -> dict[str, str]:
    """Python, torch, torchvision, numpy and lintwin versions, for summary.json."""
    import numpy
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "lintwin": _lintwin_version(),
    }


def git_commit() -> str:
    """The commit of the lintwin checkout that runs, or ``unknown`` outside git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _lintwin_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lintwin")
    except PackageNotFoundError:
        return "unknown"
