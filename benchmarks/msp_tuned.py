"""MSP trained with this project's recipe, against DIQT trained the same way with the same compute.

In the dMRI benchmark the paper's MSP beats its compute-matched rivals (``diqt_continued``, the
best single network) in SH error against the noiseless truth, and ``diqt_tuned`` (DIQT with the
recipe ``diqt_tuned`` of mrharmony.dmri.recipes, four times the steps) beats MSP on every target
(docs/results.md). This asks whether the multi-stage design gains more when both stages are
trained the tuned way:

    diqt_tuned_sh            MSP's first stage: DIQT for each target with the recipe diqt_tuned_sh
                             (diqt_tuned less the position channels: MSP's first stage takes the SH
                             features alone), its multiple of the budget's epochs
    msp_tuned                MSP over them; its second stage with the budget's epochs and the
                             benchmark's alpha ramp, and the tuned recipe (flips, the order-weighted
                             loss, a warm-up and cosine decay); ``msp_tuned_stage1``: its first stage
                             as that training left it
    diqt_tuned_sh_continued  each first-stage network trained on for msp_tuned's second budget
                             and schedule: its compute-matched rival

on one fold and seed of a ``benchmarks/dmri.py`` run (its data, held-out subjects and budget),
evaluated as the benchmark evaluates (the same seeded voxels and patches), beside the fold's own rows
(read from its ``evaluation/evaluation.json``). The recipe is the benchmark's, fixed before this was
run: one fold and one seed, a try recorded in docs/history.md, not a result of the benchmark.

Usage:
    python benchmarks/msp_tuned.py BENCH_DIR [--fold 0] [--seed 0] [--budget cpu]

Writes ``BENCH_DIR/fold-F/seed-S/msp-tuned/``: ``configs/``, ``runs/`` (finished runs are kept, an
interrupted one resumes), ``evaluation/`` and ``summary.json`` / ``summary.md`` (per target and
subject: SH, FA and MD errors of every row; MSP's ratio to its rivals).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from mrharmony.bench.dmri import (
    BUDGETS,
    SETTINGS,
    TARGETS,
    budget_epochs,
    train_dmri_run,
)
from mrharmony.bench.dmri_summary import METRICS, best_row
from mrharmony.bench.plan import folds_of
from mrharmony.bench.summary import command, write_summary
from mrharmony.dmri.recipes import recipe

#: the tuned recipe as MSP's first stage can take it (no position channels)
TUNED_SH = recipe("diqt_tuned_sh")
#: the fold's own rows shown beside the try
FOLD_ROWS = ("diqt", "diqt_continued", "msp", "msp_stage1", "diqt_tuned")
#: the try's run directories, in the order they are trained
RUN_NAMES = (*(f"diqt-tuned-sh-{t}" for t in TARGETS), "msp-tuned", *(f"diqt-tuned-sh-continued-{t}" for t in TARGETS))
#: (row, its rivals): MSP over the better of its rivals, per subject
CLAIMS = (("msp_tuned", ("diqt_tuned_sh_continued", "diqt_tuned_sh")), ("msp", ("diqt_continued", "diqt")))


def train_try(work: Path, data_cfg: dict, budget: dict, seed: int) -> list[Path]:
    """Train (or find, or resume) the try's runs under ``work``; their directories."""
    from mrharmony.engine.checkpoint import read_checkpoint

    epochs = budget_epochs(budget)

    def cfg(label: str, model: dict, targets: list[str] | None, training: dict) -> dict:
        return {
            "preset": budget["preset"],
            "label": label,
            "data": {**data_cfg, **({"targets": targets} if targets else {})},
            "model": model,
            "training": {**budget["training"], **training, "seed": seed},
        }

    first = [
        train_dmri_run(
            work,
            f"diqt-tuned-sh-{t}",
            cfg(TUNED_SH.name, dict(TUNED_SH.model), [t], {**TUNED_SH.options, "epochs": TUNED_SH.steps * epochs}),
        )
        for t in TARGETS
    ]
    msp = train_dmri_run(
        work,
        "msp-tuned",
        cfg(
            "msp_tuned",
            {"method": "msp", "first_stage_runs": [str(p) for p in first], "alpha_end_epoch": max(1.0, epochs / 3)},
            None,
            dict(TUNED_SH.options),
        ),
    )
    chosen = read_checkpoint(msp / "model.pt")["meta"]["first_stage_runs"]
    continued = [
        train_dmri_run(
            work,
            f"diqt-tuned-sh-continued-{t}",
            cfg(
                "diqt_tuned_sh_continued",
                {"method": "diqt", "init_from": str((msp / chosen[t]).resolve())},
                [t],
                dict(TUNED_SH.options),
            ),
        )
        for t in TARGETS
    ]
    return [*first, msp, *continued]


def per_subject(ev_rows: list[dict], rows) -> dict:
    """target -> row -> metric -> subject -> value, from an evaluation's volume errors."""
    out: dict = {}
    for r in ev_rows:
        if r["method"] not in rows:
            continue
        for key, src in METRICS.items():
            if r.get(src) is not None:
                out.setdefault(r["target"], {}).setdefault(r["method"], {}).setdefault(key, {})[r["subject"]] = r[src]
    return out


