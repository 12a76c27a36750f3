"""Every phenomenon's figures, drawn from real (short) runs, read as a person would: each panel has axis labels,
every colour bar says what its colour is, no raw config key (``model.init_scale``, ``init_scale=``) is left in a
label, and every title fits inside the figure."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import compose_cfg

RAW_KEY = re.compile(r"\b(model|optim|task|train|phenomenon)\.[a-z_]+|\b[a-z]+_[a-z_]+=")
RUNS = {
    "grokking": ["experiment=grokking_suite", "train.steps=60", "train.eval_points=6"],
    "lazy_rich_fig6": ["experiment=lazy_rich_fig6a", "train.steps=200"],
    "lazy_rich_width": ["experiment=lazy_rich_width", "train.steps=20", "train.eval_points=3", "phenomenon.probe_n=8"],
    "lazy_rich_maps": [
        "experiment=lazy_rich_mlp",
        "train.steps=40",
        "train.eval_points=4",
        "~sweep.grid",
        "+sweep.grid={model.init_scale:[0.1,3.0],model.layer_scales:[[0.5,2.0],[2.0,0.5]]}",
    ],
    "emergence": ["experiment=emergence_suite", "train.steps=100", "train.eval_points=6"],
    "neural_collapse": ["experiment=nc_suite", "train.steps=20", "train.eval_points=4", "phenomenon.ufm_max_steps=200"],
}


def _problems(fig) -> list[str]:
    """What a reader would trip over in one matplotlib figure."""
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    out = []
    texts = [fig._suptitle] if fig._suptitle is not None else []
    for ax in fig.axes:
        if not ax.axison:
            continue
        is_bar = ax.get_label() == "<colorbar>"
        if is_bar:
            if not (ax.get_ylabel() or ax.get_xlabel()):
                out.append("a colour bar without a label")
            continue
        if not ax.get_xlabel():
            out.append(f"panel {ax.get_title()!r} has no x label")
        texts += [ax.title, ax.xaxis.label, ax.yaxis.label]
        legend = ax.get_legend()
        if legend is not None:
            texts += list(legend.get_texts())
    for t in texts:
        s = t.get_text()
        if not s:
            continue
        if RAW_KEY.search(s):
            out.append(f"raw config key in {s!r}")
        ext = t.get_window_extent(renderer)
        if ext.x0 < box.x0 - 1 or ext.x1 > box.x1 + 1:
            out.append(f"text cut off at the figure's edge: {s[:60]!r}")
    return out


@pytest.mark.parametrize("which", list(RUNS))
def test_figures_read_well(which: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from comparisons.engine.run import run

    seen: dict[str, list[str]] = {}
    save = Figure.savefig

    def checked(self, fname, *args, **kwargs):
        if str(fname).endswith(".png"):
            self.canvas.draw()
            seen[Path(str(fname)).name] = _problems(self)
        return save(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", checked)
    run(compose_cfg([*RUNS[which], f"paths.run_dir={tmp_path / 'r'}", "train.progress=off", "seed=0"]))
    assert seen, "the run drew no figure"
    assert {name: p for name, p in seen.items() if p} == {}
