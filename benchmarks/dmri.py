"""The dMRI benchmark: does harmonization make FA and MD agree across scanners, and keep a group effect?

On the synthetic traveling heads (``mrharmony simulate``), every subject is held out once
(k folds over the subjects, split by subject). The claims rest on rows declared in this file
before a run (:data:`PRIMARY`; the summary records the commit): the paper's MSP (its features
scaled per platform) and its twin with the paper's per-scan normalization ``msp_scannorm``, the
primary learned row (per fold and target the :data:`RECIPES` candidate of lower validation loss on
a validation subject) and the primary practice row (MP-PCA denoising, then linear RISH through a
SyN template). In each fold, every method of Table 1 is trained on the other subjects
(``table1.train_methods``: the single networks, CPM, HNED, MSP, MSP's own first stage, its
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
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from table1 import (  # the benchmark's training of every row
    BUDGETS,
    TARGETS,
    TUNED_STEPS,
    TUNED_TRAINING,
    budget_epochs,
    budget_setting,
    statistical_methods,
    train_dmri_run,
    train_methods,
)

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
#: paper's recipe or this project's (``table1.TUNED_TRAINING``, TUNED_STEPS times the steps). Each is
#: trained in every fold with one training subject held out for validation (``validation:
#: subject``), and the one of lower validation loss on it is the fold's primary row: the recipe is
#: chosen on validation subjects only, never on the fold's test subjects.
RECIPES = {
    "diqt_residual": {"model": {"method": "diqt", "skip": True}, "training": {}},
    "diqt_tuned_residual": {"model": {"method": "diqt", "skip": True}, "training": "tuned"},
}
#: the practice rows, as their users run them: (label, method, settings, denoising of the input)
PRACTICE = (
    ("rish_syn", "rish", {"registration": "syn"}, "none"),
    ("none_mppca", "none", {}, "mppca"),
    ("rish_syn_mppca", "rish", {"registration": "syn"}, "mppca"),
    ("combat_mppca", "combat", {}, "mppca"),
)

#: per budget: dataset preset, folds, seeds, the folds trained with every seed (the others with the
#: first seed only; None: all), cohort size, and the seeded brain voxels per subject and target on which
#: FA / MD errors are computed (None: all; DTI fits of whole brains at 1.2 mm dominate the evaluation's
#: time otherwise). At the cpu budget every seed of every fold would take about 11 hours of the 2-core
#: machine; the seed spread is measured on the first fold.
SETTINGS = {
    "smoke": {"preset": "tiny", "folds": 3, "seeds": [0, 1], "seed_folds": 2, "cohort": 4,
              "volume_voxels": None},
    "cpu": {"preset": "mushac", "folds": 5, "seeds": [0], "seed_folds": None, "cohort": 20,
            "volume_voxels": 40000},
    "gpu": {"preset": "mushac", "folds": 5, "seeds": [0, 1, 2], "seed_folds": None, "cohort": 20,
            "volume_voxels": 40000},
}
METRICS = {  # summary key -> evaluation key
    "sh_noiseless": "sh_rel_noiseless", "sh_scan": "sh_rel", "fa_scan": "fa_mae", "md_scan": "md_mae",
    "fa_noiseless": "fa_mae_noiseless", "md_noiseless": "md_mae_noiseless",
    # regional means in the named white-matter regions (mean absolute error over the regions)
    "fa_region_scan": "fa_region_mae", "md_region_scan": "md_region_mae",
    "fa_region_noiseless": "fa_region_mae_noiseless", "md_region_noiseless": "md_region_mae_noiseless",
    # each subject's white-matter means, harmonized and of the noiseless truth (offsets_kept)
    "fa_wm": "fa_wm", "md_wm": "md_wm", "fa_wm_truth": "fa_wm_truth", "md_wm_truth": "md_wm_truth",
}
#: the metrics that are values of a person, not errors: no row of the error tables
OFFSETS = ("fa_wm", "md_wm", "fa_wm_truth", "md_wm_truth")
SINGLE = ("diqt", "cnn_rish", "shresnet")
#: MSP's compute-matched rival under one name where MSP chose different first-stage networks across
#: folds, seeds or targets (its rows ``<network>_continued`` merged per subject)
CONTINUED = "first_stage_continued"
STATISTICAL = ("none", "meanvar_global", "meanvar_voxel", "rish", "combat")
FLOORS = ("rescan", "oracle")
#: the goals of the learned harmonizers (docs/results.md): the largest ratio that meets each; MSP's
#: also needs its interval below 1
GOALS = {"learned_vs_statistical": 0.7, "learned_vs_rescan": 1.0, "msp_vs_rivals": 0.8}
#: the cohort's goal: the best learned row's patients-vs-controls effect within this window of the
#: effect on the target platform
COHORT_GOAL = (0.9, 1.1)
#: the training goal: every row of one fold (one seed) trained and fitted within this many minutes
TRAINING_GOAL_MINUTES = 60.0


class SettingError(Exception):
    """An impossible setting of the benchmark: one sentence, exit 2."""


def check_settings(args, n_subjects: int) -> None:
    if args.folds < 2:
        raise SettingError(f"--folds must be at least 2, not {args.folds}.")
    if args.folds > n_subjects:
        raise SettingError(f"--folds {args.folds} needs at least {args.folds} subjects; the preset has {n_subjects}.")
    if n_subjects - int(np.ceil(n_subjects / args.folds)) < 2:
        raise SettingError(f"with {n_subjects} subjects and {args.folds} folds fewer than 2 subjects are left to "
                           "train on.")
    if not args.seeds or len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        raise SettingError("--seeds must be distinct non-negative integers.")
    if args.seed_folds is not None and not 1 <= args.seed_folds <= args.folds:
        raise SettingError(f"--seed-folds must be between 1 and --folds ({args.folds}), not {args.seed_folds}.")
    if args.cohort is not None and args.cohort < 4:
        raise SettingError(f"--cohort needs at least 4 subjects (2 controls, 2 patients), not {args.cohort}.")


def folds_of(subjects: list[str], k: int) -> list[list[str]]:
    """k folds of held-out subjects (a seeded permutation, then near-equal parts)."""
    perm = np.random.default_rng([0, k]).permutation(len(subjects))
    return [sorted(subjects[i] for i in part) for part in np.array_split(perm, k)]


class Timing:
    """When each step ran, over resumed runs of the script, in ``timing.json``: per step a list of
    [start, end] intervals (Unix seconds). A running step's end is brought up to date every
    ``HEARTBEAT`` seconds, so that a step whose process is killed keeps its time up to then, and
    pauses (a log of SIGSTOPs, :func:`pauses_of`) are subtracted where they fall inside a step.
    Totals written by the script's first layout (seconds per step, no intervals; an interrupted
    step's time lost when its process was killed) are kept apart under ``"before_intervals"``."""

    HEARTBEAT = 30.0

    def __init__(self, path: Path):
        self.path = path
        raw = json.loads(path.read_text()) if path.exists() else {}
        if raw and "intervals" not in raw:  # the first layout: seconds per step
            raw = {"intervals": {}, "before_intervals": raw}
        self.intervals: dict[str, list[list[float]]] = raw.get("intervals", {})
        self.before: dict[str, float] = raw.get("before_intervals", {})
        self._lock = threading.Lock()

    def _write(self) -> None:
        with self._lock:  # whole or not at all: a reader (--summarize-only) or a kill never sees half a file
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps({"intervals": self.intervals, "before_intervals": self.before}, indent=1) + "\n")
            os.replace(tmp, self.path)

    @contextlib.contextmanager
    def step(self, key: str):
        """Time a step; an interrupted step's time counts too (SIGTERM is turned into an exit; a
        killed process keeps the time up to its last heartbeat)."""
        span = [time.time(), time.time()]
        self.intervals.setdefault(key, []).append(span)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.HEARTBEAT):
                span[1] = time.time()
                self._write()

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            span[1] = time.time()
            self._write()

    def seconds(self, key: str, pauses: list[tuple[float, float]] = ()) -> float:
        """The wall seconds of a step's intervals, less the parts of ``pauses`` inside them."""
        return sum((b - a) - sum(max(0.0, min(b, q) - max(a, p)) for p, q in pauses)
                   for a, b in self.intervals.get(key, []))

    def hours(self, pauses: list[tuple[float, float]] = ()) -> float:
        return sum(self.seconds(k, pauses) for k in self.intervals) / 3600


