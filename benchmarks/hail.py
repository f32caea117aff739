"""HAIL against the one-shot intensity baselines on the synthetic multi-site T1w data.

The HAIL paper's table (nWD(i,p), nWD(t,p), rAVD GM / WM) on our benchmark, seen and unseen
sites separately, plus SSIM / PSNR against the truth our simulator knows:

1. ``mrharmony simulate --kind structural`` data (``--preset``, default demo: 8 subjects, 5 sites,
   two of them held out of training);
2. HAIL trained on the training sites and training subjects (``mrharmony structural train``
   with the packaged defaults at the ``demo`` or ``full`` training preset); with ``--ablation``
   also a run without the consistency loss;
3. every held-out test subject harmonized from each site to each other site with every method;
   the one target image of a site is the validation subject's image on it (one-shot, never a
   test subject); scored by :func:`mrharmony.evaluation.structural.evaluate_structural`;
4. paired Wilcoxon signed-rank tests of HAIL against each baseline on SSIM and on nWD(t,p), per
   group of pairs, Bonferroni-corrected over all of them.

Usage:
    python benchmarks/hail.py --out DIR [--preset demo] [--training-preset demo] [--ablation]

Writes DIR/data, DIR/run-hail (and DIR/run-hail-noconsistency), DIR/rows.csv (one row per
subject, site pair and method), DIR/summary.json and DIR/table.md. Existing data and finished
runs are reused; an interrupted run is resumed.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--preset", default="demo", choices=["tiny", "demo", "full"], help="simulated data size")
    ap.add_argument("--training-preset", default="demo", choices=["test", "demo", "full"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ablation", action="store_true", help="also train and score HAIL without consistency loss")
    args = ap.parse_args()

    from mrharmony.data.structural import load_structural
    from mrharmony.evaluation.structural import (
        baseline_harmonizers,
        evaluate_structural,
        markdown_table,
        paired_tests,
        summarize,
    )
    from mrharmony.methods.hail import harmonize, load_hail
    from mrharmony.simulate.structural import simulate_structural
    from mrharmony.structural_training import train_or_resume

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    if not (data / "structural.yaml").is_file():
        simulate_structural(data, preset=args.preset, seed=args.seed, quiet=True)
    ds = load_structural(data)
    config = {"preset": args.training_preset, "data": {"dataset": str(data.resolve()), "modalities": ["T1w"]},
              "model": {"method": "hail"}}
    runs = {"hail": train_or_resume(config, out / "run-hail")}
    if args.ablation:
        config["model"]["consistency_weight"] = 0.0
        runs["hail (no consistency)"] = train_or_resume(config, out / "run-hail-noconsistency")
    split = json.loads((runs["hail"] / "split.json").read_text())
    harmonizers = {}
    for name, run in runs.items():
        net, meta = load_hail(run)
        harmonizers[name] = lambda x, m, t, tm, net=net: harmonize(net, x, m, t, tm)
    harmonizers.update(baseline_harmonizers())
    t0 = time.perf_counter()
    rows = evaluate_structural(ds, harmonizers=harmonizers, subjects=split["test"],
                               reference_subject=split["validation"][0], seen_sites=meta["training_sites"])
    seconds = time.perf_counter() - t0
    with open(out / "rows.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    summary = summarize(rows)
    tests = paired_tests(rows, reference="hail")
    table = markdown_table(summary)
    (out / "table.md").write_text(table)
    (out / "summary.json").write_text(json.dumps({
        "preset": args.preset, "training_preset": args.training_preset, "seed": args.seed,
        "test_subjects": split["test"], "one_shot_reference_subject": split["validation"][0],
        "training_sites": ds.train_sites, "unseen_sites": ds.unseen_sites,
        "evaluation_seconds": round(seconds, 1), "machine": f"{platform.machine()}, {_cores()} cores, CPU",
        "summary": summary, "wilcoxon": tests}, indent=2) + "\n")
    print(table)
    for t in tests:
        print(f"{t['modality']} {t['group']:7s} hail vs {t['method']:22s} {t['metric']:7s} "
              f"median diff {t['median_difference']:+.4f}  p_bonf {t['p_bonferroni']:.2g}")


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


if __name__ == "__main__":
    main()
