"""The dMRI benchmarks' training and their fold loop.

What ``benchmarks/table1.py``, ``benchmarks/dmri.py`` and the tries beside them share: the training
budgets (:data:`BUDGETS`) and the dMRI benchmark's settings per budget (:data:`SETTINGS`); one
run trained once, resumed when interrupted (:func:`train_dmri_run`); every row of the MSP paper's
Table 1 (:func:`train_methods`); and the dMRI benchmark's loop over folds and seeds
(:func:`run_benchmark`): data simulated when a fold needs them, each fold and seed trained,
evaluated and scored on the cohort as resumable steps, timed, recorded, and summarized
(:mod:`mrharmony.bench.dmri_summary`). The rows a benchmark declares are its script's.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from mrharmony.bench.dmri_summary import (
    CHOICE,
    COHORT,
    COHORT_SCORED,
    EVALUATED,
    EVALUATION,
    Claims,
    markdown,
    summarize,
)
from mrharmony.bench.plan import Plan, SettingError, folds_of, work_dir
from mrharmony.bench.record import (
    check_record,
    done,
    log_invocation,
    mark_done,
    recorded_only,
    restore_record,
    save_record,
)
from mrharmony.bench.summary import command, write_summary
from mrharmony.bench.timing import Timing
from mrharmony.dmri.recipes import recipe

#: the target platforms of the MSP paper's Table 1
TARGETS = ("prisma_st", "connectom_st", "connectom_sa")

#: the training budgets: per budget the training preset and the training settings on top of it
#: (``paper``: the paper's schedule; ``gpu``: 25 epochs of 40,000 patches; ``cpu``: 6 epochs of
#: 2,400 patches with a larger step; ``smoke``: the ``test`` preset, a check of a script end to end)
BUDGETS = {
    "paper": {"preset": "paper", "training": {}},
    "gpu": {
        "preset": "paper",
        "training": {"epochs": 25, "patches_per_epoch": 40000, "lr_decay_every": 8, "validation_patches": 5000},
    },
    "cpu": {
        "preset": "paper",
        "training": {
            "epochs": 6,
            "patches_per_epoch": 2400,
            "learning_rate": 1e-3,
            "lr_decay_every": 2,
            "validation_patches": 600,
        },
    },
    "smoke": {"preset": "test", "training": {}},  # checks the script end to end in a minute
}

#: the dMRI benchmark's settings per budget: dataset preset, folds, seeds, the folds trained with
#: every seed (the others with the first seed only; None: all), cohort size, and the seeded brain
#: voxels per subject and target on which FA / MD errors are computed (None: all; DTI fits of whole
#: brains at 1.2 mm dominate the evaluation's time otherwise)
SETTINGS = {
    "smoke": {"preset": "tiny", "folds": 3, "seeds": [0, 1], "seed_folds": 2, "cohort": 4, "volume_voxels": None},
    "cpu": {"preset": "mushac", "folds": 5, "seeds": [0], "seed_folds": None, "cohort": 20, "volume_voxels": 40000},
    "gpu": {
        "preset": "mushac",
        "folds": 5,
        "seeds": [0, 1, 2],
        "seed_folds": None,
        "cohort": 20,
        "volume_voxels": 40000,
    },
}

#: the files of a fold and seed the summary is made from, kept in the record (paths under its folder)
RECORDED = (EVALUATION, EVALUATED, COHORT, COHORT_SCORED, CHOICE)

#: ``train_rows(work, data_cfg, budget, *, seed, quiet, every_row) -> run directories``: the rows a
#: benchmark trains in one fold and seed (``every_row`` False: only those trained with every seed)
TrainRows = Callable[..., list[Path]]


def budget_setting(budget: dict, key: str):
    """A training setting of ``budget``: its own, else its preset's, else the run config's default."""
    from mrharmony.dmri.config import PRESETS, TrainingConfig

    return budget["training"].get(key, PRESETS[budget["preset"]].get(key, TrainingConfig.model_fields[key].default))


def budget_epochs(budget: dict) -> int:
    """The epochs of ``budget``'s schedule."""
    return int(budget_setting(budget, "epochs"))


def widened_diqt_features(n_params: int, target_ratio: int, in_channels: int = 28) -> int:
    """The DIQT width whose parameter count is closest to ``n_params``."""
    from mrharmony.dmri.networks.single import DIQT

    return min(
        range(8, 1024, 2),
        key=lambda f: abs(
            sum(p.numel() for p in DIQT("t", in_channels, target_ratio, features=f).parameters()) - n_params
        ),
    )