#: a line of a pause log: "paused (SIGSTOP) from <date as date(1) prints it> for N s during STEP (why)"
PAUSE_LINE = re.compile(r"\bfrom (\w{3} \w{3} +\d+ [\d:]+ UTC \d{4}) for (\d+(?:\.\d+)?) s during\b")


def pauses_of(path: Path | None) -> list[tuple[float, float]]:
    """The (start, end) Unix times of the pauses logged in ``path``, one line per pause; other
    lines are notes. None: no pauses."""
    if path is None:
        return []
    from datetime import UTC, datetime

    out = []
    for line in path.read_text().splitlines():
        if m := PAUSE_LINE.search(line):
            t0 = datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S UTC %Y")
            start = t0.replace(tzinfo=UTC).timestamp()
            out.append((start, start + float(m.group(2))))
    return out


#: the files of a fold and seed the summary is made from, kept in ``--record`` (paths under its folder)
RECORDED = ("evaluation/evaluation.json", "evaluation/evaluation.json.runs", "cohort.json", "cohort.json.runs",
            "primary.json")


def restore_record(record: Path, root: Path) -> list[str]:
    """Copy into ``root`` the recorded files it lacks (a machine that lost DIR); the fold/seed
    folders restored."""
    import shutil

    restored = []
    names = {Path(n).name for n in RECORDED} | {"timing.json"}
    for src in sorted(record.rglob("*")):
        dst = root / src.relative_to(record)
        if src.is_file() and src.name in names and not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            if src.name == "evaluation.json.runs":
                restored.append(str(src.parent.parent.relative_to(record)))
    return restored


def save_record(record: Path | None, root: Path, work: Path | None = None) -> None:
    """Copy ``timing.json`` and, for the fold/seed folder ``work``, its finished files into ``record``
    (each file whole: written beside, then renamed)."""
    if record is None:
        return
    import shutil

    files = [root / "timing.json"] + ([work / name for name in RECORDED] if work is not None else [])
    for src in files:
        if src.exists():
            dst = record / src.relative_to(root)
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(dst.name + ".tmp")
            shutil.copy2(src, tmp)
            os.replace(tmp, dst)


def recorded_only(work: Path, cohort: Path | None) -> bool:
    """Whether a fold and seed was finished on another machine: its evaluation (and cohort score)
    restored from the record, its runs not here."""
    return ((work / "evaluation" / "evaluation.json.runs").exists() and not (work / "runs").exists()
            and (cohort is None or (work / "cohort.json.runs").exists()))


def run_fold_seed(root: Path, data: Path, cohort: Path | None, fold: int, held_out: list[str], seed: int, *,
                  first_seed: bool, budget: dict, volume_voxels: int | None, timing: Timing, quiet: bool,
                  record: Path | None = None) -> None:
    """Train, evaluate and score the cohort for one fold and seed (each step skipped when done; the
    whole fold and seed when it was finished on another machine and restored from ``record``)."""
    from mrharmony.dmri.evaluate import evaluate
    from mrharmony.dmri.tables import write_tables

    work = root / f"fold-{fold}" / f"seed-{seed}"
    if recorded_only(work, cohort):
        print(f"fold {fold} seed {seed}: scored on another machine (restored from the record)", flush=True)
        return
    data_cfg = {"dataset": str(data.resolve()), "split": "subject", "test_subjects": held_out, "split_seed": 0}
    with timing.step(f"fold-{fold}/seed-{seed}/train"):
        runs = train_methods(work, data_cfg, budget, seed=seed, control_target="prisma_st", quiet=quiet,
                             every_row=first_seed, widened=False, tuned=False)
        runs += train_declared(work, data_cfg, budget, seed=seed, quiet=quiet, every_row=first_seed)
    primary_choice(work)
    names = sorted(Path(r).name for r in runs)  # a step is redone when rows were added since it ran
    if not done(work / "evaluation" / "evaluation.json", names):
        print(f"[{time.strftime('%H:%M:%S')}] fold {fold} seed {seed}: evaluating", flush=True)
        with timing.step(f"fold-{fold}/seed-{seed}/evaluate"):
            ev = evaluate(runs, first_stages=True, floors=first_seed, volume_voxels=volume_voxels, quiet=quiet)
            write_tables(ev, work / "evaluation")
            mark_done(work / "evaluation" / "evaluation.json", names)
        save_record(record, root, work)
    if cohort is not None and not done(work / "cohort.json", names):
        from mrharmony.dmri.cohort import regional_values
        from mrharmony.dmri.evaluate import table_rows_of
        from mrharmony.io import write_json

        print(f"[{time.strftime('%H:%M:%S')}] fold {fold} seed {seed}: cohort", flush=True)
        with timing.step(f"fold-{fold}/seed-{seed}/cohort"):
            rows = table_rows_of(runs, first_stages=False)
            chosen = json.loads((work / "primary.json").read_text())["chosen"]
            pairs = [(primary_name(n, h, chosen), h) for n, h in zip(rows.names, rows.harmonizers)]
            values = regional_values([(n, h) for n, h in pairs if n in PRIMARY.values() or n == "none"], cohort,
                                     quiet=quiet)
            write_json(work / "cohort.json", {"fold": fold, "seed": seed, "rows": values})
            mark_done(work / "cohort.json", names)
        save_record(record, root, work)


