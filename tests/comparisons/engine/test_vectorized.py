"""Vectorised training (comparisons/vectorized.py): every member's curves equal its solo run, exact optimizers."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from comparisons.engine.batched import BatchedOptimizer
from comparisons.engine.config import OptimCfg
from comparisons.engine.loop import train_members
from comparisons.engine.members import Context, Member, eval_steps, streams
from comparisons.engine.sweep import build_members
from comparisons.engine.vectorized import plan, use_vectorized
from tests.conftest import compose_cfg

KEYS = ["member", "step", "metric"]
BASE = ["phenomenon=grokking", "train.eval_points=6", "train.progress=off", "train.checkpoint_every=0"]


def _ctx(cfg, tmp_path) -> Context:
    return Context(cfg=cfg, device=torch.device("cpu"), dtype=torch.float32, run_dir=tmp_path, streams=streams(0))


def _train(overrides: list[str], vectorize: str, tmp_path, members=None, checkpoint=None) -> pd.DataFrame:
    cfg = compose_cfg([*BASE, *overrides, f"sweep.vectorize={vectorize}", f"paths.runs_root={tmp_path}"])
    ctx = _ctx(cfg, tmp_path)
    members = build_members(cfg, ctx) if members is None else members
    return pd.DataFrame(train_members(members, ctx, checkpoint=checkpoint))


def _solo(overrides: list[str], tmp_path) -> pd.DataFrame:
    """Each sweep point's pair trained alone in the loop trainer, with a fresh data stream."""
    cfg = compose_cfg([*BASE, *overrides, "sweep.vectorize=false", f"paths.runs_root={tmp_path}"])
    members = build_members(cfg, _ctx(cfg, tmp_path))
    frames = []
    for i in range(0, len(members), 2):
        frames.append(pd.DataFrame(train_members(members[i : i + 2], _ctx(cfg, tmp_path))))
    return pd.concat(frames, ignore_index=True)


def _assert_same_curves(a: pd.DataFrame, b: pd.DataFrame, rtol: float = 2e-4, atol: float = 2e-5) -> None:
    assert len(a) == len(b) > 0
    m = a.merge(b, on=KEYS, suffixes=("_v", "_l"), validate="one_to_one")
    assert len(m) == len(a), "the two runs recorded different (member, step, metric) rows"
    np.testing.assert_allclose(m["time_v"], m["time_l"], rtol=1e-12)
    np.testing.assert_allclose(m["value_v"], m["value_l"], rtol=rtol, atol=atol)


GRIDS = {  # per-member init scale, lr, weight decay, momentum/nesterov and schedule, in every optimizer
    "adamw_ce": [
        "optim=adamw",
        "train.loss=ce",
        "train.batch_size=32",
        "train.steps=25",
        "sweep.grid={model.init_scale:[0.5,2.0],optim.weight_decay:[0.0,0.5]}",
    ],
    "adam_mse_cosine": [
        "optim=adam",
        "train.loss=mse",
        "optim.schedule=cosine",
        "train.steps=25",
        "sweep.grid={model.layer_scales:[[2.0,0.5],[1.0,1.0]],optim.betas:[[0.9,0.98],[0.8,0.999]]}",
    ],
    "sgd_momentum_step": [
        "optim=sgd",
        "train.loss=mse_mean",
        "optim.schedule=step",
        "train.steps=25",
        "train.batch_size=20",
        "optim.lr=0.5",
        "model.activation=tanh",
        "optim.nesterov=true",
        "sweep.grid={optim.momentum:[0.5,0.9],optim.weight_decay:[0.0,0.01]}",
    ],
    "adamw_fused": [
        "optim=adamw",
        "optim.fused=true",
        "train.batch_size=32",
        "train.steps=25",
        "sweep.grid={model.init_scale:[0.5,2.0],optim.lr:[0.001,0.003]}",
    ],
    "conv1x1": [
        "++model.linear_impl=conv1x1",
        "model.depth=3",
        "train.steps=15",
        "sweep.grid={optim.lr:[0.001,0.003]}",
    ],
    "target_scale": [
        "optim=sgd",
        "train.steps=25",
        "model.activation=gelu",
        "model.output_scale=0.5",
        "sweep.grid={task.target_scale:[1.0,3.0],optim.lr:[0.1,0.3]}",
    ],
    "no_bias_whitened_twin": [
        "task=teacher_student",
        "task.n_train=64",
        "task.n_test=32",
        "model.bias=false",
        "twin.whiten=true",
        "optim=sgd",
        "optim.lr=0.01",
        "train.steps=25",
        "sweep.grid={model.layer_scales:[[2.0,0.5],[1.0,1.0]]}",
    ],
}
GRIDS = {
    k: ["task.p=7", "model.width=16", *v] if "task=teacher_student" not in v else ["model.width=16", *v]
    for k, v in GRIDS.items()
}


