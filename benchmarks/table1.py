"""Table 1 of the MSP paper on the synthetic MUSHAC-like benchmark.

Every method of Table 1 (DIQT, CNN-RISH and SHResNet for each target; CPM; HNED; MSP over the
single networks, its first stage chosen per target on validation loss), MSP's own first stage
after its training (``msp_stage1``), two compute-matched rivals of MSP (``diqt_continued``: the
first-stage networks MSP chose, trained on for MSP's second budget and schedule, ``init_from``;
``diqt_widened``: DIQT widened to MSP's parameter count, trained on one target) and the statistical
baselines (no harmonization, global and voxelwise mean/variance alignment, linear RISH, and
ComBat on FA / MD when neuroHarmonize is installed: run with ``.venv-combat/bin/python``), on the ``mushac``
preset with the paper's protocol: input ge_st; targets prisma_st, connectom_st, connectom_sa;
11^3 patches; minibatch 12 and Adam. Run once with the paper's split (90/10 by patch) and once
with held-out subjects, each evaluated with ``mrharmony dmri evaluate`` (patch MSE, Wilcoxon +
Bonferroni, whole-volume errors).

The rows are :func:`mrharmony.bench.dmri.train_methods`' (with this project's recipe ``diqt_tuned`` and
its rival ``diqt_long``, mrharmony.dmri.recipes); the budgets are :data:`mrharmony.bench.dmri.BUDGETS`.

Budgets (``--budget``):
    paper  the paper's schedule: 50 epochs of every training patch, lr 1e-4 / sqrt(2) every 15
           epochs (a GPU job: days on a 2-core CPU);
    gpu    25 epochs of 40,000 patches, lr 1e-4 / sqrt(2) every 8 epochs;
    cpu    6 epochs of 2,400 patches, lr 1e-3 / sqrt(2) every 2 epochs (a larger step because
           the run is short), validation on 600 patches: about an hour per split on 2 cores;
    smoke  the ``test`` preset, to check the script end to end (use with ``--preset tiny``).

Usage:
    .venv-combat/bin/python benchmarks/table1.py --out bench-output/table1 [--budget cpu] [--splits patch subject]

Writes, under --out: the dataset (``data/``), per split the configs, runs and evaluation
(``<split>/evaluation/table.md`` ...), and ``table1.md`` gathering both tables with the budget
and the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from mrharmony.bench.dmri import BUDGETS, TARGETS, train_methods


def run_split(root: Path, data: Path, split: str, budget: dict, *, seed: int, control_target: str, quiet: bool) -> Path:
    """Train every row of Table 1 on one split (``patch``: the paper's 90/10 by patch; ``subject``:
    two held-out subjects) and evaluate them; the evaluation's ``table.md``."""
    from mrharmony.dmri.evaluate import evaluate
    from mrharmony.dmri.tables import write_tables

    work = root / split
    data_cfg = {"dataset": str(data.resolve()), "split": split, "split_seed": seed}
    if split == "subject":
        data_cfg["n_test_subjects"] = 2
    runs = train_methods(work, data_cfg, budget, seed=seed, control_target=control_target, quiet=quiet)
    print(f"[{time.strftime('%H:%M:%S')}] {split}: evaluating", flush=True)
    ev = evaluate(runs, first_stages=True, quiet=quiet)
    write_tables(ev, work / "evaluation")
    return work / "evaluation" / "table.md"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench-output/table1")
    ap.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    ap.add_argument("--splits", nargs="+", choices=["patch", "subject"], default=["patch", "subject"])
    ap.add_argument("--preset", default="mushac", help="dataset preset (mushac; demo for a quick check)")
    ap.add_argument("--control-target", default="prisma_st", choices=TARGETS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()

    from mrharmony.dmri.features.prepare import prepare
    from mrharmony.io import write_text
    from mrharmony.simulate import simulate

    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    t0 = time.time()
    if not (data / "dataset.yaml").exists():
        simulate(data, preset=args.preset, seed=args.seed, quiet=args.quiet)
    prepare(data, quiet=args.quiet)
    budget = BUDGETS[args.budget]
    tables = {
        s: run_split(root, data, s, budget, seed=args.seed, control_target=args.control_target, quiet=args.quiet)
        for s in args.splits
    }
    hours = (time.time() - t0) / 3600
    head = [
        f"# Table 1 on the synthetic `{args.preset}` benchmark",
        "",
        (
            f"Command: `python benchmarks/table1.py --out {args.out} --budget {args.budget} "
            f"--splits {' '.join(args.splits)} --preset {args.preset}`"
        ),
        "",
        (
            f"Machine: {platform.node()} ({os.cpu_count()} cores); budget `{args.budget}`: "
            f"preset {budget['preset']} with {budget['training'] or 'no changes'}; {hours:.2f} h in all."
        ),
        "",
    ]
    body = []
    for s, path in tables.items():
        body += [f"## Split: {s}", "", path.read_text(), ""]
    write_text(root / "table1.md", "\n".join(head + body))
    print("\n".join(head + body))


if __name__ == "__main__":
    main()