def train_declared(work: Path, data_cfg: dict, budget: dict, *, seed: int, quiet: bool,
                   every_row: bool = True) -> list[Path]:
    """Train (or find, or resume) the declared rows beside Table 1's under ``work/runs``: the
    candidates of the primary learned row (:data:`RECIPES`, one training subject held out for
    validation) and the compute-matched rival of the tuned one (``diqt_residual_long``, the paper's
    recipe for as many steps, on the control target), MSP's twin with per-scan normalization
    (``msp_scannorm``: the first-stage networks MSP chose, trained again with that normalization,
    then MSP over them) and, with ``every_row``, the practice rows (:data:`PRACTICE`)."""
    from mrharmony.engine.checkpoint import read_checkpoint

    work = Path(work).resolve()
    tag = "/".join(work.parts[-2:])

    def run(name: str, model: dict, targets, label: str, training: dict | None = None,
            data: dict | None = None) -> Path:
        cfg = {"preset": budget["preset"], "label": label,
               "data": {**data_cfg, **(data or {}), **({"targets": targets} if targets else {})},
               "model": model, "training": {**budget["training"], **(training or {}), "seed": seed}}
        return train_dmri_run(work, name, cfg, tag=tag, quiet=quiet)

    epochs, decay = budget_epochs(budget), budget_setting(budget, "lr_decay_every")
    validation = {"validation": "subject", "n_validation_subjects": 1}
    runs = []
    for label, recipe in RECIPES.items():
        training = ({"epochs": TUNED_STEPS * epochs, **TUNED_TRAINING} if recipe["training"] == "tuned"
                    else recipe["training"])
        runs += [run(f"{label}-{t}", recipe["model"], [t], label, training, validation) for t in TARGETS]
    runs.append(run("diqt-residual-long-prisma_st", {"method": "diqt", "skip": True}, ["prisma_st"],
                    "diqt_residual_long", {"epochs": TUNED_STEPS * epochs, "lr_decay_every": TUNED_STEPS * decay},
                    validation))
    msp = read_checkpoint(work / "runs" / "msp" / "model.pt")["meta"]
    firsts = []
    for t, first in msp["first_stage_runs"].items():
        method = read_checkpoint((work / "runs" / "msp" / first).resolve() / "model.pt")["meta"]["model"]["method"]
        firsts.append(run(f"{method}-scannorm-{t}", {"method": method}, [t], f"{method}_scannorm",
                          data={"normalization": "scan"}))
    model = {k: v for k, v in msp["model"].items() if k not in ("first_stage_runs", "first_stage")}
    runs.append(run("msp-scannorm", {**model, "first_stage_runs": [str(p) for p in firsts]}, None, "msp_scannorm",
                    data={"normalization": "scan"}))
    if every_row:
        have = statistical_methods()
        for label, method, settings, denoise in PRACTICE:
            if method in have:
                runs.append(run(label, {"method": method, **settings}, None, label, data={"denoise": denoise}))
    return runs


def primary_choice(work: Path) -> dict[str, str]:
    """Per target, the :data:`RECIPES` candidate of lowest best validation loss (on the validation
    subject, never a test one) in the fold and seed ``work``; written to ``work/primary.json``."""
    from mrharmony.engine.checkpoint import read_checkpoint
    from mrharmony.io import write_json

    chosen, losses = {}, {}
    for t in TARGETS:
        found = {}
        for label in RECIPES:
            path = work / "runs" / f"{label}-{t}" / "model.pt"
            if path.exists():
                found[label] = float(read_checkpoint(path)["meta"]["best_validation_loss"][t])
        if found:
            chosen[t] = min(found, key=found.get)
            losses[t] = found
    write_json(work / "primary.json", {"chosen": chosen, "validation_loss": losses})
    return chosen


def primary_name(name: str, h, chosen: dict[str, str]) -> str:
    """A row's name in the claims: the chosen candidate of a target is the primary learned row."""
    if name in RECIPES and len(h.targets) == 1 and chosen.get(h.targets[0]) == name:
        return PRIMARY["learned"]
    return name


def done(path: Path, runs: list[str]) -> bool:
    """Whether ``path`` exists and was made from exactly these runs (``<path>.runs``)."""
    record = path.with_name(path.name + ".runs")
    return path.exists() and record.exists() and json.loads(record.read_text()) == runs


def mark_done(path: Path, runs: list[str]) -> None:
    path.with_name(path.name + ".runs").write_text(json.dumps(runs) + "\n")


def seeds_of(args, fold: int) -> list[int]:
    """The seeds fold ``fold`` is trained with: every seed on the first ``--seed-folds`` folds, else the first."""
    return list(args.seeds) if args.seed_folds is None or fold < args.seed_folds else list(args.seeds[:1])


def run_order(args, n_folds: int) -> list[tuple[int, int]]:
    """The (fold, seed) pairs in the order they are run: the first seed of every fold, then the
    further seeds, so that a partial summary covers every subject as early as it can."""
    first = [(f, args.seeds[0]) for f in range(n_folds)]
    return first + [(f, s) for f in range(n_folds) for s in seeds_of(args, f) if s != args.seeds[0]]


def scored(args, root: Path, folds: list[list[str]]) -> list[tuple[int, int]]:
    """The (fold, seed) pairs whose evaluation is finished."""
    return [(f, s) for f in range(len(folds)) for s in seeds_of(args, f)
            if (root / f"fold-{f}" / f"seed-{s}" / "evaluation" / "evaluation.json.runs").exists()]


def gather(root: Path, pairs: list[tuple[int, int]]) -> tuple[dict, dict, list]:
    """Per (row, target, subject): the metrics' values over the seeds of ``pairs`` (fold, seed), and
    per seed; and the cohort rows of the first fold, where its cohort is scored. MSP's
    compute-matched rivals (``<network>_continued``) are also gathered under :data:`CONTINUED`
    for a target where MSP chose different first-stage networks across folds and seeds."""
    per_subject: dict = {}  # (row, target, subject) -> metric -> [values over seeds]
    per_seed: dict = {}  # (row, target, seed) -> metric -> {subject: value}
    cohort_rows = []
    for f, s in pairs:
        work = root / f"fold-{f}" / f"seed-{s}"
        ev = json.loads((work / "evaluation" / "evaluation.json").read_text())
        chosen = json.loads((work / "primary.json").read_text())["chosen"] if (work / "primary.json").exists() else {}
        for r in ev["volume_errors"]:
            # MSP's rival is the first-stage network it chose, trained on: one rival whatever that network was
            names = (r["method"], CONTINUED) if r["method"].endswith("_continued") else (r["method"],)
            if r["method"] in RECIPES and chosen.get(r["target"]) == r["method"]:  # the fold's primary learned row
                names = (r["method"], PRIMARY["learned"])
            for key, src in METRICS.items():
                if r.get(src) is None:
                    continue
                for name in names:
                    per_subject.setdefault((name, r["target"], r["subject"]), {}).setdefault(key, []).append(r[src])
                    per_seed.setdefault((name, r["target"], s), {}).setdefault(key, {})[r["subject"]] = r[src]
        if (work / "cohort.json.runs").exists():  # the cohort through every fold's (primary) harmonizers
            cohort_rows += [{**r, "model": f"{f}/{s}/{r['model']}", "fold": f}
                            for r in json.loads((work / "cohort.json").read_text())["rows"]]
    for t in {t for _, t, _ in per_subject}:  # one network's rows need no second name
        if len({r for r, tt, _ in per_subject if tt == t and r.endswith("_continued") and r != CONTINUED}) == 1:
            for k in [k for k in per_subject if k[0] == CONTINUED and k[1] == t]:
                del per_subject[k]
    return per_subject, per_seed, cohort_rows