def train_dmri_run(root: Path, name: str, cfg: dict, *, tag: str | None = None, quiet: bool = True) -> Path:
    """Train one run of a benchmark, once.

    Parameters
    ----------
    root : Path
        The folder of the runs (``runs/``) and their configs (``configs/``).
    name : str
        The run's folder name.
    cfg : dict
        The run config, written to ``root/configs/<name>.yaml`` (relative paths in it are read
        from that folder).
    tag : str, optional
        What the printed lines of the run's start and wall time begin with.
    quiet : bool
        No progress of the training.

    Returns
    -------
    Path
        ``root/runs/<name>``: trained unless it is there (a network's ``model.pt`` or a
        statistical method's ``harmonizer.json``); an interrupted training resumed from its last
        checkpoint, with the config it was started with.
    """
    import yaml

    from mrharmony.dmri.training import train

    out = root / "runs" / name
    if (out / "model.pt").exists() or (out / "harmonizer.json").exists():
        return out
    resume = (out / "checkpoints" / "last.pt").exists()
    if not resume:
        path = root / "configs" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    what = f"{tag}: {name}" if tag else name
    print(f"[{time.strftime('%H:%M:%S')}] {what}{' (resumed)' if resume else ''}", flush=True)
    t0 = time.time()
    train(None if resume else root / "configs" / f"{name}.yaml", out, resume=resume, quiet=quiet)
    print(f"[{time.strftime('%H:%M:%S')}] {what}: trained in {time.time() - t0:.0f} s", flush=True)
    return out


def train_methods(
    work: Path,
    data_cfg: dict,
    budget: dict,
    *,
    seed: int,
    control_target: str,
    quiet: bool,
    every_row: bool = True,
    widened: bool = True,
    tuned: bool = True,
    statistical: bool = True,
) -> list[Path]:
    """Train (or find finished, or resume) every run of the MSP paper's Table 1.

    Parameters
    ----------
    work : Path
        The folder of the runs (``work/runs``) and their configs.
    data_cfg : dict
        The runs' ``data`` section (dataset, split); each run adds its targets.
    budget : dict
        A training budget (:data:`BUDGETS`).
    seed : int
        The training seed.
    control_target : str
        The target of the rows trained on one target only (``diqt_long``, ``diqt_widened``).
    quiet : bool
        No progress of the trainings.
    every_row : bool
        False: only the rows a claim about MSP rests on (the single networks, MSP, its continued
        first stage and ``diqt_tuned``), as for further seeds.
    widened : bool
        False: leave out ``diqt_widened`` (a DIQT with MSP's parameter count, the costliest run).
    tuned : bool
        False: leave out ``diqt_tuned`` and its rival ``diqt_long`` (recipes of
        :mod:`mrharmony.dmri.recipes`).
    statistical : bool
        False: leave out the statistical methods (a caller that fits its own).

    Returns
    -------
    list of Path
        The run directories, in the table's order.
    """
    from mrharmony.dmri.registry import REGISTRY
    from mrharmony.engine.checkpoint import read_checkpoint

    work = Path(work).resolve()  # the configs name runs by absolute path (a relative one would be read from configs/)
    (work / "configs").mkdir(parents=True, exist_ok=True)
    tag = "/".join(work.parts[-2:])  # e.g. fold-0/seed-1, or table1/subject

    def run(
        name: str, model: dict, targets: list[str] | None, label: str | None = None, training: dict | None = None
    ) -> Path:
        cfg = {
            "preset": budget["preset"],
            **({"label": label} if label else {}),
            "data": {**data_cfg, **({"targets": targets} if targets else {})},
            "model": model,
            "training": {**budget["training"], **(training or {}), "seed": seed},
        }
        return train_dmri_run(work, name, cfg, tag=tag, quiet=quiet)

    networks = [(m.name, m.config) for m in REGISTRY.methods("network")]
    singles = [run(f"{m}-{t}", {"method": m}, [t]) for m, cls in networks if cls.single_target for t in TARGETS]
    runs = list(singles)
    for m, cls in networks:  # every target at once; MSP from the single networks above
        if not cls.single_target and (every_row or cls.builds_on_single_networks):
            first = (
                {"first_stage_runs": [str(p) for p in singles], "alpha_end_epoch": max(1.0, budget_epochs(budget) / 3)}
                if cls.builds_on_single_networks
                else {}
            )
            runs.append(run(m, {"method": m, **first}, None))
    msp_meta = read_checkpoint(work / "runs" / "msp" / "model.pt")["meta"]
    # compute-matched rivals of MSP: its chosen first-stage networks trained on for the same budget and
    # schedule as MSP's second stage (diqt_continued), and a DIQT as wide as MSP (diqt_widened)
    for t, first in msp_meta["first_stage_runs"].items():
        first = (work / "runs" / "msp" / first).resolve()
        method = read_checkpoint(first / "model.pt")["meta"]["model"]["method"]
        runs.append(
            run(
                f"{method}-continued-{t}", {"method": method, "init_from": str(first)}, [t], label=f"{method}_continued"
            )
        )
    epochs = budget_epochs(budget)
    best = recipe("diqt_tuned")
    for t in TARGETS if tuned else ():  # this project's recipe (a claim rests on it: trained with every seed)
        runs.append(
            run(f"diqt-tuned-{t}", dict(best.model), [t], label=best.name, training=best.training(epochs=epochs))
        )
    if not every_row:
        return runs
    if tuned:
        rival = recipe("diqt_long")
        runs.append(
            run(
                f"diqt-long-{control_target}",
                dict(rival.model),
                [control_target],
                label=rival.name,
                training=rival.training(epochs=epochs, lr_decay_every=budget_setting(budget, "lr_decay_every")),
            )
        )
    if widened:
        ratio = 2 if control_target == "connectom_sa" else 1
        width = widened_diqt_features(msp_meta["parameter_count"], ratio)
        runs.append(
            run(
                f"diqt-wide-{control_target}",
                {"method": "diqt", "features": width},
                [control_target],
                label="diqt_widened",
            )
        )
    for method in statistical_methods() if statistical else ():
        runs.append(run(method, {"method": method}, None))
    return runs


