"""Do two runs give the same numbers? ``python -m benchmarks.same_results OLD NEW [--rtol 1e-9]``.

OLD and NEW are two run dirs (compared whatever their config hashes), or suite dirs whose children are matched by
name (e.g. ``make demo`` at two commits). For each pair it compares every observed curve value (member, step,
metric) and every score of summary.json, and prints one line per run: identical, equal within ``rtol``, or the
largest differences. Exit 0 when every shared run agrees within the tolerance, 1 otherwise. This is how a
refactoring shows that it changed no scientific number.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd


def _runs(root: Path) -> dict[str, Path]:
    if (root / "curves.csv").exists():
        return {root.name: root}
    return {p.parent.name: p.parent for p in sorted(root.glob("*/curves.csv"))}


def _close(a: float, b: float, rtol: float) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b or abs(a - b) <= rtol * max(abs(a), abs(b), 1e-300)


def compare(old: Path, new: Path, rtol: float) -> list[str]:
    """The differences between two run dirs (empty when every curve value and score agrees within ``rtol``)."""
    out = []
    a, b = pd.read_csv(old / "curves.csv"), pd.read_csv(new / "curves.csv")
    key = ["member", "step", "metric"]
    a = a[~a.metric.str.contains(":")]  # seed aggregates (m:lo, m:hi, m:median) are derived
    b = b[~b.metric.str.contains(":")]
    m = a.merge(b, on=key, how="outer", suffixes=("_old", "_new"), indicator=True)
    only = m[m["_merge"] != "both"]
    if len(only):
        out.append(f"{len(only)} curve rows in one run only (e.g. {only.iloc[0][key].tolist()})")
    both = m[m["_merge"] == "both"]
    bad = [r for r in both.itertuples() if not _close(float(r.value_old), float(r.value_new), rtol)]
    out += [f"curve {r.member} step {r.step} {r.metric}: {r.value_old!r} -> {r.value_new!r}" for r in bad[:5]]
    if len(bad) > 5:
        out.append(f"... {len(bad)} curve values differ")
    sa = json.loads((old / "summary.json").read_text()).get("scores", {})
    sb = json.loads((new / "summary.json").read_text()).get("scores", {})
    for k in sorted(set(sa) & set(sb)):
        va, vb = sa[k], sb[k]
        if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and not _close(float(va), float(vb), rtol):
            out.append(f"score {k}: {va!r} -> {vb!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Compare OLD and NEW; print one line per shared run; exit 1 when any differ."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--rtol", type=float, default=1e-9)
    args = ap.parse_args(argv)
    old, new = _runs(args.old), _runs(args.new)
    if (args.old / "curves.csv").exists() and (args.new / "curves.csv").exists():  # two run dirs: compare them
        old, new = {args.new.name: args.old}, {args.new.name: args.new}
    shared = sorted(set(old) & set(new))
    if not shared:
        print(f"no run of the same name under {args.old} and {args.new}", file=sys.stderr)
        return 2
    failed = 0
    for name in shared:
        diffs = compare(old[name], new[name], args.rtol)
        print(f"{name}: " + ("same numbers" if not diffs else "DIFFERENT"))
        for d in diffs:
            print(f"  {d}")
        failed += bool(diffs)
    for name in sorted(set(old) ^ set(new)):
        print(f"{name}: only under {'OLD' if name in old else 'NEW'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