def summarize(args, root: Path, subjects: list[str], folds: list[list[str]], timing: Timing, *,
              partial: bool = False) -> dict:
    from mrharmony.dmri.cohort import group_summary
    from mrharmony.stats import bonferroni, mean_ci

    pairs = (scored(args, root, folds) if partial
             else [(f, s) for f in range(len(folds)) for s in seeds_of(args, f)])
    per_subject, per_seed, cohort_rows = gather(root, pairs)
    pauses = pauses_of(args.pauses)
    targets = list(dict.fromkeys(t for _, t, _ in per_subject))
    rows = list(dict.fromkeys(r for r, _, _ in per_subject))
    values: dict = {}  # target -> row -> metric -> {subject: mean over seeds}
    for (row, t, subject), metrics in per_subject.items():
        for key, v in metrics.items():
            values.setdefault(t, {}).setdefault(row, {}).setdefault(key, {})[subject] = float(np.mean(v))
    out_targets: dict = {}
    for t in targets:
        out_targets[t] = {}
        rescan = values[t].get("rescan", {})
        for row in rows:
            if row not in values[t]:
                continue
            entry = {}
            for key, by_subject in values[t][row].items():
                entry[key] = mean_ci([by_subject[s] for s in sorted(by_subject)])
                entry[key]["n_subjects"] = len(by_subject)
                # the seed spread over the subjects trained with every seed (the first --seed-folds folds)
                by_seed = [per_seed[(row, t, s)][key] for s in args.seeds if key in per_seed.get((row, t, s), {})]
                common = sorted(set.intersection(*(set(b) for b in by_seed))) if by_seed else []
                seed_means = [np.mean([b[x] for x in common]) for b in by_seed] if common else []
                if len(seed_means) > 1 and row not in STATISTICAL and row not in FLOORS:  # rows trained with seeds
                    entry[key]["seed_sd"] = float(np.std(seed_means, ddof=1))
                if key in ("sh_scan", "fa_scan", "md_scan") and key in rescan and row not in FLOORS:
                    common = sorted(set(by_subject) & set(rescan[key]))
                    entry[f"{key}_vs_rescan"] = {**mean_ci([by_subject[s] / rescan[key][s] for s in common]),
                                                 "n_subjects": len(common)}
            out_targets[t][row] = entry
    tests = subject_tests(values, targets)
    bonferroni(tests)
    best_of = goal_ratios(values, targets)
    cohort = group_summary(cohort_rows) if cohort_rows else {}
    cohort_goals(best_of, cohort)
    goals = declared_goals(values, targets, folds, cohort_rows, cohort)
    primary = {f"fold-{f}/seed-{s}": json.loads((root / f"fold-{f}" / f"seed-{s}" / "primary.json").read_text())
               for f, s in pairs if (root / f"fold-{f}" / f"seed-{s}" / "primary.json").exists()}
    summary = {
        **({"partial": True, "scored": [f"fold-{f}/seed-{s}" for f, s in pairs]} if partial else {}),
        "budget": args.budget, "folds": len(folds), "seeds": list(args.seeds), "seed_folds": args.seed_folds, "subjects": subjects,
        "fold_subjects": folds, "preset": args.preset, "targets": out_targets,
        "cohort": cohort,
        "cohort_subjects": len({r["subject"] for r in cohort_rows}),
        "tests": tests,
        # the declared claims (PRIMARY), judged on the rows named before the run
        "primary": {"rows": PRIMARY, "recipes": list(RECIPES), "chosen": primary,
                    "invocations": invocations(root, args.record)},
        "goals": goals,
        # each person's own values: per target and row, the correlation across held-out subjects of the
        # white-matter mean FA and MD after harmonization with the noiseless target's
        "offsets_kept": offsets_kept(values, targets),
        # the earlier claims on the best rows of each measure (chosen after the run: labelled "best of")
        "best_of": best_of,
        "headline": headline(values, targets),
        "training_minutes": fold_training_minutes(timing, pauses, [(f, s) for f, s in pairs if s == args.seeds[0]]),
        # every subject's value (its mean over seeds): target -> row -> metric -> subject -> value
        "per_subject": values,
        "machine": {"node": platform.node(), "cpus": os.cpu_count(),
                    "processor": platform.processor() or platform.machine()},
        # the steps' wall time, less the pauses logged while other jobs had the machine
        "wall_hours": timing.hours(pauses),
        "step_hours": {k: timing.seconds(k, pauses) / 3600 for k in timing.intervals},
        # steps timed by the script's first layout (their pauses not separable): as recorded, not in wall_hours
        "unmeasured_step_hours": {k: v / 3600 for k, v in timing.before.items()},
        "command": "python benchmarks/dmri.py " + " ".join(sys.argv[1:]),
    }
    return summary


def invocations(root: Path, record: Path | None) -> list[dict]:
    """The invocations of the run (:func:`log_invocation`), oldest first."""
    path = (record or root) / "invocations.json"
    return json.loads(path.read_text()) if path.exists() else []


def log_invocation(root: Path, record: Path | None) -> None:
    """Add this invocation (its start and the commit it runs) to ``root/invocations.json`` and the
    record: the rows were declared at the commit of the first, before any result existed."""
    path = (record or root) / "invocations.json"
    runs = json.loads(path.read_text()) if path.exists() else []
    runs.append({"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "commit": commit_of_checkout(),
                 "command": "python benchmarks/dmri.py " + " ".join(sys.argv[1:])})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(runs, indent=1) + "\n")


def commit_of_checkout() -> str | None:
    """The commit of the checkout this script runs from (None outside a git checkout)."""
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
                             check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


#: the declared goals: (name, row a (a PRIMARY key), row b (a PRIMARY key, "rescan" or "rival": MSP's
#: compute-matched rival), metric as the result names it, the summary's key, the largest ratio that meets it)
DECLARED_GOALS = (
    ("primary_vs_practice", "learned", "practice", "fa_truth", "fa_noiseless", 0.7),
    ("primary_vs_practice", "learned", "practice", "md_truth", "md_noiseless", 0.7),
    ("primary_vs_rescan", "learned", "rescan", "fa_scan", "fa_scan", 1.0),
    ("primary_vs_rescan", "learned", "rescan", "md_scan", "md_scan", 1.0),
    ("msp_vs_rival", "msp", "rival", "sh_truth", "sh_noiseless", 0.8),
)
#: the cohort's goals: the harmonized raw patients-minus-controls difference over the target platform's
EFFECT_GOALS = (("regional_fa", "regional_fa_diff_ratio"), ("global_md", "global_md_diff_ratio"))
EFFECT_WINDOW = (0.9, 1.1)


