"""The dMRI benchmark: does harmonization make FA and MD agree across scanners, and keep a group effect?

On the synthetic traveling heads (``mrharmony simulate``), every subject is held out once
(k folds over the subjects, split by subject). The claims rest on rows declared in this file
before a run (:data:`PRIMARY`; the summary records the commit): the paper's MSP (its features
scaled per platform) and its twin with the paper's per-scan normalization ``msp_scannorm``, the
primary learned row (per fold and target the :data:`RECIPES` candidate of lower validation loss on
a validation subject) and the primary practice row (MP-PCA denoising, then linear RISH through a
SyN template). In each fold, every method of Table 1 is trained on the other subjects
(``mrharmony.bench.dmri.train_methods``: the single networks, CPM, HNED, MSP, MSP's own first stage, its
compute-matched rival ``diqt_continued``, and the statistical methods), with the declared rows,
the tuned candidate's compute-matched rival ``diqt_residual_long`` and the practice rows
(:data:`PRACTICE`: RISH through a SyN template, and none, RISH and ComBat after MP-PCA);
with further seeds (the ``gpu`` budget), the networks of the MSP claim are trained again. Each
fold and seed is scored with ``mrharmony dmri evaluate`` on its held-out subjects: whole-volume errors
against the raw truth, the target scan's own fit and its noiseless render (SH per order, FA, MD:
every row through one path, so a perfect prediction scores 0), with the ``rescan`` and ``oracle``
floors. The declared rows' harmonizers of every fold are then applied to a study cohort
(``mrharmony simulate --cohort``: other people, half of them patients with a lower intra-axonal
fraction in one white-matter region and every tissue diffusivity higher): the patients-vs-controls
differences after harmonization are set beside the same differences measured on the target
platform (the cohort's people are none of the traveling heads, so every fold's models are a fair test).

The declared goals (:func:`declared_goals`) carry intervals with the fold (the training run) as
the unit, a Student-t interval over folds, and over subjects beside them. Otherwise statistics are
over subjects: each subject's value is its mean over seeds; a row's mean over subjects carries a
95% bootstrap interval over subjects; paired Wilcoxon signed-rank tests across
subjects (Bonferroni over all of them, seven per target: with 10 subjects and 21 tests only a
difference in the same direction for every subject can pass) compare MSP with its compute-matched rival,
its own first stage and the best single network (SH), and the best learned row with the best
non-learned one (FA, MD against the noiseless truth) and with the rescan floor (against the scan).
The per-patch table of each fold stays in its ``evaluation.json`` (the paper's secondary table).

Usage:
    python benchmarks/dmri.py --budget {smoke,cpu,gpu} --out DIR [--folds K] [--seeds 0 1 2]
        [--seed-folds F]
        [--cohort N] [--preset NAME] [--pauses FILE] [--record RECORD]
    (run with .venv-combat/bin/python for the ComBat rows)

The first seed of every fold runs first, then the further seeds (a partial summary,
``--summarize-only``, covers every subject as early as it can). Resumable: finished runs,
evaluations and cohort scores are kept and skipped (an evaluation or
cohort score is redone when rows were added since it was made), an interrupted training resumes
from its checkpoint; the wall time of every step is added up in
``DIR/timing.json``. Writes ``DIR/summary.json`` and ``DIR/summary.md``.

Resumable across machines with ``--record RECORD``: the small files the summary is made from (each
fold and seed's ``evaluation.json`` and ``cohort.json``, ``timing.json``) are copied into RECORD, a
folder to keep under version control, as each step finishes; a later run on a machine that has
lost DIR copies them back and skips the folds and seeds they finish (their models are not kept:
to redo one, delete its folder in RECORD and in DIR).

This file declares the rows and the goals; the loop over folds and seeds, the record, the timing
and the summary are :mod:`mrharmony.bench`'s (:func:`mrharmony.bench.dmri.run_benchmark`), the
recipes :mod:`mrharmony.dmri.recipes`'.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mrharmony.bench.dmri import (
    SETTINGS,
    TARGETS,
    budget_epochs,
    budget_setting,
    run_benchmark,
    statistical_methods,
    train_dmri_run,
    train_methods,
)
from mrharmony.bench.dmri_summary import Claims
from mrharmony.dmri.recipes import recipe

#: The rows the claims rest on, declared here before any run (the summary records the commit that
#: ran it); the goals are judged on these rows only, the "best of" tables beside them say so.
PRIMARY = {
    "msp": "msp",  # the paper's MSP, its features scaled per platform
    "msp_scannorm": "msp_scannorm",  # its twin with the paper's per-scan normalization
    "learned": "diqt_primary",  # per fold and target, the RECIPES candidate of lower validation loss
    "practice": "rish_syn_mppca",  # as practice runs it: MP-PCA denoising, then linear RISH through a SyN template
}
#: the candidate recipes of the primary learned row: DIQT with a residual on its input (``skip``, so
#: that a change of the person passes through even where training saw none like it), with the
#: paper's recipe (None: the budget's schedule) or this project's (the named recipe ``diqt_tuned``,
#: mrharmony.dmri.recipes). Each is trained in every fold with one training subject held out for
#: validation (``validation: subject``), and the one of lower validation loss on it is the fold's
#: primary row: the recipe is chosen on validation subjects only, never on the fold's test subjects.
RECIPES = {
    "diqt_residual": {"model": {"method": "diqt", "skip": True}, "recipe": None},
    "diqt_tuned_residual": {"model": {"method": "diqt", "skip": True}, "recipe": "diqt_tuned"},
}
#: the practice rows, as their users run them: (label, method, settings, denoising of the input)
PRACTICE = (
    ("rish_syn", "rish", {"registration": "syn"}, "none"),
    ("none_mppca", "none", {}, "mppca"),
    ("rish_syn_mppca", "rish", {"registration": "syn"}, "mppca"),
    ("combat_mppca", "combat", {}, "mppca"),
)
#: the declared goals: (name, row a (a PRIMARY key), row b (a PRIMARY key, "rescan" or "rival": MSP's
#: compute-matched rival), metric as the result names it, the summary's key, the largest ratio that meets it)
DECLARED_GOALS = (
    ("primary_vs_practice", "learned", "practice", "fa_truth", "fa_noiseless", 0.7),
    ("primary_vs_practice", "learned", "practice", "md_truth", "md_noiseless", 0.7),
    ("primary_vs_rescan", "learned", "rescan", "fa_scan", "fa_scan", 1.0),
    ("primary_vs_rescan", "learned", "rescan", "md_scan", "md_scan", 1.0),
    ("msp_vs_rival", "msp", "rival", "sh_truth", "sh_noiseless", 0.8),
)
#: the cohort's goals: the harmonized raw patients-minus-controls difference over the target platform's,
#: within EFFECT_WINDOW
EFFECT_GOALS = (("regional_fa", "regional_fa_diff_ratio"), ("global_md", "global_md_diff_ratio"))
EFFECT_WINDOW = (0.9, 1.1)
#: the goals of the rows chosen after the run ("best of", docs/results.md): the largest ratio that
#: meets each; MSP's also needs its interval below 1
GOALS = {"learned_vs_statistical": 0.7, "learned_vs_rescan": 1.0, "msp_vs_rivals": 0.8}
#: the cohort's best-of goal: the best learned row's patients-vs-controls effect within this window of
#: the effect on the target platform
COHORT_GOAL = (0.9, 1.1)
#: the training goal: every row of one fold (one seed) trained and fitted within this many minutes
TRAINING_GOAL_MINUTES = 60.0
CLAIMS = Claims(
    primary=PRIMARY,
    candidates=tuple(RECIPES),
    declared_goals=DECLARED_GOALS,
    effect_goals=EFFECT_GOALS,
    effect_window=EFFECT_WINDOW,
    best_of_goals=GOALS,
    cohort_goal=COHORT_GOAL,
    training_goal_minutes=TRAINING_GOAL_MINUTES,
)
#: this script, as the summary's command names it
SCRIPT = "benchmarks/dmri.py"


def train_rows(work: Path, data_cfg: dict, budget: dict, *, seed: int, quiet: bool, every_row: bool) -> list[Path]:
    """Every row of one fold and seed: Table 1's (the single networks, CPM, HNED, MSP, its first stage
    and its compute-matched rival, the statistical methods; with ``every_row`` False only those a
    claim about MSP rests on), then the declared ones (:func:`train_declared`)."""
    runs = train_methods(
        work,
        data_cfg,
        budget,
        seed=seed,
        control_target="prisma_st",
        quiet=quiet,
        every_row=every_row,
        widened=False,
        tuned=False,
    )
    return runs + train_declared(work, data_cfg, budget, seed=seed, quiet=quiet, every_row=every_row)


def train_declared(
    work: Path, data_cfg: dict, budget: dict, *, seed: int, quiet: bool, every_row: bool = True
) -> list[Path]:
    """Train (or find, or resume) the declared rows beside Table 1's under ``work/runs``: the
    candidates of the primary learned row (:data:`RECIPES`, one training subject held out for
    validation) and the compute-matched rival of the tuned one (``diqt_residual_long``: the recipe
    ``diqt_long``, the paper's for as many steps, on the control target), MSP's twin with per-scan
    normalization (``msp_scannorm``: the first-stage networks MSP chose, trained again with that
    normalization, then MSP over them) and, with ``every_row``, the practice rows (:data:`PRACTICE`)."""
    from mrharmony.engine.checkpoint import read_checkpoint

    work = Path(work).resolve()
    tag = "/".join(work.parts[-2:])

    def run(
        name: str, model: dict, targets, label: str, training: dict | None = None, data: dict | None = None
    ) -> Path:
        cfg = {
            "preset": budget["preset"],
            "label": label,
            "data": {**data_cfg, **(data or {}), **({"targets": targets} if targets else {})},
            "model": model,
            "training": {**budget["training"], **(training or {}), "seed": seed},
        }
        return train_dmri_run(work, name, cfg, tag=tag, quiet=quiet)

    epochs, decay = budget_epochs(budget), budget_setting(budget, "lr_decay_every")
    validation = {"validation": "subject", "n_validation_subjects": 1}
    runs = []
    for label, candidate in RECIPES.items():
        training = recipe(candidate["recipe"]).training(epochs=epochs) if candidate["recipe"] else {}
        runs += [run(f"{label}-{t}", candidate["model"], [t], label, training, validation) for t in TARGETS]
    runs.append(
        run(
            "diqt-residual-long-prisma_st",
            {"method": "diqt", "skip": True},
            ["prisma_st"],
            "diqt_residual_long",
            recipe("diqt_long").training(epochs=epochs, lr_decay_every=decay),
            validation,
        )
    )
    msp = read_checkpoint(work / "runs" / "msp" / "model.pt")["meta"]
    firsts = []
    for t, first in msp["first_stage_runs"].items():
        method = read_checkpoint((work / "runs" / "msp" / first).resolve() / "model.pt")["meta"]["model"]["method"]
        firsts.append(
            run(f"{method}-scannorm-{t}", {"method": method}, [t], f"{method}_scannorm", data={"normalization": "scan"})
        )
    model = {k: v for k, v in msp["model"].items() if k not in ("first_stage_runs", "first_stage")}
    runs.append(
        run(
            "msp-scannorm",
            {**model, "first_stage_runs": [str(p) for p in firsts]},
            None,
            "msp_scannorm",
            data={"normalization": "scan"},
        )
    )
    if every_row:
        have = statistical_methods()
        for label, method, settings, denoise in PRACTICE:
            if method in have:
                runs.append(run(label, {"method": method, **settings}, None, label, data={"denoise": denoise}))
    return runs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", choices=sorted(SETTINGS), default="cpu")
    ap.add_argument("--out", required=True)
    ap.add_argument("--folds", type=int, help="folds over the subjects (default: the budget's)")
    ap.add_argument("--seeds", type=int, nargs="+", help="training seeds (default: the budget's)")
    ap.add_argument(
        "--seed-folds",
        type=int,
        help="folds trained with every seed, the others with the first only (default: the budget's)",
    )
    ap.add_argument("--cohort", type=int, help="cohort size (default: the budget's)")
    ap.add_argument("--preset", help="dataset preset (default: the budget's)")
    ap.add_argument(
        "--pauses",
        type=Path,
        help="log of the times the run was stopped (SIGSTOP) while other jobs had "
        "the machine, one line each: '... for N s during ...'; left out of the wall time",
    )
    ap.add_argument(
        "--record",
        type=Path,
        help="folder (to keep under version control) the summary's small files are copied into as "
        "each step finishes, and copied back from on a machine that lost --out",
    )
    ap.add_argument(
        "--summarize-only",
        action="store_true",
        help="train and score nothing: summarize the folds and seeds scored so far into "
        "DIR/summary-partial.json and .md",
    )
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    return run_benchmark(
        args,
        claims=CLAIMS,
        train_rows=train_rows,
        denoise=tuple(sorted({d for *_, d in PRACTICE if d != "none"})),
        script=SCRIPT,
        checkout=Path(__file__).resolve().parent,
    )


if __name__ == "__main__":
    raise SystemExit(main())
