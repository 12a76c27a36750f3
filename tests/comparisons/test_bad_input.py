"""Bad input: one line naming the problem and the fix, exit code 2, no traceback (docs/design.md "Failure model").

The table holds one row per mistake (config keys and groups, names, values, data files, output dirs, checkpoints,
shapes); each row runs the real CLI entry point in-process and checks the exit code, that stderr is exactly one
``lintwin: ...`` line holding the expected words, and that no traceback was printed anywhere. Data corruption is
made in a tmp copy (symlinks to the read-only shared files plus one damaged file), never in the shared data.
A few subprocess cases check the console script itself, and ``debug=true`` bringing the traceback back.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from comparisons.engine import identity, rundir
from tests.conftest import SHARED_DATA, compose_cfg

BASE = ["phenomenon=grokking", "train.steps=5", "train.eval_points=3"]  # defaults otherwise: modular p=23, mlp, adamw

# (id, args, needle). {tmp}: the test's tmp dir; {file}: a regular file; {mnist_truncated}, {cifar_corrupt}: tmp
# data roots with one damaged file; {ckpt:<kind>}: write a checkpoint of that kind into the run's dir first.
BAD = [
    ("unknown key", ["train.stepz=5"], "train.stepz: unknown config key"),
    ("unknown added key", ["+train.foo=1"], "train.foo: unknown config key; known keys: batch_size"),
    ("unknown top-level key", ["+lr=0.1"], "lr: unknown config key"),
    ("wrong type", ["train.steps=abc"], "train.steps"),
    ("unknown optim group", ["optim=adamm"], "optim=adamm: no such optim config; did you mean optim=adam?"),
    ("unknown task group", ["task=mnsit"], "task=mnsit: no such task config; did you mean task=mnist?"),
    ("unknown experiment", ["experiment=smok"], "did you mean experiment=smoke?"),
    ("unknown launcher", ["hydra/launcher=slrum"], "did you mean hydra/launcher=slurm?"),
    ("sweep group typo", ["-m", "task=modular,modulr"], "task=modulr: no such task config; did you mean task=modular?"),
    ("unknown model name", ["model.name=mpl"], "unknown model 'mpl'; did you mean mlp?"),
    ("unknown model group", ["model=mpl"], "model=mpl: no such model config; did you mean model=mlp?"),
    ("unknown task name", ["task.name=mnsit"], "task.name='mnsit' is not a known task; did you mean mnist?"),
    ("unknown phenomenon name", ["phenomenon.name=groking"], "did you mean phenomenon.name=grokking?"),
    ("unknown phenomenon group", ["phenomenon=groking"], "did you mean phenomenon=grokking?"),
    ("unknown model key", ["+model.widht=3"], "widht"),
    ("unknown task key", ["+task.foo=1"], "task.foo: unknown key for task modular"),
    ("unknown sweep key", ["sweep.grid={optim.lrr:[0.1]}"], "sweep.grid.optim.lrr: no such config key"),
    ("negative lr", ["optim.lr=-1"], "optim.lr=-1.0 must be > 0 (e.g. optim.lr=0.01)"),
    ("zero lr", ["optim.lr=0"], "optim.lr=0.0 must be > 0"),
    ("zero steps", ["train.steps=0"], "train.steps=0 must be >= 1"),
    ("train fraction 0", ["task.train_fraction=0"], "task.train_fraction=0.0 must be in (0, 1)"),
    ("train fraction 1.5", ["task.train_fraction=1.5"], "task.train_fraction=1.5 must be in (0, 1)"),
    ("p not prime for /", ["task.op=/", "task.p=24"], "task.p=24 is not prime, so op '/' is undefined"),
    ("subset larger than data", ["task=mnist", "task.n_train=70000"], "task.n_train=70000 exceeds the 60000 MNIST"),
    ("width 0", ["model.width=0"], "width=0 must be >= 1"),
    ("depth 0", ["model.depth=0"], "depth=0 must be >= 1"),
    ("unknown device", ["device=tpu"], "device='tpu' is not a device; use device=auto, cpu or cuda[:N]"),
    ("missing dataset", ["task=mnist", "task.data_root={tmp}/nowhere"], "MNIST not found"),
    ("truncated data file", ["task=mnist", "task.data_root={mnist_truncated}"], "are corrupt or truncated"),
    (
        "corrupt data file",
        ["task=cifar10", "task.verify_checksums=false", "task.data_root={cifar_corrupt}"],
        "are corrupt or truncated",
    ),
    ("unwritable runs root", ["paths.runs_root={file}/runs"], "is not writable (Not a directory); set paths.runs_root"),
    ("unwritable hydra root", ["paths.hydra_root={file}/out"], "is not writable (Not a directory); set paths.hydra"),
    (
        "unwritable runs root in a sweep",
        ["-m", "optim.lr=0.1,0.2", "paths.runs_root={file}/runs"],
        "set paths.runs_root",
    ),
    ("corrupt checkpoint", ["{ckpt:garbage}"], "is corrupt or truncated (IndexError); delete it to restart that run"),
    ("truncated checkpoint", ["{ckpt:truncated}"], "is corrupt"),
    ("foreign checkpoint", ["{ckpt:foreign}"], "does not fit this run"),
    ("checkpoint of other members", ["{ckpt:members}"], "holds members ['someone'], not this run's"),
    ("checkpoint without checksum", ["{ckpt:unsigned}"], "has no sha256 (not written by this lintwin)"),
    ("checkpoint with a bit flip", ["{ckpt:bitflip}"], "fails its sha256 check (its content changed on disk)"),
    ("checkpoint that runs code", ["{ckpt:code}"], "is corrupt or truncated (UnpicklingError)"),
    ("lr inf", ["optim.lr=inf"], "optim.lr=inf must be finite"),
    ("lr nan", ["optim.lr=nan"], "optim.lr=nan must be > 0"),
    ("weight decay nan", ["optim.weight_decay=nan"], "optim.weight_decay=nan must be >= 0 and finite"),
    ("negative seed", ["seed=-1"], "seed=-1 must be a non-negative integer"),
    ("negative seed in seeds", ["seeds=[0,-2]"], "seed=-2 must be a non-negative integer"),
    ("negative gamma", ["optim.schedule=step", "optim.gamma=-1"], "optim.gamma=-1.0 must be > 0 and finite"),
    ("beta of 1", ["optim.betas=[0.9,1.0]"], "optim.betas=[0.9, 1.0] must be two numbers in [0, 1)"),
    ("three betas", ["optim.betas=[0.9,0.9,0.9]"], "must be two numbers in [0, 1)"),
    ("eps 0", ["optim.eps=0"], "optim.eps=0.0 must be > 0 and finite"),
    ("eps nan", ["optim.eps=nan"], "optim.eps=nan must be > 0 and finite"),
    ("no eval samples", ["train.eval_max_samples=0"], "train.eval_max_samples=0 must be >= 1"),
    ("absurd steps", ["train.steps=10000000000"], "train.steps=10000000000 is more than 1e+09 steps"),
    ("name climbs out", ["name=../../x"], "name='../../x' is not a plain folder name"),
    ("name is ..", ["name=.."], "name='..' is not a plain folder name"),
    ("absolute name", ["name=/abs"], "name='/abs' is not a plain folder name"),
    ("name with a separator", ["name=a/b"], "name='a/b' is not a plain folder name"),
    ("name too long", ["name=" + "n" * 101], "is not a plain folder name; use 1-100 letters"),
    ("unknown resume", ["resume=maybe"], "resume='maybe' is not known; choose one of: true, false, force"),
    ("unknown rerun", ["rerun=always"], "rerun='always' is not known"),
    ("target override", ["+hydra.callbacks.x._target_=os.system"], "_target_ overrides are refused"),
    ("target in a group", ["+optim._target_=builtins.eval"], "_target_ overrides are refused"),
    ("target in a sweep", ["-m", "+model._target_=os.system,os.getcwd"], "_target_ overrides are refused"),
    ("another config in the run dir", ["{other_config}", "optim.lr=0.05"], "holds another run (optim.lr: 0.01 there"),
    ("model/task shapes disagree", ["model=transformer"], "model transformer does not accept task modular inputs"),
    ("image model on flat images", ["task=mnist", "model=resnet_small"], "must be (C, H, W)"),
    ("ce loss on a regression", ["task=teacher_student", "train.loss=ce"], "needs class labels"),
]


@pytest.mark.parametrize(("case", "args", "needle"), BAD, ids=[c for c, _, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(case: str, args: list[str], needle: str, lintwin, tmp_path: Path) -> None:
    args = _prepare(args, tmp_path)
    res = lintwin(*BASE, *args)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, (case, res.stdout[-2000:], res.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("lintwin: "), res.stderr
    assert needle in lines[0], lines[0]
    assert "Traceback" not in res.stdout + res.stderr


def test_table_is_large_enough() -> None:
    assert len(BAD) >= 20 and len({c for c, _, _ in BAD}) == len(BAD)


def test_checkpoint_that_runs_code_runs_nothing(lintwin, tmp_path: Path) -> None:
    ckpt = _run_dir(tmp_path) / "checkpoint.pt"
    _write_checkpoint("code", ckpt)
    with pytest.raises(FileNotFoundError):  # the control: plain pickle.load would have created the file
        (ckpt.parent / "PWNED").stat()
    assert lintwin(*BASE).returncode == 2
    assert not (ckpt.parent / "PWNED").exists()
    pickle.loads(ckpt.read_bytes())  # negative control: the payload is live, so the test can fail
    assert (ckpt.parent / "PWNED").exists()


def test_corrupt_checkpoint_is_never_trained_over(lintwin, tmp_path: Path) -> None:
    ckpt = _run_dir(tmp_path) / "checkpoint.pt"
    _write_checkpoint("garbage", ckpt)
    before = ckpt.read_bytes()
    assert lintwin(*BASE).returncode == 2
    assert ckpt.read_bytes() == before and not (ckpt.parent / "COMPLETE").exists()


def test_wandb_failure_warns_and_the_run_completes(lintwin, tmp_path: Path, monkeypatch) -> None:
    import wandb

    def no_network(*args, **kwargs):
        raise RuntimeError("wandb.init timed out: no network")

    monkeypatch.setattr(wandb, "init", no_network)
    _no_figures(monkeypatch)
    res = lintwin(*BASE, "logger=wandb", "logger.mode=online")
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    assert "W&B init (online) failed" in out and "retrying offline" in out and "Traceback" not in out
    assert (_run_dir(tmp_path) / "COMPLETE").exists()  # the hash leaves the logger out: same run dir


def test_console_script_bad_value_is_one_line_exit_2(run_cli) -> None:
    res = run_cli(*BASE, "model.width=0")  # fails inside the Hydra job, after torch and the task are loaded
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [res.stderr.strip()]
    assert res.stderr.startswith("lintwin: ") and "width=0 must be >= 1" in res.stderr
    assert "Traceback" not in res.stdout + res.stderr


def test_console_script_compose_error_is_one_line_exit_2(run_cli) -> None:
    res = run_cli("task=cifar11")
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        "lintwin: task=cifar11: no such task config; did you mean task=cifar10? available: cifar10, fashion_mnist, "
        "mnist, modular, sparse_parity, teacher_student"
    ]


def test_debug_true_shows_the_traceback(run_cli) -> None:
    res = run_cli(*BASE, "optim.lr=0", "debug=true")  # caught before Hydra starts: no torch import, fast
    assert res.returncode != 0 and "Traceback" in res.stderr + res.stdout


def test_debug_true_shows_the_traceback_of_a_job_error(lintwin, monkeypatch) -> None:
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    res = lintwin(*BASE, "model.width=0", "debug=true")  # raised inside the Hydra job, after the pre-flight
    assert res.returncode == 1 and "Traceback" in res.stderr and "width=0 must be >= 1" in res.stderr


# --- helpers: tmp data copies, damaged checkpoints, the run dir of BASE ---


def _prepare(args: list[str], tmp: Path) -> list[str]:
    out = []
    for a in args:
        if a == "{other_config}":  # a complete run of BASE + optim.lr=0.01 in the run dir that the test names
            out.append(f"paths.run_dir={tmp / 'shared_run'}")
            _complete_run(tmp / "shared_run", ["optim.lr=0.01"])
            continue
        if a.startswith("{ckpt:"):
            _write_checkpoint(a[len("{ckpt:") : -1], _run_dir(tmp) / "checkpoint.pt")
            continue
        if "{file}" in a:
            (tmp / "a_file").write_text("not a folder\n")
            a = a.replace("{file}", str(tmp / "a_file"))
        if "{mnist_truncated}" in a:
            a = a.replace("{mnist_truncated}", str(_damaged_copy(tmp, "MNIST/raw", "train-images-idx3-ubyte")))
        if "{cifar_corrupt}" in a:
            a = a.replace("{cifar_corrupt}", str(_damaged_copy(tmp, "cifar-10-batches-py", "data_batch_3")))
        out.append(a.replace("{tmp}", str(tmp)))
    return out


def _damaged_copy(tmp: Path, folder: str, damaged: str) -> Path:
    """A data root under tmp: every file of ``folder`` symlinked to the shared copy except ``damaged``, which holds
    the first 100 kB of the original (a truncated download) for IDX files and random bytes otherwise."""
    root = tmp / "data"
    (root / folder).mkdir(parents=True, exist_ok=True)
    for f in (SHARED_DATA / folder).iterdir():
        dst = root / folder / f.name
        if f.name == damaged:
            head = f.read_bytes()[:100_000]
            dst.write_bytes(head if "idx" in f.name else os.urandom(len(head)))
        else:
            dst.symlink_to(f)
    return root


def _write_checkpoint(kind: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    if kind == "garbage":
        path.write_bytes(b"this is not a torch checkpoint\n" * 10)
        return
    if kind == "code":  # a pickle whose loading would create a file: weights_only=True must refuse it
        path.write_bytes(pickle.dumps(_Exploit(path.parent / "PWNED")))
        return
    state = (
        {"step": 3, "rows": [], "data_rng": torch.Generator().get_state(), "order": {}, "members": {"someone": {}}}
        if kind == "members"
        else {"step": 3, "weights": torch.zeros(1000)}
    )
    if kind == "unsigned":
        torch.save(state, buf)
    else:
        torch.save({**state, rundir.DIGEST: rundir.state_digest(state)}, buf)
    data = bytearray(buf.getvalue())
    if kind == "bitflip":  # one bit of the tensor's bytes, inside the zip entry torch stores them in
        with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
            info = next(i for i in z.infolist() if i.filename.endswith("data/0"))
        name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
        data[info.header_offset + 30 + name_len + extra_len + 100] ^= 0x01
    path.write_bytes(bytes(data[: len(data) // 2] if kind == "truncated" else data))


class _Exploit:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def _complete_run(run_dir: Path, extra: list[str]) -> None:
    """A fake complete run of BASE + ``extra`` in ``run_dir``, as run() would leave it (config.yaml, COMPLETE)."""
    from comparisons.engine.config import to_container

    cfg = _named(compose_cfg([*BASE, *extra, f"paths.run_dir={run_dir}"]))
    identity.write_identity(run_dir, identity.run_identity(cfg))
    rundir.write_yaml(run_dir / "config.yaml", to_container(cfg))
    rundir.mark_complete(run_dir)


def _named(cfg):
    cfg.name = cfg.name or cfg.phenomenon["name"]  # as cli.main names a run without an experiment
    return cfg


def _run_dir(tmp: Path) -> Path:
    from comparisons.engine.rundir import resolve_run_dir

    return resolve_run_dir(_named(compose_cfg([*BASE, f"paths.runs_root={tmp / 'runs'}"])))


def _no_figures(monkeypatch) -> None:
    from comparisons.engine.phenomenon import get_phenomenon

    monkeypatch.setattr(get_phenomenon("grokking"), "figures", lambda run, out_dir: [])