@pytest.mark.parametrize("grid", GRIDS, ids=list(GRIDS))
def test_every_member_equals_its_solo_run(grid: str, tmp_path) -> None:
    vec = _train(GRIDS[grid], "true", tmp_path)
    _assert_same_curves(vec, _solo(GRIDS[grid], tmp_path))


def test_transformer_members_batch_through_torch_func(tmp_path) -> None:
    ov = [
        "task.p=7",
        "model=transformer",
        "model.d_model=16",
        "model.n_heads=2",
        "model.d_mlp=32",
        "task.encoding=tokens",
        "train.loss=ce",
        "train.steps=15",
        "optim.weight_decay=0.1",
        "sweep.grid={optim.lr:[0.01,0.003]}",
    ]
    cfg = compose_cfg([*BASE, *ov, f"paths.runs_root={tmp_path}"])
    groups, _ = plan(build_members(cfg, _ctx(cfg, tmp_path)), cfg)
    assert sorted(map(len, groups)) == [2, 2]  # real nets and twins: one group each
    _assert_same_curves(_train(ov, "true", tmp_path), _solo(ov, tmp_path))


def test_online_task_with_per_member_targets_equals_the_loop(tmp_path) -> None:
    ov = [
        "task=sparse_parity",
        "task.n_bits=8",
        "task.n_skills=2",
        "task.n_test=64",
        "task.n_probe=8",
        "model.width=8",
        "optim=sgd",
        "optim.lr=0.05",
        "train.batch_size=16",
        "train.steps=30",
        "sweep.grid={task.target_scale:[1.0,2.0],model.init_scale:[0.5,1.0]}",
    ]
    _assert_same_curves(_train(ov, "true", tmp_path), _train(ov, "false", tmp_path))


def test_a_diverging_member_stops_alone_at_the_loops_step(tmp_path) -> None:
    ov = [
        "task.p=7",
        "model.width=16",
        "optim=sgd",
        "train.steps=40",
        "train.eval_points=4",
        "model.init_scale=3.0",
        "sweep.grid={optim.lr:[0.05,300.0]}",
    ]
    vec, loop = _train(ov, "true", tmp_path), _train(ov, "false", tmp_path)
    div = vec[vec.metric == "diverged"]
    assert len(div) >= 1 and all("lr=300.0" in m for m in div.member)
    _assert_same_curves(vec, loop)
    ok = vec[vec.member == "real:lr=0.05"]
    assert set(ok.step) == set(eval_steps(40, 4))  # the healthy member runs to the end


def test_resume_is_bit_identical(tmp_path) -> None:
    ov = [
        "task.p=7",
        "model.width=16",
        "optim=adamw",
        "optim.weight_decay=0.3",
        "train.steps=30",
        "train.batch_size=16",
        "sweep.grid={optim.lr:[0.01,0.003]}",
        "sweep.vectorize=true",
        f"paths.runs_root={tmp_path}",
    ]
    cfg = compose_cfg([*BASE, *ov])
    cfg.train.checkpoint_every = 10

    def crash_at_end(member: Member, step: int) -> dict[str, float]:
        if step == 30:
            raise KeyboardInterrupt  # killed after the step-20 checkpoint
        return {}

    ckpt = tmp_path / "checkpoint.pt"
    with pytest.raises(KeyboardInterrupt):
        train_members(build_members(cfg, _ctx(cfg, tmp_path)), _ctx(cfg, tmp_path), crash_at_end, ckpt)
    assert torch.load(ckpt, weights_only=True)["step"] == 20
    resumed = pd.DataFrame(
        train_members(build_members(cfg, _ctx(cfg, tmp_path)), _ctx(cfg, tmp_path), lambda m, s: {}, ckpt)
    )
    full = pd.DataFrame(train_members(build_members(cfg, _ctx(cfg, tmp_path)), _ctx(cfg, tmp_path)))
    assert resumed.equals(full)


