"""The summary of the dMRI benchmark: statistics over subjects and folds, the goals, and its Markdown.

The benchmark (``benchmarks/dmri.py``) scores every fold and seed with ``mrharmony dmri evaluate``;
this module gathers those evaluations (:func:`gather`), gives each row's mean over subjects with a
bootstrap interval, the paired tests of the claims (:func:`subject_tests`), the goals of the rows
declared before the run (:class:`Claims`, :func:`declared_goals`, with the fold as the unit) and
of the rows chosen after it (:func:`goal_ratios`, labelled "best of"), and writes it all as JSON
and Markdown (:func:`summarize`, :func:`markdown`).

The functions on the scores take ``values``, target -> row -> metric -> {subject: value} (a
subject's value its mean over seeds), and ``targets``, the targets in the summary's order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mrharmony.bench.plan import Plan, work_dir
from mrharmony.bench.record import invocations
from mrharmony.bench.summary import command, machine
from mrharmony.bench.timing import Timing, pauses_of

#: the summary's metrics: summary key -> evaluation key
METRICS = {
    "sh_noiseless": "sh_rel_noiseless",
    "sh_scan": "sh_rel",
    "fa_scan": "fa_mae",
    "md_scan": "md_mae",
    "fa_noiseless": "fa_mae_noiseless",
    "md_noiseless": "md_mae_noiseless",
    # regional means in the named white-matter regions (mean absolute error over the regions)
    "fa_region_scan": "fa_region_mae",
    "md_region_scan": "md_region_mae",
    "fa_region_noiseless": "fa_region_mae_noiseless",
    "md_region_noiseless": "md_region_mae_noiseless",
    # on targets of two shells or more: mean kurtosis of a DKI fit (and, per shell, the RISH features'
    # errors under their evaluation keys, rish_rel_b<b>[_noiseless]: see metric_sources)
    "mk_scan": "mk_mae",
    "mk_noiseless": "mk_mae_noiseless",
    # each subject's white-matter means, harmonized and of the noiseless truth (offsets_kept)
    "fa_wm": "fa_wm",
    "md_wm": "md_wm",
    "fa_wm_truth": "fa_wm_truth",
    "md_wm_truth": "md_wm_truth",
}
#: the metrics that are values of a person, not errors: no row of the error tables
OFFSETS = ("fa_wm", "md_wm", "fa_wm_truth", "md_wm_truth")
#: the single networks of the MSP paper (MSP's rivals)
SINGLE = ("diqt", "cnn_rish", "shresnet")
#: MSP's compute-matched rival under one name where MSP chose different first-stage networks across
#: folds, seeds or targets (its rows ``<network>_continued`` merged per subject)
CONTINUED = "first_stage_continued"
#: the non-learned rows: no harmonization and the statistical methods
STATISTICAL = ("none", "meanvar_global", "meanvar_voxel", "rish", "combat")


def is_statistical(row: str) -> bool:
    """Whether a row is non-learned: a statistical method, also as practice runs it (``rish_syn_mppca``:
    RISH through a SyN template after MP-PCA; ``none_mppca``)."""
    return row in STATISTICAL or any(row.startswith(f"{s}_") for s in STATISTICAL)


#: the floors of the evaluation: not methods, never chosen as the best of anything
FLOORS = ("rescan", "oracle")
#: a fold and seed's evaluation (under its folder), and the file that says it is finished
EVALUATION = "evaluation/evaluation.json"
EVALUATED = EVALUATION + ".runs"
#: a fold and seed's cohort score, and the file that says it is finished
COHORT = "cohort.json"
COHORT_SCORED = COHORT + ".runs"
#: a fold and seed's choice of the primary learned row among the candidates
CHOICE = "primary.json"


#: the start of the evaluation's per-shell keys, kept under their own names (their b-values vary by data)
SHELL_METRICS = "rish_rel_b"


def metric_sources(row: dict) -> list[tuple[str, str]]:
    """(summary key, evaluation key) of every metric an evaluation row may hold: :data:`METRICS`,
    and the per-shell RISH errors (:data:`SHELL_METRICS`) under their own names."""
    return list(METRICS.items()) + [(k, k) for k in sorted(row) if k.startswith(SHELL_METRICS)]


@dataclass(frozen=True)
class Claims:
    """What a dMRI benchmark declares before it runs: the rows its claims rest on and their goals.

    Parameters
    ----------
    primary : Mapping
        The declared rows: a key (``msp``, ``msp_scannorm``, ``learned``, ``practice``) -> the
        row's name. ``learned`` names the primary learned row, per fold and target the candidate
        of lower validation loss.
    candidates : tuple of str
        The labels of the primary learned row's candidates.
    declared_goals : tuple
        The declared ratio goals: ``(name, a, b, metric, summary key, largest ratio that meets it)``,
        ``a`` a key of ``primary``, ``b`` a key of ``primary``, ``"rescan"`` or ``"rival"`` (MSP's
        compute-matched rival).
    effect_goals : tuple
        The cohort's goals: ``(metric, the cohort summary's ratio key)``.
    effect_window : tuple of float
        The window of the declared rows' effect ratio that meets the cohort's goals.
    best_of_goals : Mapping
        The goals of the rows chosen after the run: kind -> the largest ratio that meets it.
    cohort_goal : tuple of float
        The window of the best learned row's effect ratio that meets the cohort's best-of goal.
    training_goal_minutes : float
        Every row of one fold (one seed) trained and fitted within this many minutes.
    """

    primary: Mapping[str, str]
    candidates: tuple[str, ...]
    declared_goals: tuple
    effect_goals: tuple
    effect_window: tuple[float, float]
    best_of_goals: Mapping[str, float]
    cohort_goal: tuple[float, float]
    training_goal_minutes: float


def gather(root: Path, pairs: list[tuple[int, int]], claims: Claims) -> tuple[dict, dict, list]:
    """Gather the scores of the folds and seeds ``pairs`` of the run in ``root``.

    Parameters
    ----------
    root : Path
        The run's output folder (``fold-F/seed-S/evaluation/evaluation.json`` ...).
    pairs : list of (int, int)
        The (fold, seed) pairs to gather.
    claims : Claims
        The declared rows: the chosen candidate of a fold and target (its ``primary.json``) is
        gathered under the primary learned row's name as well.

    Returns
    -------
    per_subject : dict
        (row, target, subject) -> metric -> its values over the seeds.
    per_seed : dict
        (row, target, seed) -> metric -> {subject: value}.
    cohort_rows : list of dict
        The cohort's rows of every fold and seed whose cohort is scored.

    Notes
    -----
    MSP's compute-matched rivals (``<network>_continued``) are also gathered under
    :data:`CONTINUED` for a target where MSP chose different first-stage networks across folds and
    seeds.
    """
    per_subject: dict = {}  # (row, target, subject) -> metric -> [values over seeds]
    per_seed: dict = {}  # (row, target, seed) -> metric -> {subject: value}
    cohort_rows = []
    for f, s in pairs:
        work = work_dir(root, f, s)
        ev = json.loads((work / EVALUATION).read_text())
        chosen = json.loads((work / CHOICE).read_text())["chosen"] if (work / CHOICE).exists() else {}
        for r in ev["volume_errors"]:
            # MSP's rival is the first-stage network it chose, trained on: one rival whatever that network was
            names = (r["method"], CONTINUED) if r["method"].endswith("_continued") else (r["method"],)
            if r["method"] in claims.candidates and chosen.get(r["target"]) == r["method"]:  # the primary learned row
                names = (r["method"], claims.primary["learned"])
            for key, src in metric_sources(r):
                if r.get(src) is None:
                    continue
                for name in names:
                    per_subject.setdefault((name, r["target"], r["subject"]), {}).setdefault(key, []).append(r[src])
                    per_seed.setdefault((name, r["target"], s), {}).setdefault(key, {})[r["subject"]] = r[src]
        if (work / COHORT_SCORED).exists():  # the cohort through every fold's (primary) harmonizers
            cohort_rows += [
                {**r, "model": f"{f}/{s}/{r['model']}", "fold": f}
                for r in json.loads((work / COHORT).read_text())["rows"]
            ]
    for t in {t for _, t, _ in per_subject}:  # one network's rows need no second name
        if len({r for r, tt, _ in per_subject if tt == t and r.endswith("_continued") and r != CONTINUED}) == 1:
            for k in [k for k in per_subject if k[0] == CONTINUED and k[1] == t]:
                del per_subject[k]
    return per_subject, per_seed, cohort_rows


def summarize(
    args,
    root: Path,
    subjects: list[str],
    folds: list[list[str]],
    timing: Timing,
    *,
    claims: Claims,
    partial: bool = False,
    script: str = "benchmarks/dmri.py",
) -> dict:
    """The summary of a dMRI benchmark run.

    Parameters
    ----------
    args : argparse.Namespace
        The run's settings: ``budget``, ``seeds``, ``seed_folds``, ``preset``, ``pauses`` (a pause
        log or None) and ``record`` (its record folder or None).
    root : Path
        The run's output folder.
    subjects : list of str
        The traveling heads.
    folds : list of list of str
        The held-out subjects of each fold.
    timing : Timing
        The run's step timing.
    claims : Claims
        The rows and goals declared before the run.
    partial : bool
        Summarize the folds and seeds scored so far (the summary says which), not every one.
    script : str
        The script the summary's command names.

    Returns
    -------
    dict
        Every row's mean over subjects per target and metric, the tests, the goals, the cohort,
        each subject's values, the machine, the wall time and the command (keys in a fixed order).
    """
    from mrharmony.dmri.cohort import group_summary
    from mrharmony.stats import bonferroni, mean_ci

    plan = Plan(len(folds), list(args.seeds), args.seed_folds)
    pairs = plan.scored(root, EVALUATED) if partial else plan.pairs()
    per_subject, per_seed, cohort_rows = gather(root, pairs, claims)
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
                if len(seed_means) > 1 and not is_statistical(row) and row not in FLOORS:  # rows trained with seeds
                    entry[key]["seed_sd"] = float(np.std(seed_means, ddof=1))
                if key in ("sh_scan", "fa_scan", "md_scan") and key in rescan and row not in FLOORS:
                    common = sorted(set(by_subject) & set(rescan[key]))
                    entry[f"{key}_vs_rescan"] = {
                        **mean_ci([by_subject[s] / rescan[key][s] for s in common]),
                        "n_subjects": len(common),
                    }
            out_targets[t][row] = entry
    tests = subject_tests(values, targets)
    bonferroni(tests)
    best_of = goal_ratios(values, targets, claims)
    cohort = group_summary(cohort_rows) if cohort_rows else {}
    cohort_goals(best_of, cohort, claims)
    goals = declared_goals(values, targets, folds, cohort_rows, cohort, claims)
    primary = {
        f"fold-{f}/seed-{s}": json.loads((work_dir(root, f, s) / CHOICE).read_text())
        for f, s in pairs
        if (work_dir(root, f, s) / CHOICE).exists()
    }
    summary = {
        **({"partial": True, "scored": [f"fold-{f}/seed-{s}" for f, s in pairs]} if partial else {}),
        "budget": args.budget,
        "folds": len(folds),
        "seeds": list(args.seeds),
        "seed_folds": args.seed_folds,
        "subjects": subjects,
        "fold_subjects": folds,
        "preset": args.preset,
        "targets": out_targets,
        "cohort": cohort,
        "cohort_subjects": len({r["subject"] for r in cohort_rows}),
        "tests": tests,
        # the declared claims (claims.primary), judged on the rows named before the run
        "primary": {
            "rows": dict(claims.primary),
            "recipes": list(claims.candidates),
            "chosen": primary,
            "invocations": invocations(root, args.record),
        },
        "goals": goals,
        # each person's own values: per target and row, the correlation across held-out subjects of the
        # white-matter mean FA and MD after harmonization with the noiseless target's
        "offsets_kept": offsets_kept(values, targets),
        # the earlier claims on the best rows of each measure (chosen after the run: labelled "best of")
        "best_of": best_of,
        "headline": headline(values, targets),
        "training_minutes": fold_training_minutes(
            timing, pauses, [(f, s) for f, s in pairs if s == args.seeds[0]], claims
        ),
        # every subject's value (its mean over seeds): target -> row -> metric -> subject -> value
        "per_subject": values,
        "machine": machine(),
        # the steps' wall time, less the pauses logged while other jobs had the machine
        "wall_hours": timing.hours(pauses),
        "step_hours": {k: timing.seconds(k, pauses) / 3600 for k in timing.intervals},
        # steps timed by the script's first layout (their pauses not separable): as recorded, not in wall_hours
        "unmeasured_step_hours": {k: v / 3600 for k, v in timing.before.items()},
        "command": command(script),
    }
    return summary


def offsets_kept(values: dict, targets: list[str]) -> dict:
    """How much of each person's own values a row keeps.

    Returns
    -------
    dict
        Per target and row: Pearson's r across subjects of the row's white-matter mean FA (and MD)
        with the noiseless target's (``fa_wm_r``, ``md_wm_r``, and ``n``): each person's own values
        kept (r near that of a rescan) or replaced by an average (r near 0).
    """
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


def declared_goals(
    values: dict, targets: list[str], folds: list[list[str]], cohort_rows: list[dict], cohort: dict, claims: Claims
) -> list[dict]:
    """The goals of the declared rows (``claims.primary``).

    One entry per target, goal, metric and unit:
    ``{"target", "name", "a", "b", "metric", "mean", "ci95", "unit", "n", "goal", "met"}``. For a ratio
    (``claims.declared_goals``) each subject's ratio a / b; unit ``fold``: the mean over each fold's
    held-out subjects, a Student-t interval over the folds (the training run is the unit of a claim
    that rests on training); unit ``subject``: a bootstrap interval over subjects beside it. For the
    cohort (``claims.effect_goals``, the primary rows' effect over the target platform's), unit ``fold``:
    each fold's harmonizers on the cohort, a t-interval over folds; unit ``subject``: all folds'
    harmonizers (a subject's value their mean), a bootstrap over the cohort's subjects. Met: the
    mean within the goal, and for ``msp_vs_rival`` the interval below 1 as well.

    Parameters
    ----------
    values, targets
        The summary's values and its targets (see the module's docstring).
    folds : list of list of str
        The held-out subjects of each fold.
    cohort_rows : list of dict
        The cohort's rows of every scored fold (:func:`gather`).
    cohort : dict
        Their summary (:func:`mrharmony.dmri.cohort.group_summary`).
    claims : Claims
        The declared rows and goals.

    Returns
    -------
    list of dict
    """
    from mrharmony.dmri.cohort import group_summary
    from mrharmony.stats import mean_ci, t_interval

    fold_of = {s: f for f, part in enumerate(folds) for s in part}
    out = []

    def entry(t, name, a, b, metric, cell, unit, goal):
        if isinstance(goal, tuple):
            met = goal[0] <= cell["mean"] <= goal[1]
        else:
            met = cell["mean"] <= goal and (name != "msp_vs_rival" or cell["ci95"][1] < 1.0)
        return {
            "target": t,
            "name": name,
            "a": a,
            "b": b,
            "metric": metric,
            "mean": cell["mean"],
            "ci95": list(cell["ci95"]),
            "unit": unit,
            "n": cell["n"],
            "goal": list(goal) if isinstance(goal, tuple) else goal,
            "met": bool(met),
        }

    for t in targets:
        rows = values.get(t, {})
        for name, a_key, b_key, metric, key, goal in claims.declared_goals:
            a = claims.primary[a_key]
            b = {"rescan": "rescan", "rival": continued_rival(rows)}.get(b_key) or claims.primary.get(b_key)
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
            out.append(
                entry(t, name, a, b, metric, {**mean_ci([ratio[s] for s in common]), "n": len(common)}, "subject", goal)
            )
        if not cohort_rows:
            continue
        folds_scored = sorted({r["fold"] for r in cohort_rows})
        per_fold = {f: group_summary([r for r in cohort_rows if r["fold"] == f]) for f in folds_scored}
        n_subjects = len({r["subject"] for r in cohort_rows})
        for key in ("learned", "msp", "practice"):
            a = claims.primary[key]
            for metric, ratio_key in claims.effect_goals:
                vals = [per_fold[f].get(t, {}).get(a, {}).get(ratio_key, {}).get("mean") for f in folds_scored]
                vals = [v for v in vals if v is not None]
                if vals:
                    out.append(
                        entry(
                            t, "effect_kept", a, "target_truth", metric, t_interval(vals), "fold", claims.effect_window
                        )
                    )
                pooled = cohort.get(t, {}).get(a, {}).get(ratio_key)
                if pooled is not None:
                    out.append(
                        entry(
                            t,
                            "effect_kept",
                            a,
                            "target_truth",
                            metric,
                            {**pooled, "n": n_subjects},
                            "subject",
                            claims.effect_window,
                        )
                    )
    return out


def best_row(candidates, have: dict) -> str | None:
    """The candidate row of lowest mean error among those scored on every subject.

    Parameters
    ----------
    candidates : iterable of str
        The rows to choose from.
    have : dict
        row -> {subject: error}; a row scored on fewer subjects than the most, such as one trained
        on the first fold only, is not a candidate.

    Returns
    -------
    str or None
        The chosen row; None when no candidate is scored on every subject.
    """
    everyone = max(len(v) for v in have.values())
    c = [r for r in candidates if r in have and len(have[r]) == everyone]
    return min(c, key=lambda r: np.mean(list(have[r].values()))) if c else None


def chosen_rows(rows: dict, key: str) -> tuple[dict, dict, str | None, str | None]:
    """What the goals, tests and headline compare on one target and metric.

    Parameters
    ----------
    rows : dict
        row -> metric -> {subject: value}, of one target.
    key : str
        The metric.

    Returns
    -------
    have : dict
        Every row's {subject: value}, floors included.
    methods : dict
        The same, floors left out.
    learned, non_learned : str or None
        The best learned and the best non-learned row among the methods (:func:`best_row`; None
        when none is scored).
    """
    have = {r: v[key] for r, v in rows.items() if key in v}
    methods = {r: h for r, h in have.items() if r not in FLOORS}
    if not methods:
        return have, methods, None, None
    return (
        have,
        methods,
        best_row([r for r in methods if not is_statistical(r)], methods),
        best_row([r for r in methods if is_statistical(r)], methods),
    )


def continued_rival(rows) -> str | None:
    """The row of MSP's compute-matched rival among ``rows``: its chosen first-stage network trained on.

    Returns
    -------
    str or None
        ``diqt_continued`` where MSP chose DIQT everywhere, :data:`CONTINUED` where its choice
        differed, None where no rival is scored.
    """
    if CONTINUED in rows:
        return CONTINUED
    named = [r for r in rows if r.endswith("_continued")]
    return named[0] if len(named) == 1 else None


def goal_ratios(values: dict, targets: list[str], claims: Claims) -> dict:
    """The "best of" ratios: the rows chosen after the run, judged against their goals.

    Parameters
    ----------
    values, targets
        The summary's values and its targets (see the module's docstring).
    claims : Claims
        Its ``best_of_goals``.

    Returns
    -------
    dict
        Per target, kind and metric, a mean over subjects of the subject's ratio with a 95%
        bootstrap interval over subjects (rows chosen by :func:`best_row`): on FA and MD against
        the noiseless truth, the best learned row over the best non-learned one, none or a
        statistical method (``learned_vs_statistical``); against the target scan, the best learned
        row over the ``rescan`` floor (``learned_vs_rescan``); on the SH features against the
        noiseless truth, MSP over the better of its compute-matched rival (:func:`continued_rival`)
        and the best single network (``msp_vs_rivals``). Each with its goal and whether it is
        ``met`` (for MSP, its interval below 1 as well, over at least ``MIN_INTERVAL_SUBJECTS``
        subjects).
    """
    from mrharmony.stats import MIN_INTERVAL_SUBJECTS, mean_ci

    def ratio(have: dict, a: str | None, b: str | None) -> dict | None:
        if a is None or b is None or a not in have or b not in have:
            return None
        common = sorted(set(have[a]) & set(have[b]))
        return {"a": a, "b": b, **mean_ci([have[a][s] / have[b][s] for s in common]), "n_subjects": len(common)}

    def judged(cell: dict, kind: str) -> dict:
        interval = cell["n_subjects"] >= MIN_INTERVAL_SUBJECTS and cell["ci95"][1] < 1.0
        goal = claims.best_of_goals[kind]
        met = cell["mean"] <= goal and (kind != "msp_vs_rivals" or interval)
        return {**cell, "goal": goal, "met": bool(met)}

    out: dict = {}
    for t in targets:
        rows, goals = values[t], {}  # type: dict, dict
        for key, kind in (
            ("fa_noiseless", "learned_vs_statistical"),
            ("md_noiseless", "learned_vs_statistical"),
            ("fa_scan", "learned_vs_rescan"),
            ("md_scan", "learned_vs_rescan"),
            ("sh_noiseless", "msp_vs_rivals"),
        ):
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


def cohort_goals(goals: dict, cohort: dict, claims: Claims) -> None:
    """Add the cohort's "best of" goal to ``goals``.

    Parameters
    ----------
    goals : dict
        :func:`goal_ratios`' result, changed in place: per target, ``cohort_effect`` with the
        patients-vs-controls effect ratio (``fa_effect_ratio``, ``md_effect_ratio``) of the learned
        row chosen for ``learned_vs_statistical`` on the same measure.
    cohort : dict
        The cohort's summary (:func:`mrharmony.dmri.cohort.group_summary`).
    claims : Claims
        Its ``cohort_goal``: ``met`` when the mean lies in it.
    """
    for t, by_kind in goals.items():
        for m in ("fa", "md"):
            row = by_kind.get("learned_vs_statistical", {}).get(f"{m}_noiseless", {}).get("a")
            cell = cohort.get(t, {}).get(row, {}).get(f"{m}_effect_ratio")
            if cell is not None:
                lo, hi = claims.cohort_goal
                by_kind.setdefault("cohort_effect", {})[f"{m}_effect_ratio"] = {
                    "a": row,
                    "b": "target_truth",
                    **cell,
                    "goal": list(claims.cohort_goal),
                    "met": bool(lo <= cell["mean"] <= hi),
                }


def headline(values: dict, targets: list[str]) -> dict:
    """The rows a user compares, per target and FA / MD measure.

    Returns
    -------
    dict
        target -> measure -> ``best_statistical`` and ``best_learned`` (by :func:`best_row`), shown
        beside ``none`` and the floors in the summary's tables.
    """
    out: dict = {}
    for t in targets:
        for key in ("fa_noiseless", "md_noiseless", "mk_noiseless", "fa_scan", "md_scan", "mk_scan"):
            _, methods, learned, non_learned = chosen_rows(values[t], key)
            if methods:
                out.setdefault(t, {})[key] = {"best_statistical": non_learned, "best_learned": learned}
    return out


def fold_training_minutes(
    timing: Timing, pauses: list[tuple[float, float]], pairs: list[tuple[int, int]], claims: Claims
) -> dict:
    """The training time of each fold against the training goal.

    Parameters
    ----------
    timing : Timing
        The run's step timing.
    pauses : list of (float, float)
        The pauses left out.
    pairs : list of (int, int)
        The first-seed (fold, seed) pairs.
    claims : Claims
        Its ``training_goal_minutes``.

    Returns
    -------
    dict
        ``per_fold``: the minutes of each fold's training step (every row of the fold trained or
        fitted) where it was timed by intervals; ``not_timed``: the folds whose step was not;
        ``goal``; ``met``, judged on the timed folds.
    """

    def timed(f: int, s: int) -> bool:
        key = f"fold-{f}/seed-{s}/train"
        return key in timing.intervals and key not in timing.before

    per_fold = {f"fold-{f}": timing.seconds(f"fold-{f}/seed-{s}/train", pauses) / 60 for f, s in pairs if timed(f, s)}
    return {
        "per_fold": per_fold,
        "not_timed": [f"fold-{f}" for f, s in pairs if not timed(f, s)],
        "goal": claims.training_goal_minutes,
        "met": bool(per_fold) and max(per_fold.values()) <= claims.training_goal_minutes,
    }


def subject_tests(values: dict, targets: list[str]) -> list[dict]:
    """Paired Wilcoxon tests across subjects of the claims the goals are about.

    Per target: MSP against its compute-matched rival, its own first stage and the best single
    network (SH against the noiseless truth); the best learned row against the best non-learned
    one (FA and MD against the noiseless truth) and against the rescan floor (FA and MD against the
    target scan); on a target of two shells or more, the same two for MK. With ten subjects the smallest two-sided p is 2 / 2^10, so the family is kept to
    these seven tests per target for a Bonferroni correction that can still reach 0.05.

    Returns
    -------
    list of dict
        One test each: target, metric, rows ``a`` and ``b``, and the test's numbers
        (:func:`mrharmony.stats.paired_test`; the Bonferroni correction is the caller's).
    """
    from mrharmony.stats import paired_test

    tests = []
    for t in targets:
        rows = values[t]
        for key in ("sh_noiseless", "fa_noiseless", "md_noiseless", "mk_noiseless", "fa_scan", "md_scan", "mk_scan"):
            have, methods, learned, non_learned = chosen_rows(rows, key)
            if not methods:
                continue
            pairs: list[tuple[str | None, str | None]]
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


def markdown(summary: dict, *, script: str = "benchmarks/dmri.py") -> str:
    """The summary as Markdown: the headline, a table per target, the spread over seeds, the goals
    of the declared rows (``script``: where they were declared), each person's own values, the
    best-of goals, the training time, the cohort and the paired tests."""
    from mrharmony.stats import MIN_INTERVAL_SUBJECTS

    def cell(m):
        if m is None:
            return ""
        if m.get("n_subjects", MIN_INTERVAL_SUBJECTS) < MIN_INTERVAL_SUBJECTS:  # two values bound nothing
            return f"{m['mean']:.4g} (n={m['n_subjects']})"
        return f"{m['mean']:.4g} [{m['ci95'][0]:.4g}, {m['ci95'][1]:.4g}]"

    lines = [
        f"# dMRI benchmark, budget `{summary['budget']}`",
        "",
        *(
            [f"Partial: the folds and seeds scored so far ({', '.join(summary['scored'])}).", ""]
            if summary.get("partial")
            else []
        ),
        f"Command: `{summary['command']}`; machine {summary['machine']['node']} ({summary['machine']['cpus']} "
        f"cores); {summary['wall_hours']:.2f} h of wall time in all, less the pauses logged while other jobs "
        f"had the machine"
        + (
            f" (steps timed before intervals were recorded, not counted: {', '.join(summary['unmeasured_step_hours'])})"
            if summary.get("unmeasured_step_hours")
            else ""
        )
        + ".",
        "",
        f"{len(summary['subjects'])} traveling heads, {summary['folds']} folds (every subject held out once), "
        f"seeds {summary['seeds']} (the networks of the MSP claim and diqt_tuned; the others seed {summary['seeds'][0]})"
        + (
            f" on the first {summary['seed_folds']} fold(s), seed {summary['seeds'][0]} on the others"
            if summary.get("seed_folds")
            else ""
        )
        + ". "
        "Mean over subjects [95% bootstrap interval over subjects]; a subject's value is its mean over seeds.",
        "",
    ]
    if summary.get("headline"):
        lines += [
            "## FA and MD at a glance",
            "",
            (
                "Mean absolute error over the brain (FA; MD in mm^2/s), against the noiseless target and against "
                "the target scan: no harmonization, the best non-learned row (none or a statistical method) and the "
                "best learned row (by their mean among the rows scored on every subject), and the floors."
            ),
            "",
            "| target | measure | none | best non-learned | best learned | rescan | oracle |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for t, by_key in summary["headline"].items():
            rows = summary["targets"][t]
            for key, chosen in by_key.items():
                named = [
                    f"{cell(rows[r].get(key))} {r}" if r else ""
                    for r in (chosen["best_statistical"], chosen["best_learned"])
                ]
                lines.append(
                    f"| {t} | {key} | {cell(rows.get('none', {}).get(key))} | {named[0]} | {named[1]} | "
                    f"{cell(rows.get('rescan', {}).get(key))} | {cell(rows.get('oracle', {}).get(key))} |"
                )
        lines.append("")
    every_key = [k for k in METRICS if k not in OFFSETS]
    every_key += sorted(
        {k for rows in summary["targets"].values() for e in rows.values() for k in e if k.startswith(SHELL_METRICS)}
    )

    def present(rows) -> list[str]:  # the metrics the rows have (MK and per-shell RISH: multi-shell targets only)
        return [k for k in every_key if any(k in e for e in rows)]

    for t, rows in summary["targets"].items():
        keys = present(rows.values())
        lines += [
            f"## {t}",
            "",
            "| row | subjects | " + " | ".join(keys) + " | FA vs scan / rescan | MD vs scan / rescan |",
            "| --- | --- |" + " --- |" * (len(keys) + 2),
        ]
        for row, e in rows.items():
            n = max((m.get("n_subjects", 0) for m in e.values()), default=0)
            lines.append(
                f"| {row} | {n} | "
                + " | ".join(cell(e.get(k)) for k in keys)
                + f" | {cell(e.get('fa_scan_vs_rescan'))} | {cell(e.get('md_scan_vs_rescan'))} |"
            )
        lines.append("")
    keys = present([e for rows in summary["targets"].values() for e in rows.values()])
    spread = [
        (t, row, e)
        for t, rows in summary["targets"].items()
        for row, e in rows.items()
        if any("seed_sd" in e.get(k, {}) for k in keys)
    ]
    if spread:
        lines += [
            "## Spread over seeds",
            "",
            (
                "Standard deviation over the training seeds of a row's mean over the subjects trained with every "
                "seed (rows trained with several seeds)."
            ),
            "",
            "| target | row | " + " | ".join(keys) + " |",
            "| --- | --- |" + " --- |" * len(keys),
        ]
        for t, row, e in spread:
            lines.append(
                f"| {t} | {row} | "
                + " | ".join(f"{e[k]['seed_sd']:.2g}" if "seed_sd" in e.get(k, {}) else "" for k in keys)
                + " |"
            )
        lines.append("")
    if summary.get("goals"):
        prim = summary.get("primary", {})
        lines += [
            "## Goals of the declared rows",
            "",
            (
                f"Rows declared in {script} before the run (its first invocation ran commit "
                f"{(prim.get('invocations') or [{}])[0].get('commit') or 'unknown'}): "
                + ", ".join(f"{k} `{v}`" for k, v in prim.get("rows", {}).items())
                + ". The primary learned row is, per fold and target, the candidate ("
                + ", ".join(prim.get("recipes", []))
                + ") of lower validation loss on a validation subject. "
                "Unit fold: the mean over each fold's held-out subjects of a subject's ratio, a Student-t "
                "interval over folds; unit subject: a bootstrap interval over subjects. effect_kept: the "
                "harmonized raw patients-minus-controls difference over the target platform's."
            ),
            "",
            "| target | goal | metric | a / b | unit | n | mean [95% interval] | goal | met |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for g in summary["goals"]:
            goal = g["goal"]
            goal = f"{goal[0]}-{goal[1]}" if isinstance(goal, list) else f"<= {goal}"
            lines.append(
                f"| {g['target']} | {g['name']} | {g['metric']} | {g['a']} / {g['b']} | {g['unit']} | "
                f"{g['n']} | {g['mean']:.4g} [{g['ci95'][0]:.4g}, {g['ci95'][1]:.4g}] | {goal} | "
                f"{'yes' if g['met'] else 'no'} |"
            )
        lines.append("")
    if summary.get("offsets_kept"):
        lines += [
            "## Each person's own values",
            "",
            (
                "Pearson's r across held-out subjects of the white-matter mean FA and MD after harmonization "
                "with the noiseless target's (the simulator gives every subject its own tissue offsets): near the "
                "rescan's r, each person's values are kept; near 0, replaced by an average."
            ),
            "",
            "| target | row | n | FA r | MD r |",
            "| --- | --- | --- | --- | --- |",
        ]
        for t, rows in summary["offsets_kept"].items():
            for row, c in rows.items():
                cells = ["" if c.get(k) is None else f"{c[k]:.3f}" for k in ("fa_wm_r", "md_wm_r")]
                lines.append(f"| {t} | {row} | {c['n']} | {cells[0]} | {cells[1]} |")
        lines.append("")
    if summary.get("best_of"):
        lines += [
            "## Best of: ratios of the rows chosen after the run",
            "",
            (
                "Not the claims (those are the declared rows above). learned_vs_statistical: the best learned "
                "row over the best non-learned row, none or a statistical method (noiseless truth); "
                "learned_vs_rescan: the best learned row over the rescan floor (target scan); msp_vs_rivals: MSP "
                "over the better of its compute-matched rival (its first stage trained on) and the best single network (SH, "
                "noiseless truth). Rows chosen "
                "by their mean among those scored on every subject; cohort_effect: the patients-vs-controls "
                "effect after harmonization with the learned row chosen on the same measure, over the effect on the "
                "target platform. Met: the mean within the goal (and, for msp_vs_rivals, the interval below 1)."
            ),
            "",
            "| target | comparison | metric | a / b | ratio [95% interval] | goal | met |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
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
        lines += [
            "Training of every row of one fold (first seed; training and fitting, timed by intervals, pauses "
            "left out): "
            + ", ".join(f"{k} {v:.1f} min" for k, v in tm["per_fold"].items())
            + (f" ({', '.join(tm['not_timed'])} not timed by intervals)" if tm.get("not_timed") else "")
            + f"; goal at most {tm['goal']:.0f} min: {'met' if tm['met'] else 'not met'}"
            + (" on the timed folds." if tm.get("not_timed") else "."),
            "",
        ]
    if summary["cohort"]:
        lines += [
            f"## Cohort: patients vs controls ({summary['cohort_subjects']} subjects)",
            "",
            (
                "Cohen's d (controls minus patients) of regional FA and MD, its ratio to the same effect on the "
                "target scans (1: the effect kept), and the bias left in the regional values (harmonized minus the "
                "target scan)."
            ),
            "",
        ]
        for t, rows in summary["cohort"].items():
            lines += [
                f"### {t}",
                "",
                "| row | FA d | FA d / target's | MD d | MD d / target's | FA bias | MD bias |",
                "| --- | --- | --- | --- | --- | --- | --- |",
            ]
            for row, e in rows.items():
                lines.append(
                    f"| {row} | {cell(e.get('fa_effect_d'))} | {cell(e.get('fa_effect_ratio'))} | "
                    f"{cell(e.get('md_effect_d'))} | {cell(e.get('md_effect_ratio'))} | "
                    f"{cell(e.get('fa_bias'))} | {cell(e.get('md_bias'))} |"
                )
            lines.append("")
    lines += [
        "## Paired tests across subjects",
        "",
        (
            "Wilcoxon signed-rank, two-sided; median difference a - b; Bonferroni over every test listed (the claims "
            "only: with 10 subjects the smallest two-sided p is 2 / 2^10)."
        ),
        "",
        "| target | metric | a | b | n | median a - b | p | p (Bonferroni) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for x in summary["tests"]:
        lines.append(
            f"| {x['target']} | {x['metric']} | {x['a']} | {x['b']} | {x['n']} | "
            f"{x['median_difference']:.3g} | {x['p']:.3g} | {x['p_bonferroni']:.3g} |"
        )
    return "\n".join(lines) + "\n"
