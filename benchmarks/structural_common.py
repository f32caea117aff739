"""What the structural benchmarks (hail.py, flow.py) share: their data and their result files."""

from __future__ import annotations

import csv
import json
import os
import platform
from pathlib import Path


def structural_data(out: Path, preset: str, seed: int):
    """``out/data``, simulated (T1w, T2w, FLAIR) unless it is there already: (folder, dataset)."""
    from mrharmony.data.structural import load_structural
    from mrharmony.simulate.structural import simulate_structural

    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    if not (data / "structural.yaml").is_file():
        simulate_structural(data, preset=preset, seed=seed, quiet=True)
    return data, load_structural(data)


def write_results(out: Path, rows: list[dict], info: dict, *, reference: str, extra_metrics=()) -> list[dict]:
    """rows.csv, table.md and summary.json (``info``, the machine, the summary and the paired
    tests of ``reference`` against every other method); prints the table and the tests."""
    from mrharmony.structural.metrics import markdown_table, paired_tests, summarize

    with open(out / "rows.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        w.writeheader()
        w.writerows(rows)
    summary = summarize(rows, extra_metrics=extra_metrics)
    tests = paired_tests(rows, reference=reference)
    table = markdown_table(summary)
    (out / "table.md").write_text(table)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    (out / "summary.json").write_text(json.dumps({
        **info, "machine": f"{platform.machine()}, {cores} cores, CPU", "summary": summary, "wilcoxon": tests,
    }, indent=2) + "\n")
    print(table)
    for t in tests:
        print(f"{t['modality']:5s} {t['group']:7s} {reference} vs {t['method']:22s} {t['metric']:7s} "
              f"median diff {t['median_difference']:+.4f}  p_bonf {t['p_bonferroni']:.2g}")
    return tests