def test_auto_vectorises_grids_only_and_batchnorm_loops(tmp_path) -> None:
    grid = compose_cfg(
        [*BASE, "task.p=7", "model.width=16", "sweep.grid={optim.lr:[0.1,0.2]}", f"paths.runs_root={tmp_path}"]
    )
    pair = compose_cfg([*BASE, "task.p=7", "model.width=16", f"paths.runs_root={tmp_path}"])
    assert use_vectorized(build_members(grid, _ctx(grid, tmp_path)), grid)
    members = build_members(pair, _ctx(pair, tmp_path))
    clone = Member(name="clone", role="real", model=copy.deepcopy(members[0].model), task=members[0].task)
    assert not use_vectorized([*members, clone], pair)  # one point (a pair, even with a clone) stays in the loop
    pair.sweep.vectorize = "true"
    assert use_vectorized(build_members(pair, _ctx(pair, tmp_path)), pair)
    grid.sweep.vectorize = "false"
    assert not use_vectorized(build_members(grid, _ctx(grid, tmp_path)), grid)
    bn = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    task = build_members(pair, _ctx(pair, tmp_path))[0].task
    members = [Member(name=f"m{i}", role="real", model=copy.deepcopy(bn), task=task) for i in range(2)]
    groups, why = plan(members, grid)
    assert groups is None and "BatchNorm1d" in why


OPTIMS = {
    "sgd": dict(
        name="sgd",
        lr=[0.1, 0.02, 0.1],
        weight_decay=[0.0, 0.1, 0.01],
        momentum=[0.9, 0.0, 0.5],
        nesterov=[True, False, False],
        schedule=["step", "constant", "cosine"],
    ),
    "adam": dict(
        name="adam",
        lr=[0.01, 0.001, 0.01],
        weight_decay=[0.0, 0.1, 1.0],
        betas=[[0.9, 0.98]] * 3,
        eps=[1e-8, 1e-6, 1e-8],
        schedule=["constant", "cosine", "step"],
    ),
    "adamw": dict(
        name="adamw",
        lr=[0.01, 0.001, 0.003],
        weight_decay=[1.0, 0.0, 0.1],
        betas=[[0.9, 0.98], [0.8, 0.999], [0.9, 0.9]],
        schedule=["step", "constant", "constant"],
    ),
    "adamw_shared": dict(name="adamw", lr=[0.01] * 3, weight_decay=[1.0] * 3),
    "adam_fused": dict(  # optim.fused: torch's fused kernel on runs of members with equal hyperparameters
        name="adam",
        lr=[0.01, 0.01, 0.001],
        weight_decay=[0.1, 0.1, 0.0],
        schedule=["constant", "constant", "cosine"],
        fused=[True] * 3,
    ),
    "adamw_fused": dict(name="adamw", lr=[0.01, 0.003, 0.01], weight_decay=[1.0, 0.0, 1.0], fused=[True] * 3),
}


@pytest.mark.parametrize("name", OPTIMS, ids=list(OPTIMS))
def test_batched_optimizer_matches_torch_optim_per_member(name: str) -> None:
    from comparisons.engine.members import make_optimizer

    spec, steps, k = dict(OPTIMS[name]), 12, 3
    kind = spec.pop("name")
    cfgs = [OptimCfg(name=kind, **{key: v[i] for key, v in spec.items()}) for i in range(k)]
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(k, 4, 3, generator=g)
    grads = torch.randn(steps, k, 4, 3, generator=g)
    stacked = w0.clone().requires_grad_()
    opt = BatchedOptimizer(cfgs, [stacked], steps)
    for s in range(steps):
        stacked.grad = grads[s].clone()
        opt.step(s)
    for i in range(k):
        p = torch.nn.Parameter(w0[i].clone())
        ref, sched = make_optimizer(torch.nn.ParameterList([p]), cfgs[i], steps)
        for s in range(steps):
            p.grad = grads[s, i].clone()
            ref.step()
            if sched is not None:
                sched.step()
        constant = cfgs[i].schedule == "constant"  # a schedule's lr: torch's recursion vs the closed form
        if name == "adamw_shared" or (cfgs[i].fused and constant):  # torch's own calls or kernel: bit for bit
            assert torch.equal(stacked.detach()[i], p.detach())
        torch.testing.assert_close(stacked.detach()[i], p.detach(), rtol=2e-6, atol=1e-7)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_vectorised_equals_loop_on_cuda(tmp_path) -> None:
    ov = [*GRIDS["adamw_ce"], "device=cuda"]
    cfg = compose_cfg([*BASE, *ov, "sweep.vectorize=true", f"paths.runs_root={tmp_path}"])
    ctx = Context(cfg=cfg, device=torch.device("cuda"), dtype=torch.float32, run_dir=tmp_path, streams=streams(0))
    vec = pd.DataFrame(train_members(build_members(cfg, ctx), ctx))
    cfg.sweep.vectorize = "false"
    ctx = Context(cfg=cfg, device=torch.device("cuda"), dtype=torch.float32, run_dir=tmp_path, streams=streams(0))
    _assert_same_curves(vec, pd.DataFrame(train_members(build_members(cfg, ctx), ctx)), rtol=1e-3, atol=1e-4)
