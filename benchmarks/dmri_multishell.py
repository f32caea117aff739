"""The multi-shell dMRI benchmark: FA, MD and mean kurtosis agree across scanners after harmonization?

On the simulator's multi-shell traveling heads (``mrharmony simulate --platforms multishell``: an
ageing GE scanner and a Prisma, both with b=1200 and b=3000 shells; the Prisma's 60 directions per
shell), every subject is held out once (k folds over the subjects, split by subject) and harmonized
from the GE to the one target, ``prisma_ms``. The claims rest on rows declared in this file before a
run (:data:`PRIMARY`; the summary records the commit): the primary learned row (per fold the
:data:`RECIPES` candidate of lower validation loss on a validation subject; DIQT with a residual on
its input, taking and predicting both shells) and the primary practice row (MP-PCA denoising, then
linear RISH per shell and order through a SyN template). Beside them: no harmonization (also after
MP-PCA), RISH without denoising, ComBat on FA, MD and MK after MP-PCA (in the ``combat`` extra's
environment), the tuned candidate's compute-matched rival ``diqt_residual_long``, and the ``rescan``
and ``oracle`` floors. Each fold is scored with ``mrharmony dmri evaluate``: whole-volume errors
against the raw truth (the target scan's own fit and its noiseless render) of FA and MD (DTI of the
b=1200 shell), MK (DKI of both shells) and each shell's RISH features.

MSP and the other multi-task networks of the paper are left out: they share what they learn across
several targets, and this benchmark has one (their claims are those of ``benchmarks/dmri.py``).

The statistics, goals and record are those of ``benchmarks/dmri.py`` (:mod:`mrharmony.bench`):
intervals over folds (the training run) and over subjects, paired Wilcoxon tests with Bonferroni.

Usage:
    python benchmarks/dmri_multishell.py --budget {smoke,cpu} --out DIR [--folds K] [--seeds 0]
        [--preset NAME] [--pauses FILE] [--record RECORD] [--summarize-only]
    (run with .venv-combat/bin/python for the ComBat row)

Resumable as ``benchmarks/dmri.py`` is; writes ``DIR/summary.json`` and ``DIR/summary.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mrharmony.bench.dmri import budget_epochs, budget_setting, run_benchmark, statistical_methods, train_dmri_run
from mrharmony.bench.dmri_summary import Claims
from mrharmony.dmri.recipes import recipe

#: the one target platform
TARGET = "prisma_ms"
#: The rows the claims rest on, declared here before any run (the summary records the commit that
#: ran it); the goals are judged on these rows only.
PRIMARY = {
    "learned": "diqt_primary",  # per fold, the RECIPES candidate of lower validation loss
    "practice": "rish_syn_mppca",  # as practice runs it: MP-PCA denoising, then linear RISH through a SyN template
}
#: the candidates of the primary learned row, as in benchmarks/dmri.py: DIQT with a residual on its
#: input, with the budget's schedule or the named recipe ``diqt_tuned``; each trained with one training
#: subject held out for validation, the one of lower validation loss on it the fold's primary row
RECIPES = {
    "diqt_residual": {"model": {"method": "diqt", "skip": True}, "recipe": None},
    "diqt_tuned_residual": {"model": {"method": "diqt", "skip": True}, "recipe": "diqt_tuned"},
}
#: the non-learned rows, as their users run them: (label, method, settings, denoising of the input)
PRACTICE = (
    ("none", "none", {}, "none"),
    ("none_mppca", "none", {}, "mppca"),
    ("rish_syn", "rish", {"registration": "syn"}, "none"),
    ("rish_syn_mppca", "rish", {"registration": "syn"}, "mppca"),
    ("combat_mppca", "combat", {}, "mppca"),
)
#: the declared goals: (name, row a, row b, metric as the result names it, the summary's key, the largest
#: ratio that meets it); ``mk_truth``: mean kurtosis against the noiseless target
DECLARED_GOALS = (
    ("primary_vs_practice", "learned", "practice", "fa_truth", "fa_noiseless", 0.7),
    ("primary_vs_practice", "learned", "practice", "md_truth", "md_noiseless", 0.7),
    ("primary_vs_practice", "learned", "practice", "mk_truth", "mk_noiseless", 0.7),
    ("primary_vs_rescan", "learned", "rescan", "fa_scan", "fa_scan", 1.0),
    ("primary_vs_rescan", "learned", "rescan", "md_scan", "md_scan", 1.0),
    ("primary_vs_rescan", "learned", "rescan", "mk_scan", "mk_scan", 1.0),
)
CLAIMS = Claims(
    primary=PRIMARY,
    candidates=tuple(RECIPES),
    declared_goals=DECLARED_GOALS,
    effect_goals=(),
    effect_window=(0.9, 1.1),
    best_of_goals={"learned_vs_statistical": 0.7, "learned_vs_rescan": 1.0, "msp_vs_rivals": 0.8},
    cohort_goal=(0.9, 1.1),
    training_goal_minutes=60.0,
)
#: per budget: dataset preset, folds, seeds, the folds trained with every seed (None: all), no cohort,
#: and the seeded brain voxels per subject on which FA / MD / MK errors are computed (None: all). The
#: cpu budget takes the demo's slab (6 subjects, 3 folds of 2) so that it runs in hours on 2 cores.
SETTINGS = {
    "smoke": {"preset": "tiny", "folds": 3, "seeds": [0], "seed_folds": None, "cohort": None, "volume_voxels": None},
    "cpu": {"preset": "demo", "folds": 3, "seeds": [0], "seed_folds": None, "cohort": None, "volume_voxels": 40000},
}
#: this script, as the summary's command names it
SCRIPT = "benchmarks/dmri_multishell.py"


def train_rows(work: Path, data_cfg: dict, budget: dict, *, seed: int, quiet: bool, every_row: bool) -> list[Path]:
    """Every row of one fold and seed under ``work/runs``: the learned candidates and the tuned one's
    compute-matched rival (one training subject held out for validation), then the non-learned rows."""
    work = Path(work).resolve()
    tag = "/".join(work.parts[-2:])

    def run(name: str, model: dict, label: str, training: dict | None = None, data: dict | None = None) -> Path:
        cfg = {
            "preset": budget["preset"],
            "label": label,
            "data": {**data_cfg, **(data or {}), "targets": [TARGET]},
            "model": model,
            "training": {**budget["training"], **(training or {}), "seed": seed},
        }
        return train_dmri_run(work, name, cfg, tag=tag, quiet=quiet)

    epochs = budget_epochs(budget)
    validation = {"validation": "subject", "n_validation_subjects": 1}
    runs = []
    for label, candidate in RECIPES.items():
        training = recipe(candidate["recipe"]).training(epochs=epochs) if candidate["recipe"] else {}
        runs.append(run(f"{label}-{TARGET}", candidate["model"], label, training, validation))
    long = recipe("diqt_long").training(epochs=epochs, lr_decay_every=budget_setting(budget, "lr_decay_every"))
    runs.append(
        run(f"diqt-residual-long-{TARGET}", {"method": "diqt", "skip": True}, "diqt_residual_long", long, validation)
    )
    have = statistical_methods()
    for label, method, settings, denoise in PRACTICE:
        if method in have:
            runs.append(run(label, {"method": method, **settings}, label, data={"denoise": denoise}))
    return runs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", choices=sorted(SETTINGS), default="cpu")
    ap.add_argument("--out", required=True)
    ap.add_argument("--folds", type=int, help="folds over the subjects (default: the budget's)")
    ap.add_argument("--seeds", type=int, nargs="+", help="training seeds (default: the budget's)")
    ap.add_argument("--preset", help="dataset preset (default: the budget's)")
    ap.add_argument("--pauses", type=Path, help="log of the times the run was stopped (SIGSTOP), as for dmri.py")
    ap.add_argument("--record", type=Path, help="folder (under version control) of the summary's small files")
    ap.add_argument("--summarize-only", action="store_true", help="summarize the folds scored so far")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    args.seed_folds = args.cohort = None  # every seed on every fold; no cohort
    return run_benchmark(
        args,
        claims=CLAIMS,
        train_rows=train_rows,
        denoise=("mppca",),
        script=SCRIPT,
        checkout=Path(__file__).resolve().parent,
        settings=SETTINGS,
        platforms="multishell",
        targets=(TARGET,),
    )


if __name__ == "__main__":
    raise SystemExit(main())
