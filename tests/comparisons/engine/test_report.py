"""``lintwin report``: unreadable run dirs are skipped and listed; report.html inlines only PNGs under its folder."""

from __future__ import annotations

import base64
from pathlib import Path

from comparisons.engine import report, rundir
from tests.conftest import compose_cfg

SMALL = ["phenomenon=grokking", "train.steps=5", "train.eval_points=3", "task.p=7", "model.width=8"]


def test_report_skips_and_lists_unreadable_run_dirs(toy_phenomenon, tmp_path: Path, capsys) -> None:
    from comparisons.engine.run import run
    from comparisons.engine.rundir import resolve_run_dir

    cfgs = [compose_cfg([*SMALL, f"seed={s}", f"name=run{s}", f"paths.runs_root={tmp_path}"]) for s in (0, 1)]
    for c in cfgs:
        run(c)
    bad = resolve_run_dir(cfgs[1])
    (bad / "summary.json").write_text("{not json")
    capsys.readouterr()
    assert report.report_main([str(tmp_path)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"lintwin: report skipped 1 unreadable run dir(s): {bad} "
        "(unreadable run file (JSONDecodeError); rerun that job)"
    ]
    md = (tmp_path / "report.md").read_text()
    assert "run0" in md and "run1" not in md


def test_report_inlines_only_pngs_under_its_folder(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    (out / "figures").mkdir(parents=True)
    inside, secret = out / "figures" / "ok.png", tmp_path / "secret.png"
    inside.write_bytes(b"\x89PNG inside")
    secret.write_bytes(b"\x89PNG the secret")
    (out / "figures" / "link.png").symlink_to(secret)
    notes = [
        f"x\n![leak]({secret})",  # a newline in a note would start an image line of its own
        "y\n![climb](../secret.png)",
        "z\n![link](figures/link.png)",
    ]
    summary = {"phenomenon": "grokking", "name": "s", "verdict": "agree", "scores": {}, "notes": notes}
    report.write_report([summary], {"s": [inside]}, out)
    html = (out / "report.html").read_text()
    assert base64.b64encode(inside.read_bytes()).decode() in html  # the control: a figure of the run is inlined
    assert base64.b64encode(secret.read_bytes()).decode() not in html
    assert html.count("data:image/png;base64,") == 1
    from comparisons.engine.report_html import _inline

    assert _inline(secret, out) is None and _inline(out / "figures" / "link.png", out) is None  # outside, via a link
    assert _inline(inside, out).startswith("data:image/png;base64,")
    assert rundir.find_runs(out) == []