def offsets_kept(values: dict, targets: list[str]) -> dict:
    """Per target and row: Pearson's r across subjects of the row's white-matter mean FA (and MD)
    with the noiseless target's (``fa_wm_r``, ``md_wm_r``, and ``n``): each person's own values
    kept (r near that of a rescan) or replaced by an average (r near 0)."""
    out: dict = {}
    for t in targets:
        for row, metrics in values.get(t, {}).items():
            cell = {}
            for m in ("fa", "md"):
                mine, truth = metrics.get(f"{m}_wm", {}), metrics.get(f"{m}_wm_truth", {})
                common = sorted(set(mine) & set(truth))
                if len(common) >= 3:
                    a, b = [mine[s] for s in common], [truth[s] for s in common]
                    cell[f"{m}_wm_r"] = float(np.corrcoef(a, b)[0, 1]) if np.std(a) > 0 and np.std(b) > 0 else None
                    cell["n"] = len(common)
            if cell:
                out.setdefault(t, {})[row] = cell
    return out


def declared_goals(values: dict, targets: list[str], folds: list[list[str]], cohort_rows: list[dict],
                   cohort: dict) -> list[dict]:
    """The goals of the declared rows (:data:`PRIMARY`), one entry per target, goal, metric and unit:
    ``{"target", "name", "a", "b", "metric", "mean", "ci95", "unit", "n", "goal", "met"}``. For a ratio
    (:data:`DECLARED_GOALS`) each subject's ratio a / b; unit ``fold``: the mean over each fold's
    held-out subjects, a Student-t interval over the folds (the training run is the unit of a claim
    that rests on training); unit ``subject``: a bootstrap interval over subjects beside it. For the
    cohort (:data:`EFFECT_GOALS`, the primary rows' effect over the target platform's), unit ``fold``:
    each fold's harmonizers on the cohort, a t-interval over folds; unit ``subject``: all folds'
    harmonizers (a subject's value their mean), a bootstrap over the cohort's subjects. Met: the
    mean within the goal, and for ``msp_vs_rival`` the interval below 1 as well."""
    from mrharmony.dmri.cohort import group_summary
    from mrharmony.stats import mean_ci, t_interval

    fold_of = {s: f for f, part in enumerate(folds) for s in part}
    out = []

    def entry(t, name, a, b, metric, cell, unit, goal):
        if isinstance(goal, tuple):
            met = goal[0] <= cell["mean"] <= goal[1]
        else:
            met = cell["mean"] <= goal and (name != "msp_vs_rival" or cell["ci95"][1] < 1.0)
        return {"target": t, "name": name, "a": a, "b": b, "metric": metric, "mean": cell["mean"],
                "ci95": list(cell["ci95"]), "unit": unit, "n": cell["n"],
                "goal": list(goal) if isinstance(goal, tuple) else goal, "met": bool(met)}

    for t in targets:
        rows = values.get(t, {})
        for name, a_key, b_key, metric, key, goal in DECLARED_GOALS:
            a = PRIMARY[a_key]
            b = {"rescan": "rescan", "rival": continued_rival(rows)}.get(b_key) or PRIMARY.get(b_key)
            if b is None or key not in rows.get(a, {}) or key not in rows.get(b, {}):
                continue
            have_a, have_b = rows[a][key], rows[b][key]
            common = sorted(set(have_a) & set(have_b))
            ratio = {s: have_a[s] / have_b[s] for s in common}
            by_fold: dict = {}
            for s in common:
                by_fold.setdefault(fold_of.get(s), []).append(ratio[s])
            fold_means = [np.mean(v) for f, v in sorted(by_fold.items(), key=lambda kv: str(kv[0]))]
            out.append(entry(t, name, a, b, metric, t_interval(fold_means), "fold", goal))
            out.append(entry(t, name, a, b, metric, {**mean_ci([ratio[s] for s in common]), "n": len(common)},
                             "subject", goal))
        if not cohort_rows:
            continue
        folds_scored = sorted({r["fold"] for r in cohort_rows})
        per_fold = {f: group_summary([r for r in cohort_rows if r["fold"] == f]) for f in folds_scored}
        n_subjects = len({r["subject"] for r in cohort_rows})
        for key in ("learned", "msp", "practice"):
            a = PRIMARY[key]
            for metric, ratio_key in EFFECT_GOALS:
                vals = [per_fold[f].get(t, {}).get(a, {}).get(ratio_key, {}).get("mean") for f in folds_scored]
                vals = [v for v in vals if v is not None]
                if vals:
                    out.append(entry(t, "effect_kept", a, "target_truth", metric, t_interval(vals), "fold",
                                     EFFECT_WINDOW))
                pooled = cohort.get(t, {}).get(a, {}).get(ratio_key)
                if pooled is not None:
                    out.append(entry(t, "effect_kept", a, "target_truth", metric, {**pooled, "n": n_subjects},
                                     "subject", EFFECT_WINDOW))
    return out


def best_row(candidates, have: dict) -> str | None:
    """The candidate row of lowest mean error among those scored on every subject (``have``: row ->
    {subject: error}); a row scored on fewer subjects, such as one trained on the first fold only,
    is not a candidate."""
    everyone = max(len(v) for v in have.values())
    c = [r for r in candidates if r in have and len(have[r]) == everyone]
    return min(c, key=lambda r: np.mean(list(have[r].values()))) if c else None


def chosen_rows(rows: dict, key: str) -> tuple[dict, dict, str | None, str | None]:
    """What the goals, tests and headline compare on one target and metric: every row's
    {subject: value} (``have``, floors included), the methods' (floors left out), and the best
    learned and the best non-learned row among the methods (:func:`best_row`; None when none is
    scored)."""
    have = {r: v[key] for r, v in rows.items() if key in v}
    methods = {r: h for r, h in have.items() if r not in FLOORS}
    if not methods:
        return have, methods, None, None
    return (have, methods, best_row([r for r in methods if r not in STATISTICAL], methods),
            best_row(STATISTICAL, methods))


def continued_rival(rows) -> str | None:
    """The row of MSP's compute-matched rival: its chosen first-stage network trained on
    (``diqt_continued`` where MSP chose DIQT everywhere; :data:`CONTINUED` where its choice differed)."""
    if CONTINUED in rows:
        return CONTINUED
    named = [r for r in rows if r.endswith("_continued")]
    return named[0] if len(named) == 1 else None


