"""The ``lintwin`` command: a Hydra main that calls :func:`comparisons.engine.run.run`, plus ``report`` and ``status``.

Usage::

    lintwin                                 # experiment=suite: every phenomenon's CPU preset, then the scoreboard
    lintwin seeds=[3,4,5]                   # the same default job with an override (no experiment/phenomenon named)
    lintwin experiment=grokking_modular     # one experiment
    lintwin -m seed=0,1,2                   # a Hydra multirun (launchers: conf/hydra/launcher/)
    lintwin report PATH                     # re-render scoreboard, report and figures from run dirs, no training
    lintwin status PATH                     # the state of every job of a sweep

Bad input (config, data, checkpoint, output folder) prints ``lintwin: <one line>`` and exits 2; ``debug=true``
shows the traceback instead. Hydra's own compose errors (``task=cifar11``) are caught before Hydra starts, so they
get the same one-line form (docs/design.md "Configs").
"""

from __future__ import annotations

import difflib
import logging
import re
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from comparisons.engine.config import CONF_DIR, ConfigError, _compose, validate

log = logging.getLogger("lintwin")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    """Hydra task function: validate, run, print the scoreboard. In a multirun one job's failure is recorded and
    the sweep goes on."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    debug = bool(cfg.get("debug"))
    from comparisons.engine.interrupt import Interrupted, handlers

    rcfg = None
    try:
        with handlers():  # SIGTERM/SIGINT: checkpoint at the end of the current step, then one line
            rcfg = validate(cfg)
            if rcfg.name is None:
                rcfg.name = hc.runtime.choices.get("experiment") or rcfg.phenomenon["name"]
            if multirun and rcfg.logger.group is None:
                rcfg.logger.group = f"{rcfg.name}-{Path(hc.sweep.dir).name}"
            from comparisons.engine import identity, lock
            from comparisons.engine.report import print_summary
            from comparisons.engine.run import run
            from comparisons.engine.rundir import resolve_run_dir
            from comparisons.engine.status import record_done, record_start
            from comparisons.homotopy import run_homotopy
            from comparisons.suite import run_suite

            run_dir = resolve_run_dir(rcfg)
            with lock.hold(run_dir):  # lock and identity before status.json: a refused launch must not touch it
                identity.check(run_dir, rcfg, identity.run_identity(rcfg))
                record_start(rcfg)  # status.json: running (lintwin status PATH, the sweep manifest)
                runner = {"suite": run_suite, "homotopy": run_homotopy}.get(rcfg.phenomenon["name"], run)
                summary = runner(rcfg)
                record_done(rcfg, summary)
            if summary.get("reused_from_commit"):
                print(
                    f"lintwin: note: reused {run_dir}, complete since commit "
                    f"{summary['reused_from_commit'][:12]} (this checkout: {summary.get('current_commit', '?')[:12]}); "
                    "rerun=stale retrains it",
                    file=sys.stderr,
                )
            print_summary(summary)
    except Interrupted as e:
        from comparisons.engine.status import record_interrupted

        if rcfg is not None:
            record_interrupted(rcfg, e.line())
        print(f"lintwin: {e.line()}", file=sys.stderr)
        sys.exit(e.exit_code)
    except Exception as e:
        from comparisons.engine.status import record_failure

        line = _one_line(e)
        record_failure(cfg, line, own_dir=not _not_this_runs_dir(e))  # so `lintwin status runs/` lists failed jobs
        if debug:
            raise
        if multirun:
            log.error("job %s failed: %s", hc.job.num, line)
            return
        print(f"lintwin: {line}", file=sys.stderr)
        sys.exit(2 if _is_bad_input(e) else 1)


def entry() -> None:
    """Console-script entry point: subcommands, then a pre-flight compose so Hydra errors become one line."""
    argv = sys.argv[1:]
    if argv[:1] == ["report"]:
        from comparisons.engine.report import report_main

        sys.exit(report_main(argv[1:]))
    if argv[:1] == ["wandb"]:
        from comparisons.engine.tracking import wandb_main

        sys.exit(wandb_main(argv[1:]))
    if argv[:1] == ["status"]:
        from comparisons.engine.status import status_main

        sys.exit(status_main(argv[1:]))
    argv = with_default_job(argv)
    multirun = any(a in ("-m", "--multirun") for a in argv)
    debug = any(re.fullmatch(r"\+?debug=(true|default|1)", a) for a in argv)
    # debug is a config group (conf/debug/), and Hydra refuses a bool as a group choice: true -> debug=default,
    # false -> the default (no debug preset)
    argv = [
        ("debug=default" if a.endswith(("true", "1")) else "") if re.fullmatch(r"\+?debug=(true|false|1|0)", a) else a
        for a in argv
    ]
    argv = [a for a in argv if a]
    dotted = [a for a in argv if re.fullmatch(r"\+?sweep\.grid\.[\w.]+=.*", a)]
    if dotted:
        key, _, value = dotted[0].lstrip("+").partition("=")
        print(
            f"lintwin: {dotted[0]}: a sweep grid's keys are dotted names, not nested keys; write "
            f"'sweep.grid={{{key[len('sweep.grid.') :]}:{value}}}' (quoted for the shell)",
            file=sys.stderr,
        )
        sys.exit(2)
    argv = replace_grid_overrides(argv)
    if multirun and any(a in ("--cfg", "-c") for a in argv):  # Hydra refuses -m with --cfg: show the first job's
        argv = [a for a in argv if a not in ("-m", "--multirun")]
        argv = [first_job(a) for a in argv]
        multirun = False
        print("lintwin: --cfg with -m shows the first job's config", file=sys.stderr)
    from comparisons.engine.status import CALLBACK_OVERRIDE

    # an override naming a callable would run it; lintwin's own callback is the one allowed
    bad = [a for a in argv if "_target_" in a and a != CALLBACK_OVERRIDE]
    if bad:
        print(
            f"lintwin: {bad[0][:80]}: _target_ overrides are refused (they name code to run); choose a config group "
            "instead (e.g. optim=sgd, hydra/launcher=slurm)",
            file=sys.stderr,
        )
        sys.exit(2)
    if not multirun and not any(a.startswith("-") for a in argv):
        try:
            from comparisons.engine.preflight import check_groups, check_output_dirs

            check_groups(argv, CONF_DIR)  # hydra/launcher=<typo> too, which the compose below leaves out
            rcfg = validate(_compose([a for a in argv if not a.startswith("hydra")]))
            check_output_dirs(rcfg.paths, hydra_dir_set=any(a.startswith("hydra.run.dir") for a in argv))
        except Exception as e:
            if debug:
                raise
            print(f"lintwin: {_one_line(e)}", file=sys.stderr)
            sys.exit(2)
    if multirun:  # group typos would fail every job: one line, exit 2; per-job values fail that job alone
        from comparisons.engine.preflight import check_sweep
        from comparisons.engine.status import CALLBACK_OVERRIDE, sweep_exit_code

        try:
            if not any(a.startswith("-") and a not in ("-m", "--multirun") for a in argv):  # --cfg job etc.: as is
                check_sweep(argv, CONF_DIR)
        except Exception as e:
            if debug:
                raise
            print(f"lintwin: {_one_line(e)}", file=sys.stderr)
            sys.exit(2)
        # manifest.json + the list of failures at the end of the sweep; next to the other overrides, since argparse
        # wants them in one run (`-m ... --cfg hydra` works)
        last = max((i for i, a in enumerate(argv) if "=" in a and not a.startswith("-")), default=len(argv) - 1)
        argv = [*argv[: last + 1], CALLBACK_OVERRIDE, *argv[last + 1 :]]
    sys.argv = [sys.argv[0], *argv]
    main()
    if multirun:
        sys.exit(sweep_exit_code())


DEFAULT_JOB = "experiment=suite"


def with_default_job(argv: list[str]) -> list[str]:
    """The default job (``experiment=suite``) unless the command names an experiment or a phenomenon.

    So ``lintwin seeds=[0,1,2]``, ``lintwin logger=wandb`` or ``lintwin paths.runs_root=x`` run the suite with that
    override, and ``lintwin phenomenon=grokking task=modular ...`` (or ``experiment=<name>``) runs one pair.
    """
    overrides = [i for i, a in enumerate(argv) if "=" in a and not a.startswith("-")]
    if {argv[i].split("=", 1)[0].lstrip("+~") for i in overrides} & {"experiment", "phenomenon"}:
        return argv
    at = overrides[0] if overrides else len(argv)  # beside the other overrides: argparse wants them in one run
    return [*argv[:at], DEFAULT_JOB, *argv[at:]]


def first_job(arg: str) -> str:
    """``key=a,b,c`` (a sweep) -> ``key=a``; lists, dicts and quoted values are left alone."""
    key, sep, value = arg.partition("=")
    if not sep or arg.startswith("-") or any(c in value for c in "[]{}'\"") or "," not in value:
        return arg
    return f"{key}={value.split(',')[0]}"


def replace_grid_overrides(argv: list[str]) -> list[str]:
    """``sweep.grid={...}`` -> ``~sweep.grid +sweep.grid={...}``: Hydra merges a dict override into the existing
    (struct) dict and refuses its new keys, but a sweep grid on the command line means "this grid instead"."""
    return [b for a in argv for b in (["~sweep.grid", "+" + a] if re.fullmatch(r"sweep\.grid=\{.*\}", a) else [a])]


def _is_bad_input(e: BaseException) -> bool:
    from comparisons.engine.rundir import RunDirError
    from tasks import TaskError

    bad = (ConfigError, RunDirError, TaskError)
    return isinstance(e, bad) or type(e).__module__.startswith(("hydra", "omegaconf"))


def _not_this_runs_dir(e: BaseException) -> bool:
    """A run dir refused because another process or another run owns it: its status.json is not this job's."""
    from comparisons.engine.identity import RunDirTaken
    from comparisons.engine.lock import RunDirBusy

    return isinstance(e, RunDirBusy | RunDirTaken)


def _one_line(e: BaseException) -> str:
    """One line naming the problem and the fix, for config, Hydra and run-dir errors alike."""
    msg = str(e).strip()
    m = re.search(r"Could not find '([\w/]+)/(\w+)'", msg)
    if m:
        group, name = m.groups()
        options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        close = difflib.get_close_matches(name, options, n=3)
        hint = f"did you mean {group}={close[0]}? " if close else ""
        return f"{group}={name}: no such {group} config; {hint}available: {', '.join(options)}"
    m = re.search(r"Could not override '([\w.]+)'", msg) or re.search(r"Key '([\w.]+)' is not in struct", msg)
    if m:
        key = m.group(1)
        return (
            f"{key}: unknown config key; check the spelling (`lintwin --cfg job` lists every key) or add it with +{key}"
        )
    if not isinstance(e, (ConfigError, ValueError)) and not _is_bad_input(e):
        return f"{type(e).__name__}: {msg.splitlines()[0] if msg else ''} (rerun with debug=true for the traceback)"
    return msg.splitlines()[0] if msg else type(e).__name__


if __name__ == "__main__":
    entry()