def statistical_methods() -> list[str]:
    """The statistical baselines whose requirements are installed here (ComBat needs the ``combat``
    extra, .venv-combat); a line is printed for each that is not."""
    from mrharmony.dmri.registry import REGISTRY
    from mrharmony.errors import InputError

    names = []
    for m in REGISTRY.methods("statistical"):
        try:
            m.config.harmonizer().check_requirements()
            names.append(m.name)
        except InputError:  # its extra is not installed here
            print(f"{m.name} needs the {m.extra} extra: no {m.name} rows (run with .venv-combat/bin/python for them)")
    return names


def primary_choice(work: Path, candidates: tuple[str, ...], targets: tuple[str, ...] = TARGETS) -> dict[str, str]:
    """Choose the primary learned row of a fold and seed.

    Parameters
    ----------
    work : Path
        The fold and seed's folder; its runs ``runs/<candidate>-<target>``.
    candidates : tuple of str
        The labels of the candidates.
    targets : tuple of str
        The benchmark's target platforms.

    Returns
    -------
    dict
        Per target, the candidate of lowest best validation loss (on the validation subject, never
        a test one); written with the losses to ``work/primary.json``.
    """
    from mrharmony.engine.checkpoint import read_checkpoint
    from mrharmony.io import write_json

    chosen, losses = {}, {}
    for t in targets:
        found = {}
        for label in candidates:
            path = work / "runs" / f"{label}-{t}" / "model.pt"
            if path.exists():
                found[label] = float(read_checkpoint(path)["meta"]["best_validation_loss"][t])
        if found:
            chosen[t] = min(found, key=lambda label: found[label])
            losses[t] = found
    write_json(work / CHOICE, {"chosen": chosen, "validation_loss": losses})
    return chosen


def primary_name(name: str, h, chosen: dict[str, str], claims: Claims) -> str:
    """A row's name in the claims: the chosen candidate of a target (harmonizer ``h``, one target)
    is the primary learned row."""
    if name in claims.candidates and len(h.targets) == 1 and chosen.get(h.targets[0]) == name:
        return claims.primary["learned"]
    return name


def finished_markers(cohort: Path | None) -> list[str]:
    """The files that say a fold and seed is finished: its evaluation's, and its cohort score's
    where the run scores a cohort."""
    return [EVALUATED] + ([COHORT_SCORED] if cohort is not None else [])


