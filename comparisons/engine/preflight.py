"""Pre-run checks: config groups, sweep overrides and output folders, each refused with one line before training."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


def check_groups(argv: list[str], conf_dir: Path) -> None:
    """Every config-group choice on the command line exists (each value of a sweep too), ``hydra/launcher`` included.

    Raises:
        ConfigError: ``<group>=<name>: no such <group> config; did you mean ...? available: ...``.
    """
    import difflib

    from hydra.core.override_parser.overrides_parser import OverridesParser

    from comparisons.engine.config import ConfigError

    for o in OverridesParser.create().parse_overrides([a for a in argv if not a.startswith("-")]):
        group = o.key_or_group
        if o.is_delete() or "." in group or not (conf_dir / group).is_dir():
            continue
        try:
            values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
        except Exception:  # noqa: BLE001 - glob() and the like: let Hydra expand and check them
            continue
        options = sorted({p.stem for p in (conf_dir / group).glob("*.yaml")} | set(_stored_options(group)))
        for v in values:
            if v not in options and v != "null":
                close = difflib.get_close_matches(v, options, n=1)
                hint = f"did you mean {group}={close[0]}? " if close else ""
                raise ConfigError(f"{group}={v}: no such {group} config; {hint}available: {', '.join(options)}")


def check_sweep(argv: list[str], conf_dir: Path) -> None:
    """Pre-flight of a multirun: every swept group choice exists, the first job composes, the output dirs are writable.

    Per-job *values* (a negative lr in one job) are not checked here: they fail that job alone and are recorded.
    A group or key typo would fail every job (or make Hydra abort the sweep), so it is one line and exit 2.

    Raises:
        Exception: Hydra's compose error, or a ConfigError naming the missing group choice or unwritable folder.
    """
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    check_groups(argv, conf_dir)
    overrides = OverridesParser.create().parse_overrides([a for a in argv if not a.startswith("-")])
    try:
        first = BasicSweeper.split_arguments([o for o in overrides if not o.is_hydra_override()], None)[0][0]
    except Exception:  # noqa: BLE001 - sweeps the basic expansion does not handle are left to Hydra
        return
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir), job_name="lintwin"):
        cfg = compose(config_name="config", overrides=first)
    check_output_dirs(cfg.paths, hydra_dir_set=any(a.startswith("hydra.sweep.dir") for a in argv))


def check_output_dirs(paths: Any, hydra_dir_set: bool = False) -> None:
    """Pre-flight: ``paths.runs_root`` and Hydra's ``paths.hydra_root`` exist or can be made, and take a file.

    Args:
        paths: The ``paths`` section (a PathsCfg or the composed DictConfig node).
        hydra_dir_set: The command sets ``hydra.run.dir``/``hydra.sweep.dir`` itself; skip ``paths.hydra_root``.

    Raises:
        ConfigError: One line naming the key, the reason and the fix.
    """
    import tempfile

    from comparisons.engine.config import ConfigError

    keys = ["runs_root"] + ([] if hydra_dir_set else ["hydra_root"])
    for key in keys:
        folder = Path(str(getattr(paths, key)))
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as e:
            raise ConfigError(
                f"paths.{key}={folder} is not writable ({e.strerror or type(e).__name__}); set "
                f"paths.{key} to a folder you can write to"
            ) from None


def _stored_options(group: str) -> list[str]:
    """Config names Hydra's plugins store for ``group`` (``hydra/launcher``: basic, joblib, submitit_*)."""
    if not group.startswith("hydra"):
        return []
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    Plugins.instance()  # discovers the installed hydra_plugins, which fill the ConfigStore
    try:
        return [n.removesuffix(".yaml") for n in ConfigStore.instance().list(group)]
    except OSError:
        return []