def goal_ratios(values: dict, targets: list[str]) -> dict:
    """The ratios the learned harmonizers are judged by, per target and metric, each a mean over
    subjects of the subject's ratio with a 95% bootstrap interval over subjects (rows chosen by
    :func:`best_row`): on FA and MD against the noiseless truth, the best learned row over the
    best non-learned one, none or a statistical method (``learned_vs_statistical``); against the
    target scan, the best learned row over the ``rescan`` floor (``learned_vs_rescan``); on the SH
    features against the noiseless truth, MSP over the better of its compute-matched rival
    (:func:`continued_rival`) and the best single network (``msp_vs_rivals``). Each with its goal
    (:data:`GOALS`) and whether it is ``met`` (for MSP, its interval below 1 as well, over at least
    ``MIN_INTERVAL_SUBJECTS`` subjects)."""
    from mrharmony.stats import MIN_INTERVAL_SUBJECTS, mean_ci

    def ratio(have: dict, a: str | None, b: str | None) -> dict | None:
        if a is None or b is None or a not in have or b not in have:
            return None
        common = sorted(set(have[a]) & set(have[b]))
        return {"a": a, "b": b, **mean_ci([have[a][s] / have[b][s] for s in common]), "n_subjects": len(common)}

    def judged(cell: dict, kind: str) -> dict:
        interval = cell["n_subjects"] >= MIN_INTERVAL_SUBJECTS and cell["ci95"][1] < 1.0
        met = cell["mean"] <= GOALS[kind] and (kind != "msp_vs_rivals" or interval)
        return {**cell, "goal": GOALS[kind], "met": bool(met)}

    out: dict = {}
    for t in targets:
        rows, goals = values[t], {}
        for key, kind in (("fa_noiseless", "learned_vs_statistical"), ("md_noiseless", "learned_vs_statistical"),
                          ("fa_scan", "learned_vs_rescan"), ("md_scan", "learned_vs_rescan"),
                          ("sh_noiseless", "msp_vs_rivals")):
            have, methods, learned, non_learned = chosen_rows(rows, key)
            if not methods:
                continue
            if kind == "learned_vs_statistical":
                cell = ratio(have, learned, non_learned)
            elif kind == "learned_vs_rescan":
                cell = ratio(have, learned, "rescan")
            else:
                rivals = [r for r in (continued_rival(methods), best_row(SINGLE, methods)) if r]
                cell = ratio(have, "msp", best_row(rivals, methods))
            if cell is not None:
                goals.setdefault(kind, {})[key] = judged(cell, kind)
        out[t] = goals
    return out


def cohort_goals(goals: dict, cohort: dict) -> None:
    """Add to ``goals`` (per target) the cohort's goal: the patients-vs-controls effect ratio
    (``fa_effect_ratio``, ``md_effect_ratio``) of the learned row chosen for the goal
    ``learned_vs_statistical`` on the same measure, ``met`` when its mean lies in :data:`COHORT_GOAL`."""
    for t, by_kind in goals.items():
        for m in ("fa", "md"):
            row = by_kind.get("learned_vs_statistical", {}).get(f"{m}_noiseless", {}).get("a")
            cell = cohort.get(t, {}).get(row, {}).get(f"{m}_effect_ratio")
            if cell is not None:
                lo, hi = COHORT_GOAL
                by_kind.setdefault("cohort_effect", {})[f"{m}_effect_ratio"] = {
                    "a": row, "b": "target_truth", **cell, "goal": list(COHORT_GOAL),
                    "met": bool(lo <= cell["mean"] <= hi)}


def headline(values: dict, targets: list[str]) -> dict:
    """Per target and FA / MD measure, the rows a user compares: the best statistical and the best
    learned row (by :func:`best_row`), beside ``none`` and the floors in the summary's tables."""
    out: dict = {}
    for t in targets:
        for key in ("fa_noiseless", "md_noiseless", "fa_scan", "md_scan"):
            _, methods, learned, non_learned = chosen_rows(values[t], key)
            if methods:
                out.setdefault(t, {})[key] = {"best_statistical": non_learned, "best_learned": learned}
    return out


def fold_training_minutes(timing: Timing, pauses: list[tuple[float, float]], pairs: list[tuple[int, int]]) -> dict:
    """The minutes of each fold's first-seed training step (every row of the fold trained or fitted),
    where it was timed by intervals (``not_timed``: the folds whose step was not), against
    :data:`TRAINING_GOAL_MINUTES`; ``met`` is judged on the timed folds."""
    def timed(f: int, s: int) -> bool:
        key = f"fold-{f}/seed-{s}/train"
        return key in timing.intervals and key not in timing.before

    per_fold = {f"fold-{f}": timing.seconds(f"fold-{f}/seed-{s}/train", pauses) / 60 for f, s in pairs if timed(f, s)}
    return {"per_fold": per_fold, "not_timed": [f"fold-{f}" for f, s in pairs if not timed(f, s)],
            "goal": TRAINING_GOAL_MINUTES, "met": bool(per_fold) and max(per_fold.values()) <= TRAINING_GOAL_MINUTES}


def subject_tests(values: dict, targets: list[str]) -> list[dict]:
    """Paired Wilcoxon tests across subjects of the claims the goals are about, per target: MSP
    against its compute-matched rival, its own first stage and the best single network (SH against
    the noiseless truth); the best learned row against the best non-learned one (FA and MD against
    the noiseless truth) and against the rescan floor (FA and MD against the target scan). With
    ten subjects the smallest two-sided p is 2 / 2^10, so the family is kept to these seven tests
    per target for a Bonferroni correction that can still reach 0.05."""
    from mrharmony.stats import paired_test

    tests = []
    for t in targets:
        rows = values[t]
        for key in ("sh_noiseless", "fa_noiseless", "md_noiseless", "fa_scan", "md_scan"):
            have, methods, learned, non_learned = chosen_rows(rows, key)
            if not methods:
                continue
            if key == "sh_noiseless":
                pairs = [("msp", continued_rival(methods)), ("msp", "msp_stage1"), ("msp", best_row(SINGLE, methods))]
            elif key.endswith("_noiseless"):
                pairs = [(learned, non_learned)]
            else:
                pairs = [(learned, "rescan")]
            for a, b in pairs:
                if a in have and b in have and a != b:
                    common = sorted(set(have[a]) & set(have[b]))
                    test = paired_test([have[a][s] for s in common], [have[b][s] for s in common])
                    tests.append({"target": t, "metric": key, "a": a, "b": b, **test})
    return tests


