"""Do two outputs of mrharmony hold the same numbers? For checking that a change of code leaves
results as they were (or saying by how much it moves them).

Compares two demo folders (or any two folders of run directories with an ``evaluation/``):
every run's weights (``model.pt``: each tensor) or statistical maps (NIfTI files of a saved
harmonizer), and every number of ``evaluation/evaluation.json`` (patch MSE per method and
target, the whole-volume SH / FA / MD errors). Prints the largest absolute difference of each
kind and whether everything is identical; exits 1 when something differs, or a run of one
folder is missing from the other.

Usage:
    python benchmarks/compare_outputs.py OLD_DEMO_OUT NEW_DEMO_OUT

e.g. the demo of two commits: ``PYTHONPATH=<old checkout>/src python -m mrharmony demo old``,
``mrharmony demo new``, then this script on ``old`` and ``new``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def compare_runs(a: Path, b: Path) -> dict[str, float]:
    """Largest absolute difference per run between the weights or maps of two run folders."""
    import nibabel as nib
    import torch

    out = {}
    for run in sorted(p for p in (a / "runs").iterdir() if p.is_dir()):
        other = b / "runs" / run.name
        if (run / "model.pt").is_file():
            sa = torch.load(run / "model.pt", map_location="cpu", weights_only=False)["state_dict"]
            sb = torch.load(other / "model.pt", map_location="cpu", weights_only=False)["state_dict"]
            if sa.keys() != sb.keys():
                out[run.name] = float("inf")
                continue
            out[run.name] = max(
                float((sa[k].double() - sb[k].double()).abs().max()) if sa[k].numel() else 0.0 for k in sa
            )
        else:
            files = sorted(f.name for f in run.glob("*.nii.gz"))
            out[run.name] = max(
                (float(np.abs(nib.load(run / f).get_fdata() - nib.load(other / f).get_fdata()).max()) for f in files),
                default=0.0,
            )
    return out


def compare_evaluations(a: Path, b: Path) -> dict[str, float]:
    """Largest absolute difference of the patch MSE and of each whole-volume error."""
    ea = json.loads((a / "evaluation" / "evaluation.json").read_text())
    eb = json.loads((b / "evaluation" / "evaluation.json").read_text())
    out = {
        "patch_mse": max(
            abs(v["mean"] - eb["patch_mse"][m][t]["mean"]) for m, per in ea["patch_mse"].items() for t, v in per.items()
        )
    }
    rows_b = {(r["method"], r["subject"], r["target"]): r for r in eb["volume_errors"]}
    for r in ea["volume_errors"]:
        other = rows_b[(r["method"], r["subject"], r["target"])]
        for k, v in r.items():
            if isinstance(v, float):
                out[k] = max(out.get(k, 0.0), abs(v - other[k]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    args = ap.parse_args()
    missing = sorted({p.name for p in (args.old / "runs").iterdir()} ^ {p.name for p in (args.new / "runs").iterdir()})
    if missing:
        print(f"runs in one folder only: {', '.join(missing)}")
        return 1
    runs = compare_runs(args.old, args.new)
    ev = compare_evaluations(args.old, args.new)
    print("| run | largest weight / map difference |\n| --- | --- |")
    for name, d in runs.items():
        print(f"| {name} | {d:.3g} |")
    print("\n| evaluation number | largest difference |\n| --- | --- |")
    for name, d in ev.items():
        print(f"| {name} | {d:.3g} |")
    same = not any(runs.values()) and not any(ev.values())
    print(f"\n{'identical' if same else 'different'}: {len(runs)} runs, {len(ev)} kinds of evaluation numbers")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