def claims(values: dict) -> list[dict]:
    """Per target and claim: the row's SH error (noiseless truth) over the better of its rivals,
    per subject (the better rival chosen as the benchmark's goals choose it,
    :func:`mrharmony.bench.dmri_summary.best_row`)."""
    out = []
    for t, rows in values.items():
        for row, rivals in CLAIMS:
            have = {r: rows[r]["sh_noiseless"] for r in (row, *rivals) if r in rows}
            rival = best_row(rivals, have) if row in have else None
            if rival is None:
                continue
            ratios = {s: have[row][s] / have[rival][s] for s in sorted(have[row])}
            out.append(
                {
                    "target": t,
                    "row": row,
                    "rival": rival,
                    "ratio_per_subject": ratios,
                    "ratio_mean": float(np.mean(list(ratios.values()))),
                }
            )
    return out


def markdown(summary: dict) -> str:
    def minutes(m: float | None) -> str:
        return "not recorded" if m is None else f"{m:.1f} min"

    lines = [
        "# MSP trained the tuned way (one fold, one seed: a try)",
        "",
        (
            f"Command: `{summary['command']}`; fold {summary['fold']} (held out: "
            f"{', '.join(summary['held_out'])}), seed {summary['seed']}, budget `{summary['budget']}`; "
            f"training {minutes(summary['train_minutes'])}, evaluation {minutes(summary['evaluate_minutes'])} "
            "(wall time, when they ran)."
        ),
        "",
        (
            "Mean over the held-out subjects. SH: MSE against the noiseless truth; FA / MD: mean absolute "
            "error against the noiseless truth (MD in 1e-5 mm^2/s)."
        ),
        "",
    ]
    for t, rows in summary["values"].items():
        lines += [f"## {t}", "", "| row | SH | FA | MD |", "| --- | --- | --- | --- |"]
        for row, m in rows.items():
            sh, fa, md = (
                np.mean(list(m[k].values())) if k in m else float("nan")
                for k in ("sh_noiseless", "fa_noiseless", "md_noiseless")
            )
            lines.append(f"| {row} | {sh:.5f} | {fa:.4f} | {md * 1e5:.2f} |")
        lines.append("")
    lines += [
        "## MSP over the better of its rivals (SH, noiseless truth)",
        "",
        "| target | row | rival | ratio, mean | per subject |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in summary["claims"]:
        per = ", ".join(f"{s} {v:.3f}" for s, v in c["ratio_per_subject"].items())
        lines.append(f"| {c['target']} | {c['row']} | {c['rival']} | {c['ratio_mean']:.3f} | {per} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bench", type=Path, help="the --out folder of benchmarks/dmri.py")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", choices=sorted(SETTINGS), default="cpu")
    args = ap.parse_args()

    from mrharmony.data import load_dataset
    from mrharmony.dmri.evaluate import evaluate
    from mrharmony.dmri.tables import write_tables

    fold_dir = args.bench / f"fold-{args.fold}" / f"seed-{args.seed}"
    fold_ev = fold_dir / "evaluation" / "evaluation.json"
    if not fold_ev.is_file():
        print(
            f"msp_tuned.py: error: {fold_ev} does not exist; run benchmarks/dmri.py for that fold and seed first.",
            file=sys.stderr,
        )
        return 2
    setting = SETTINGS[args.budget]
    data = (args.bench / "data").resolve()
    held_out = folds_of(load_dataset(data, check_data=False).subjects, setting["folds"])[args.fold]
    data_cfg = {"dataset": str(data), "split": "subject", "test_subjects": held_out, "split_seed": 0}
    work = (fold_dir / "msp-tuned").resolve()
    # the wall time of the steps this invocation ran; a step done before keeps the time recorded then
    before = json.loads((work / "summary.json").read_text()) if (work / "summary.json").exists() else {}
    minutes = {k: before.get(k) for k in ("train_minutes", "evaluate_minutes")}
    t0 = time.time()
    fresh = not all((work / "runs" / name / "model.pt").exists() for name in RUN_NAMES)
    runs = train_try(work, data_cfg, BUDGETS[args.budget], args.seed)
    if fresh:
        minutes["train_minutes"] = (time.time() - t0) / 60
    ev_json = work / "evaluation" / "evaluation.json"
    if not ev_json.exists():
        t1 = time.time()
        ev = evaluate(runs, first_stages=True, floors=False, volume_voxels=setting["volume_voxels"], quiet=True)
        write_tables(ev, work / "evaluation")
        minutes["evaluate_minutes"] = (time.time() - t1) / 60
    rows = json.loads(ev_json.read_text())["volume_errors"] + [
        r for r in json.loads(fold_ev.read_text())["volume_errors"] if r["method"] in FOLD_ROWS
    ]
    names = ("diqt_tuned_sh", "msp_tuned", "msp_tuned_stage1", "diqt_tuned_sh_continued", *FOLD_ROWS)
    values = per_subject(rows, names)
    summary = {
        "command": command("benchmarks/msp_tuned.py"),
        "fold": args.fold,
        "seed": args.seed,
        "budget": args.budget,
        "held_out": held_out,
        **minutes,
        "values": values,
        "claims": claims(values),
    }
    write_summary(work, "summary", summary, markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