def markdown(summary: dict) -> str:
    from mrharmony.stats import MIN_INTERVAL_SUBJECTS

    def cell(m):
        if m is None:
            return ""
        if m.get("n_subjects", MIN_INTERVAL_SUBJECTS) < MIN_INTERVAL_SUBJECTS:  # two values bound nothing
            return f"{m['mean']:.4g} (n={m['n_subjects']})"
        return f"{m['mean']:.4g} [{m['ci95'][0]:.4g}, {m['ci95'][1]:.4g}]"

    lines = [f"# dMRI benchmark, budget `{summary['budget']}`", "",
             *([f"Partial: the folds and seeds scored so far ({', '.join(summary['scored'])}).", ""]
               if summary.get("partial") else []),
             f"Command: `{summary['command']}`; machine {summary['machine']['node']} ({summary['machine']['cpus']} "
             f"cores); {summary['wall_hours']:.2f} h of wall time in all, less the pauses logged while other jobs "
             f"had the machine"
             + (f" (steps timed before intervals were recorded, not counted: {', '.join(summary['unmeasured_step_hours'])})"
                if summary.get("unmeasured_step_hours") else "") + ".", "",
             f"{len(summary['subjects'])} traveling heads, {summary['folds']} folds (every subject held out once), "
             f"seeds {summary['seeds']} (the networks of the MSP claim and diqt_tuned; the others seed {summary['seeds'][0]})"
             + (f" on the first {summary['seed_folds']} fold(s), seed {summary['seeds'][0]} on the others"
                if summary.get("seed_folds") else "") + ". "
             "Mean over subjects [95% bootstrap interval over subjects]; a subject's value is its mean over seeds.", ""]
    if summary.get("headline"):
        lines += ["## FA and MD at a glance", "",
                  ("Mean absolute error over the brain (FA; MD in mm^2/s), against the noiseless target and against "
                   "the target scan: no harmonization, the best non-learned row (none or a statistical method) and the "
                   "best learned row (by their mean among the rows scored on every subject), and the floors."), "",
                  "| target | measure | none | best non-learned | best learned | rescan | oracle |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for t, by_key in summary["headline"].items():
            rows = summary["targets"][t]
            for key, chosen in by_key.items():
                named = [f"{cell(rows[r].get(key))} {r}" if r else "" for r in (chosen["best_statistical"],
                                                                                  chosen["best_learned"])]
                lines.append(f"| {t} | {key} | {cell(rows.get('none', {}).get(key))} | {named[0]} | {named[1]} | "
                             f"{cell(rows.get('rescan', {}).get(key))} | {cell(rows.get('oracle', {}).get(key))} |")
        lines.append("")
    keys = [k for k in METRICS if k not in OFFSETS]
    for t, rows in summary["targets"].items():
        lines += [f"## {t}", "", "| row | subjects | " + " | ".join(keys)
                  + " | FA vs scan / rescan | MD vs scan / rescan |", "| --- | --- |" + " --- |" * (len(keys) + 2)]
        for row, e in rows.items():
            n = max((m.get("n_subjects", 0) for m in e.values()), default=0)
            lines.append(f"| {row} | {n} | " + " | ".join(cell(e.get(k)) for k in keys)
                         + f" | {cell(e.get('fa_scan_vs_rescan'))} | {cell(e.get('md_scan_vs_rescan'))} |")
        lines.append("")
    spread = [(t, row, e) for t, rows in summary["targets"].items() for row, e in rows.items()
              if any("seed_sd" in e.get(k, {}) for k in keys)]
    if spread:
        lines += ["## Spread over seeds", "",
                  ("Standard deviation over the training seeds of a row's mean over the subjects trained with every "
                   "seed (rows trained with several seeds)."), "",
                  "| target | row | " + " | ".join(keys) + " |", "| --- | --- |" + " --- |" * len(keys)]
        for t, row, e in spread:
            lines.append(f"| {t} | {row} | " + " | ".join(f"{e[k]['seed_sd']:.2g}" if "seed_sd" in e.get(k, {}) else ""
                                                          for k in keys) + " |")
        lines.append("")
    if summary.get("goals"):
        prim = summary.get("primary", {})
        lines += ["## Goals of the declared rows", "",
                  ("Rows declared in benchmarks/dmri.py before the run (its first invocation ran commit "
                   f"{(prim.get('invocations') or [{}])[0].get('commit') or 'unknown'}): "
                   + ", ".join(f"{k} `{v}`" for k, v in prim.get("rows", {}).items())
                   + ". The primary learned row is, per fold and target, the candidate ("
                   + ", ".join(prim.get("recipes", [])) + ") of lower validation loss on a validation subject. "
                   "Unit fold: the mean over each fold's held-out subjects of a subject's ratio, a Student-t "
                   "interval over folds; unit subject: a bootstrap interval over subjects. effect_kept: the "
                   "harmonized raw patients-minus-controls difference over the target platform's."), "",
                  "| target | goal | metric | a / b | unit | n | mean [95% interval] | goal | met |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for g in summary["goals"]:
            goal = g["goal"]
            goal = f"{goal[0]}-{goal[1]}" if isinstance(goal, list) else f"<= {goal}"
            lines.append(f"| {g['target']} | {g['name']} | {g['metric']} | {g['a']} / {g['b']} | {g['unit']} | "
                         f"{g['n']} | {g['mean']:.4g} [{g['ci95'][0]:.4g}, {g['ci95'][1]:.4g}] | {goal} | "
                         f"{'yes' if g['met'] else 'no'} |")
        lines.append("")
    if summary.get("offsets_kept"):
        lines += ["## Each person's own values", "",
                  ("Pearson's r across held-out subjects of the white-matter mean FA and MD after harmonization "
                   "with the noiseless target's (the simulator gives every subject its own tissue offsets): near the "
                   "rescan's r, each person's values are kept; near 0, replaced by an average."), "",
                  "| target | row | n | FA r | MD r |", "| --- | --- | --- | --- | --- |"]
        for t, rows in summary["offsets_kept"].items():
            for row, c in rows.items():
                cells = ["" if c.get(k) is None else f"{c[k]:.3f}" for k in ("fa_wm_r", "md_wm_r")]
                lines.append(f"| {t} | {row} | {c['n']} | {cells[0]} | {cells[1]} |")
        lines.append("")
    if summary.get("best_of"):
        lines += ["## Best of: ratios of the rows chosen after the run", "",
                  ("Not the claims (those are the declared rows above). learned_vs_statistical: the best learned "
                   "row over the best non-learned row, none or a statistical method (noiseless truth); "
                   "learned_vs_rescan: the best learned row over the rescan floor (target scan); msp_vs_rivals: MSP "
                   "over the better of its compute-matched rival (its first stage trained on) and the best single network (SH, "
                   "noiseless truth). Rows chosen "
                   "by their mean among those scored on every subject; cohort_effect: the patients-vs-controls "
                   "effect after harmonization with the learned row chosen on the same measure, over the effect on the "
                   "target platform. Met: the mean within the goal (and, for msp_vs_rivals, the interval below 1)."), "",
                  "| target | comparison | metric | a / b | ratio [95% interval] | goal | met |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for t, goals in summary["best_of"].items():
            for kind, by_metric in goals.items():
                for key, g in by_metric.items():
                    verdict = "" if "met" not in g else ("yes" if g["met"] else "no")
                    goal = g.get("goal", "")
                    goal = f"{goal[0]}-{goal[1]}" if isinstance(goal, list) else f"<= {goal}" if goal != "" else ""
                    lines.append(f"| {t} | {kind} | {key} | {g['a']} / {g['b']} | {cell(g)} | {goal} | {verdict} |")
        lines.append("")
    if summary.get("training_minutes", {}).get("per_fold"):
        tm = summary["training_minutes"]
        lines += ["Training of every row of one fold (first seed; training and fitting, timed by intervals, pauses "
                  "left out): " + ", ".join(f"{k} {v:.1f} min" for k, v in tm["per_fold"].items())
                  + (f" ({', '.join(tm['not_timed'])} not timed by intervals)" if tm.get("not_timed") else "")
                  + f"; goal at most {tm['goal']:.0f} min: {'met' if tm['met'] else 'not met'}"
                  + (" on the timed folds." if tm.get("not_timed") else "."), ""]
    if summary["cohort"]:
        lines += [f"## Cohort: patients vs controls ({summary['cohort_subjects']} subjects)", "",
                  ("Cohen's d (controls minus patients) of regional FA and MD, its ratio to the same effect on the "
                   "target scans (1: the effect kept), and the bias left in the regional values (harmonized minus the "
                   "target scan)."), ""]
        for t, rows in summary["cohort"].items():
            lines += [f"### {t}", "", "| row | FA d | FA d / target's | MD d | MD d / target's | FA bias | MD bias |",
                      "| --- | --- | --- | --- | --- | --- | --- |"]
            for row, e in rows.items():
                lines.append(f"| {row} | {cell(e.get('fa_effect_d'))} | {cell(e.get('fa_effect_ratio'))} | "
                             f"{cell(e.get('md_effect_d'))} | {cell(e.get('md_effect_ratio'))} | "
                             f"{cell(e.get('fa_bias'))} | {cell(e.get('md_bias'))} |")
            lines.append("")
    lines += ["## Paired tests across subjects", "",
              ("Wilcoxon signed-rank, two-sided; median difference a - b; Bonferroni over every test listed (the claims "
               "only: with 10 subjects the smallest two-sided p is 2 / 2^10)."), "",
              "| target | metric | a | b | n | median a - b | p | p (Bonferroni) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for x in summary["tests"]:
        lines.append(f"| {x['target']} | {x['metric']} | {x['a']} | {x['b']} | {x['n']} | "
                     f"{x['median_difference']:.3g} | {x['p']:.3g} | {x['p_bonferroni']:.3g} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", choices=sorted(SETTINGS), default="cpu")
    ap.add_argument("--out", required=True)
    ap.add_argument("--folds", type=int, help="folds over the subjects (default: the budget's)")
    ap.add_argument("--seeds", type=int, nargs="+", help="training seeds (default: the budget's)")
    ap.add_argument("--seed-folds", type=int,
                    help="folds trained with every seed, the others with the first only (default: the budget's)")
    ap.add_argument("--cohort", type=int, help="cohort size (default: the budget's)")
    ap.add_argument("--preset", help="dataset preset (default: the budget's)")
    ap.add_argument("--pauses", type=Path, help="log of the times the run was stopped (SIGSTOP) while other jobs had "
                    "the machine, one line each: '... for N s during ...'; left out of the wall time")
    ap.add_argument("--record", type=Path,
                    help="folder (to keep under version control) the summary's small files are copied into as "
                         "each step finishes, and copied back from on a machine that lost --out")
    ap.add_argument("--summarize-only", action="store_true",
                    help="train and score nothing: summarize the folds and seeds scored so far into "
                         "DIR/summary-partial.json and .md")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    setting = SETTINGS[args.budget]
    args.folds = setting["folds"] if args.folds is None else args.folds
    args.seeds = setting["seeds"] if args.seeds is None else args.seeds
    args.seed_folds = setting["seed_folds"] if args.seed_folds is None else args.seed_folds
    args.cohort = setting["cohort"] if args.cohort is None else args.cohort
    args.preset = setting["preset"] if args.preset is None else args.preset

    from mrharmony.dmri.features.prepare import prepare
    from mrharmony.errors import InputError
    from mrharmony.simulate import PRESETS, simulate

    try:
        if args.preset not in PRESETS:
            raise SettingError(f"unknown --preset {args.preset!r}; choose one of {', '.join(PRESETS)}.")
        check_settings(args, PRESETS[args.preset].n_subjects)
        if args.pauses is not None and not args.pauses.is_file():
            raise SettingError(f"--pauses {args.pauses} is not a file.")
        root = Path(args.out)
        data, cohort = root / "data", root / "cohort"
        if args.record is not None:
            if args.record.exists() and not args.record.is_dir():
                raise SettingError(f"--record {args.record} is not a folder.")
            if args.record.resolve() == root.resolve():
                raise SettingError("--record must be a folder other than --out.")
            if args.record.is_dir():
                for work in restore_record(args.record, root):
                    print(f"restored {work} from {args.record}", flush=True)
        subjects = benchmark_subjects(args, data)
        if args.summarize_only:
            if not scored(args, root, folds_of(subjects, args.folds)):
                raise SettingError(f"{root} has no fold scored yet; nothing to summarize.")
            return write_summary(args, root, subjects, Timing(root / "timing.json"), partial=True)
        root.mkdir(parents=True, exist_ok=True)
        log_invocation(root, args.record)
        timing = Timing(root / "timing.json")
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped run still records its time
    except (SettingError, InputError) as e:
        print(f"dmri.py: error: {e}", file=sys.stderr)
        return 2
    folds = folds_of(subjects, args.folds)
    made: set[Path] = set()

    def ready(path: Path, step: str, **cohort_size) -> None:
        """Simulate and prepare a dataset the first time a fold and seed to be run needs it (a run
        whose folds and seeds are all in the record simulates nothing)."""
        if path not in made:
            with timing.step(step):
                if not (path / "dataset.yaml").exists():
                    simulate(path, preset=args.preset, seed=0, quiet=args.quiet, **cohort_size)
                prepare(path, quiet=args.quiet)
                for denoise in sorted({d for *_, d in PRACTICE if d != "none"}):  # the practice rows' input
                    prepare(path, quiet=args.quiet, denoise=denoise)
            made.add(path)

    for f, s in run_order(args, len(folds)):
        # the cohort's people are none of the traveling heads: every fold's harmonizers are a fair test of
        # them (the declared rows only, so that the cost stays small)
        uses_cohort = cohort if args.cohort else None
        if not recorded_only(root / f"fold-{f}" / f"seed-{s}", uses_cohort):
            ready(data, "data")
            if uses_cohort is not None:
                ready(cohort, "cohort-data", cohort=args.cohort)
        run_fold_seed(root, data, uses_cohort, f, folds[f], s,
                      first_seed=s == args.seeds[0], budget=BUDGETS[args.budget],
                      volume_voxels=setting["volume_voxels"], timing=timing, quiet=args.quiet,
                      record=args.record)
    save_record(args.record, root)
    return write_summary(args, root, subjects, timing)


def benchmark_subjects(args, data: Path) -> list[str]:
    """The traveling heads: those of the simulated data where they are here, else the names the
    preset's data will have (a machine that has the record only)."""
    from mrharmony.data import load_dataset
    from mrharmony.simulate import PRESETS, subject_names

    if (data / "dataset.yaml").exists():
        return load_dataset(data, check_data=False).subjects
    return subject_names(PRESETS[args.preset].n_subjects)


def write_summary(args, root: Path, subjects: list[str], timing: Timing, *, partial: bool = False) -> int:
    """Summarize into DIR/summary.json and .md (``partial``: what is scored so far, into
    summary-partial.json and .md), and print the Markdown."""
    summary = summarize(args, root, subjects, folds_of(subjects, args.folds), timing, partial=partial)
    name = "summary-partial" if partial else "summary"
    (root / f"{name}.json").write_text(json.dumps(summary, indent=1) + "\n")
    text = markdown(summary)
    (root / f"{name}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
