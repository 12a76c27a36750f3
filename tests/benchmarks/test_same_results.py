"""benchmarks.same_results: identical run dirs compare equal; one changed curve value or score is reported."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.same_results import main


def _run(d: Path, value: float, score: float) -> Path:
    d.mkdir(parents=True)
    (d / "curves.csv").write_text(
        f"member,step,time,metric,value\nreal,0,0,train_loss,1.0\nreal,10,0.1,train_loss,{value}\n"
    )
    (d / "summary.json").write_text(json.dumps({"scores": {"rho": score}}))
    return d


def test_same_and_different(tmp_path: Path, capsys) -> None:
    a = _run(tmp_path / "a" / "x", 0.5, 0.9)
    b = _run(tmp_path / "b" / "x", 0.5, 0.9)
    c = _run(tmp_path / "c" / "x", 0.5 + 1e-6, 0.9)
    d = _run(tmp_path / "d" / "x", 0.5, 0.8)
    assert main([str(a.parent), str(b.parent)]) == 0 and "x: same numbers" in capsys.readouterr().out
    assert main([str(a), str(c)]) == 1 and "train_loss: 0.5 -> 0.500001" in capsys.readouterr().out
    assert main([str(a), str(c), "--rtol", "1e-3"]) == 0
    assert main([str(a), str(d)]) == 1 and "score rho: 0.9 -> 0.8" in capsys.readouterr().out


def test_two_run_dirs_of_other_hashes_are_compared(tmp_path: Path, capsys) -> None:
    """Two run dirs are compared directly, whatever their names (a knob that changes no number changes the hash)."""
    a = _run(tmp_path / "runs_a" / "0123abcd", 0.5, 0.9)
    b = _run(tmp_path / "runs_b" / "4567ef01", 0.5, 0.9)
    c = _run(tmp_path / "runs_c" / "89ab2345", 0.25, 0.9)
    assert main([str(a), str(b)]) == 0 and "same numbers" in capsys.readouterr().out
    assert main([str(a), str(c)]) == 1 and "train_loss: 0.5 -> 0.25" in capsys.readouterr().out