def run_fold_seed(
    root: Path,
    data: Path,
    cohort: Path | None,
    fold: int,
    held_out: list[str],
    seed: int,
    *,
    first_seed: bool,
    budget: dict,
    volume_voxels: int | None,
    timing: Timing,
    quiet: bool,
    claims: Claims,
    train_rows: TrainRows,
    record: Path | None = None,
    targets: tuple[str, ...] = TARGETS,
) -> None:
    """Train, evaluate and score the cohort for one fold and seed.

    Each step is skipped when done (redone when rows were added since it ran); the whole fold and
    seed is skipped when it was finished on another machine and restored from ``record``.

    Parameters
    ----------
    root, data, cohort : Path
        The run's output, its traveling heads and its cohort (None: no cohort).
    fold, held_out, seed
        The fold, its held-out subjects and the training seed.
    first_seed : bool
        Whether this is the first seed: every row is trained, and the floors are scored.
    budget : dict
        The training budget (:data:`BUDGETS`).
    volume_voxels : int or None
        The seeded brain voxels of the FA / MD errors.
    timing : Timing
        The run's step timing.
    quiet : bool
        No progress.
    claims : Claims
        The declared rows: the cohort is scored with them (and ``none``).
    train_rows : callable
        The benchmark's rows (:data:`TrainRows`).
    record : Path, optional
        The record folder, brought up to date as each step finishes.
    targets : tuple of str
        The benchmark's target platforms.
    """
    from mrharmony.dmri.evaluate import evaluate
    from mrharmony.dmri.tables import write_tables

    work = work_dir(root, fold, seed)
    if recorded_only(work, finished_markers(cohort)):
        print(f"fold {fold} seed {seed}: scored on another machine (restored from the record)", flush=True)
        return
    data_cfg = {"dataset": str(data.resolve()), "split": "subject", "test_subjects": held_out, "split_seed": 0}
    with timing.step(f"fold-{fold}/seed-{seed}/train"):
        runs = train_rows(work, data_cfg, budget, seed=seed, quiet=quiet, every_row=first_seed)
    primary_choice(work, claims.candidates, targets)
    names = sorted(Path(r).name for r in runs)  # a step is redone when rows were added since it ran
    if not done(work / EVALUATION, names):
        print(f"[{time.strftime('%H:%M:%S')}] fold {fold} seed {seed}: evaluating", flush=True)
        with timing.step(f"fold-{fold}/seed-{seed}/evaluate"):
            ev = evaluate(runs, first_stages=True, floors=first_seed, volume_voxels=volume_voxels, quiet=quiet)
            write_tables(ev, work / "evaluation")
            mark_done(work / EVALUATION, names)
        save_record(record, root, work, RECORDED)
    if cohort is not None and not done(work / COHORT, names):
        from mrharmony.dmri.cohort import regional_values
        from mrharmony.dmri.evaluate import table_rows_of
        from mrharmony.io import write_json

        print(f"[{time.strftime('%H:%M:%S')}] fold {fold} seed {seed}: cohort", flush=True)
        with timing.step(f"fold-{fold}/seed-{seed}/cohort"):
            rows = table_rows_of(runs, first_stages=False)
            chosen = json.loads((work / CHOICE).read_text())["chosen"]
            pairs = [(primary_name(n, h, chosen, claims), h) for n, h in zip(rows.names, rows.harmonizers)]
            values = regional_values(
                [(n, h) for n, h in pairs if n in claims.primary.values() or n == "none"], cohort, quiet=quiet
            )
            write_json(work / COHORT, {"fold": fold, "seed": seed, "rows": values})
            mark_done(work / COHORT, names)
        save_record(record, root, work, RECORDED)


def benchmark_subjects(preset: str, data: Path) -> list[str]:
    """The traveling heads: those of the simulated data where they are here, else the names the
    preset's data will have (a machine that has the record only)."""
    from mrharmony.data import load_dataset
    from mrharmony.simulate import PRESETS, subject_names

    if (data / "dataset.yaml").exists():
        return load_dataset(data, check_data=False).subjects
    return subject_names(PRESETS[preset].n_subjects)


def with_budget(args, settings: dict | None = None) -> dict:
    """Fill the settings ``args`` leaves out (None) from its budget's (``settings``, default
    :data:`SETTINGS`); the budget's settings."""
    setting = (settings or SETTINGS)[args.budget]
    for key in ("folds", "seeds", "seed_folds", "cohort", "preset"):
        if getattr(args, key) is None:
            setattr(args, key, setting[key])
    return setting


def write_dmri_summary(
    args, root: Path, subjects: list[str], timing: Timing, *, claims: Claims, script: str, partial: bool = False
) -> int:
    """Summarize into ``root/summary.json`` and ``.md`` (``partial``: what is scored so far, into
    ``summary-partial.json`` and ``.md``), and print the Markdown."""
    summary = summarize(
        args, root, subjects, folds_of(subjects, args.folds), timing, claims=claims, partial=partial, script=script
    )
    write_summary(root, "summary-partial" if partial else "summary", summary, markdown(summary, script=script))
    return 0


