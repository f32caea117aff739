"""What the demo's budget allows: the benchmark's DIQT recipe trained at one and three times the demo's steps.

After ``mrharmony demo DEMO`` (DIQT for every target and MSP at the ``demo`` training preset,
the statistical methods), this trains ``diqt_tuned`` (the recipe's options, mrharmony.dmri.recipes:
flips, the order-weighted loss, the position channels, a warm-up and cosine decay) on the demo's data and
split for ``--targets``, at the ``demo`` preset's epochs times each of ``--multiples``, and
evaluates every row on the demo's held-out subject as the demo does (2,000 patches; FA and MD on
10,000 seeded voxels per target, against the target scan and its noiseless truth, beside the
``rescan`` and ``oracle`` floors). It prints each training's wall time and, per target, FA and MD
errors of every row. A pointer for the demo's design (one subject, one seed), not a result.

Usage:
    python benchmarks/demo_budget.py DEMO_DIR [--targets prisma_st connectom_st] [--multiples 1 3]

Writes ``DEMO_DIR/configs/tuned-x<k>-<target>.yaml``, ``DEMO_DIR/runs/tuned-x<k>-<target>`` (finished
runs are kept) and ``DEMO_DIR/demo-budget/`` (the evaluation's tables of each multiple).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import yaml

from mrharmony.bench.dmri import train_dmri_run
from mrharmony.dmri.recipes import recipe

DEMO_ROWS = ("msp", "none", "meanvar_global", "meanvar_voxel", "rish")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("demo", help="the output folder of 'mrharmony demo'")
    ap.add_argument("--targets", nargs="+", default=["prisma_st", "connectom_st"])
    ap.add_argument("--multiples", type=int, nargs="+", default=[1, 3])
    args = ap.parse_args()

    from mrharmony.dmri.config import PRESETS
    from mrharmony.dmri.evaluate import evaluate
    from mrharmony.dmri.tables import write_tables

    root = Path(args.demo)
    demo_runs = [root / "runs" / r for r in (*(f"diqt-{t}" for t in args.targets), *DEMO_ROWS)]
    missing = [r for r in demo_runs if not r.is_dir()]
    if missing:
        print(
            f"demo_budget.py: error: {root} has no run {missing[0].name}; run 'mrharmony demo {root}' first.",
            file=sys.stderr,
        )
        return 2
    data = yaml.safe_load((root / "configs" / f"diqt-{args.targets[0]}.yaml").read_text())["data"]
    best = recipe("diqt_tuned")
    for k in args.multiples:
        tuned = []
        for t in args.targets:
            cfg = {
                "preset": "demo",
                "label": best.name,
                "data": {**data, "targets": [t]},
                "model": dict(best.model),
                "training": {"seed": 0, "epochs": k * PRESETS["demo"]["epochs"], **best.options},
            }
            tuned.append(train_dmri_run(root, f"tuned-x{k}-{t}", cfg))
        ev = evaluate(demo_runs + tuned, max_patches=2000, volume_voxels=10000, quiet=True)
        write_tables(ev, root / "demo-budget" / f"x{k}")
        print(f"\n## diqt_tuned at {k} x the demo's epochs\n")
        print(
            "| target | row | FA vs scan | FA vs noiseless | MD vs scan (1e-5) | MD vs noiseless (1e-5) |\n"
            "| --- | --- | --- | --- | --- | --- |"
        )
        rows = ev.volume_errors
        for t in args.targets:
            for m in dict.fromkeys(r["method"] for r in rows if r["target"] == t):
                sel = [r for r in rows if r["target"] == t and r["method"] == m]
                fa, fa_c, md, md_c = (
                    float(np.mean([r[key] for r in sel]))
                    for key in ("fa_mae", "fa_mae_noiseless", "md_mae", "md_mae_noiseless")
                )
                print(f"| {t} | {m} | {fa:.4f} | {fa_c:.4f} | {md * 1e5:.2f} | {md_c * 1e5:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
