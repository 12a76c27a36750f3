from __future__ import annotations

import pytest

from comparisons.engine.config import ConfigError
from tests.conftest import compose_cfg

BAD = [
    (["optim.lr=-1"], "optim.lr=-1.0 must be > 0"),
    (["optim.lr=0"], "optim.lr=0.0 must be > 0"),
    (["train.steps=0"], "train.steps=0 must be >= 1"),
    (["train.loss=mae"], "train.loss='mae' is not known"),
    (["optim=sgd", "optim.momentum=1.5"], "optim.momentum=1.5 must be in [0, 1)"),
    (["dtype=float16"], "dtype='float16' is not known"),
    (["optim.lr=abc"], "optim.lr"),
    (["sweep.grid={optim.lr:3}"], "must be a non-empty list"),
    (["seeds=[]"], "seeds=[] is empty"),
]


@pytest.mark.parametrize(("overrides", "needle"), BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_values_raise_one_line(overrides: list[str], needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        compose_cfg(overrides)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg


def test_good_config_validates_to_dataclasses() -> None:
    cfg = compose_cfg(["optim=sgd", "optim.lr=0.05", "train.steps=10"])
    assert cfg.optim.name == "sgd" and cfg.optim.lr == 0.05 and cfg.train.steps == 10
    assert cfg.task["name"] == "modular" and cfg.model["name"] == "mlp"


def test_loss_suggests_close_match() -> None:
    with pytest.raises(ConfigError, match="did you mean train.loss=mse"):
        compose_cfg(["train.loss=mse2"])