def run_benchmark(
    args,
    *,
    claims: Claims,
    train_rows: TrainRows,
    denoise: tuple[str, ...],
    script: str,
    checkout: Path,
    settings: dict | None = None,
    platforms: str | None = None,
    targets: tuple[str, ...] = TARGETS,
) -> int:
    """The dMRI benchmark's run: every fold and seed trained, scored and summarized, resumably.

    Parameters
    ----------
    args : argparse.Namespace
        The command line: ``budget``, ``out``, ``folds``, ``seeds``, ``seed_folds``, ``cohort``,
        ``preset`` (None: the budget's, :func:`with_budget`), ``pauses``, ``record``,
        ``summarize_only`` and ``quiet``.
    claims : Claims
        The rows and goals the benchmark declares.
    train_rows : callable
        The rows it trains in one fold and seed (:data:`TrainRows`).
    denoise : tuple of str
        The denoisings its rows' inputs need prepared beside the raw features.
    script : str
        The script, as the summary's command and the error lines name it.
    checkout : Path
        A folder of the checkout that runs, whose commit each invocation logs.
    settings : dict, optional
        The settings per budget (default :data:`SETTINGS`).
    platforms : str, optional
        The simulated platforms (a packaged set's name or a file; default the packaged MUSHAC set).
    targets : tuple of str
        The target platforms the primary learned row is chosen on.

    Returns
    -------
    int
        The exit code: 0, or 2 after one sentence on stderr for an impossible setting.
    """
    from mrharmony.dmri.features.prepare import prepare
    from mrharmony.errors import InputError
    from mrharmony.simulate import PRESETS, simulate

    setting = with_budget(args, settings)
    try:
        if args.preset not in PRESETS:
            raise SettingError(f"unknown --preset {args.preset!r}; choose one of {', '.join(PRESETS)}.")
        plan = Plan(args.folds, args.seeds, args.seed_folds)
        plan.check(PRESETS[args.preset].n_subjects)
        if args.cohort is not None and args.cohort < 4:
            raise SettingError(f"--cohort needs at least 4 subjects (2 controls, 2 patients), not {args.cohort}.")
        if args.pauses is not None and not args.pauses.is_file():
            raise SettingError(f"--pauses {args.pauses} is not a file.")
        root = Path(args.out)
        data, cohort = root / "data", root / "cohort"
        check_record(args.record, root)
        if args.record is not None and args.record.is_dir():
            for work in restore_record(args.record, root, RECORDED, EVALUATED):
                print(f"restored {work} from {args.record}", flush=True)
        subjects = benchmark_subjects(args.preset, data)
        if args.summarize_only:
            if not plan.scored(root, EVALUATED):
                raise SettingError(f"{root} has no fold scored yet; nothing to summarize.")
            return write_dmri_summary(
                args, root, subjects, Timing(root / "timing.json"), claims=claims, script=script, partial=True
            )
        root.mkdir(parents=True, exist_ok=True)
        log_invocation(root, args.record, command(script), checkout)
        timing = Timing(root / "timing.json")
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped run still records its time
    except (SettingError, InputError) as e:
        print(f"{Path(script).name}: error: {e}", file=sys.stderr)
        return 2
    folds = folds_of(subjects, args.folds)
    made: set[Path] = set()

    def ready(path: Path, step: str, **cohort_size) -> None:
        """Simulate and prepare a dataset the first time a fold and seed to be run needs it (a run
        whose folds and seeds are all in the record simulates nothing)."""
        if path not in made:
            with timing.step(step):
                if not (path / "dataset.yaml").exists():
                    simulate(
                        path, preset=args.preset, seed=0, quiet=args.quiet, platforms_file=platforms, **cohort_size
                    )
                prepare(path, quiet=args.quiet)
                for d in denoise:  # the rows' denoised input
                    prepare(path, quiet=args.quiet, denoise=d)
            made.add(path)

    for f, s in plan.run_order():
        # the cohort's people are none of the traveling heads: every fold's harmonizers are a fair test of
        # them (the declared rows only, so that the cost stays small)
        uses_cohort = cohort if args.cohort else None
        if not recorded_only(work_dir(root, f, s), finished_markers(uses_cohort)):
            ready(data, "data")
            if uses_cohort is not None:
                ready(cohort, "cohort-data", cohort=args.cohort)
        run_fold_seed(
            root,
            data,
            uses_cohort,
            f,
            folds[f],
            s,
            first_seed=s == args.seeds[0],
            budget=BUDGETS[args.budget],
            volume_voxels=setting["volume_voxels"],
            timing=timing,
            quiet=args.quiet,
            claims=claims,
            train_rows=train_rows,
            record=args.record,
            targets=targets,
        )
    save_record(args.record, root)
    return write_dmri_summary(args, root, subjects, timing, claims=claims, script=script)
