"""The README's "Adding an architecture" recipe, followed literally: one file in deep_models/, one YAML in
conf/model/, then the README's command. A clean copy of the tree is used, so the repository itself is untouched."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from tests.comparisons.test_suite import clean_checkout, lintwin_in
from tests.conftest import ROOT, SHARED_DATA

CNN = """
import torch
from torch import nn

from deep_models import register_model


class SmallCNN(nn.Module):
    def __init__(self, channels, out_dim, width, generator=None):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.SiLU(), nn.MaxPool2d(2), nn.Flatten()
        )
        self.num_features = None
        self.num_classes = out_dim
        self.head = None
        self.width = width
        self.out_dim = out_dim

    def build(self, input_shape):
        with torch.no_grad():
            self.num_features = self.body(torch.zeros(1, *input_shape)).shape[1]
        self.head = nn.Linear(self.num_features, self.out_dim)
        return self

    def forward_features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.forward_features(x))

    def get_classifier(self):
        return self.head


@register_model
def small_cnn(*, input_shape, out_dim, generator=None, width=4):
    return SmallCNN(input_shape[0], out_dim, width).build(input_shape)
"""

YAML = """name: small_cnn
width: 4
"""


def test_the_readme_recipe_adds_an_architecture(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    recipe = readme[readme.index("## Adding an architecture") :]
    command = re.search(r"`\.venv/bin/lintwin (model=<name>[^`]*)`", recipe).group(1)
    checkout = clean_checkout(tmp_path / "lintwin")
    (checkout / "deep_models" / "small_cnn.py").write_text(CNN)
    (checkout / "conf" / "model" / "small_cnn.yaml").write_text(YAML)
    args = command.replace("<name>", "small_cnn").split()
    small = ["train.steps=3", "train.eval_points=2", "task.n_train=64", "task.n_test=64", "train.progress=off"]
    res = lintwin_in(checkout, *args, *small, "sweep.grid={}", data=SHARED_DATA)
    assert res.returncode == 0, res.stderr[-3000:]
    (summary,) = [json.loads(p.read_text()) for p in (checkout / "runs").rglob("summary.json")]
    assert summary["phenomenon"] == "neural_collapse" and summary["status"] == "complete"
    curves = pd.read_csv(next((checkout / "runs").rglob("curves.csv")))
    assert any(m.startswith("twin") for m in curves.member.unique())  # the twin came for free
