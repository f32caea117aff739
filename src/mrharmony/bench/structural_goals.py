"""The claims of the structural benchmark (``benchmarks/structural.py``), declared before it runs,
and their goals judged on its rows.

The declared rows are :data:`DECLARED`: the paper's HAIL and the exactly invertible IHF-Harmony
(its residual design);
every goal is judged on them, never on the best of several learned rows. Per modality and group
of site pairs (``seen``, ``unseen``), each goal is a mean over test subjects of a per-subject
value (a subject's value is its mean over the group's site pairs) with a 95% bootstrap interval
over subjects:

* ``learned_vs_nyul_ssim``: SSIM against the truth, the learned row minus the better (by its mean)
  of Nyul histogram matching with and without N4 (:data:`NYUL_ROWS`); goal >= 0;
* ``volume_agreement``: the relative GM (WM) volume difference to the same person's image at the
  target site, the learned row's over the better Nyul row's; goal <= 0.5;
* ``volume_vs_rescan``: the same difference, the learned row's over the rescan's (the target
  site's second session, the floor); goal <= 1.5;
* for the IHF row, ``ihf_texture``: the power of its change at the 2-voxel period over the
  truth's; goal <= 1.2; and ``ihf_roundtrip``: the largest relative error of an input restored
  from its harmonized image, over every pair (unit ``pair``); goal < 1e-5.

A declared row may have further training runs, rows named ``<row>_seed<k>`` (:func:`runs_of`): a
subject's value is then its mean over the runs, and each goal carries beside its interval over
subjects a Student-t interval over the runs (``runs``: each run's goal value, judged alone).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

#: the rows every goal is judged on, by role: named in code before the benchmark runs (the
#: invertible IHF-Harmony is the residual design, which has no squeeze grid to leave a texture)
DECLARED: dict[str, str] = {"hail": "hail", "ihf": "ihf_residual"}
#: histogram matching as practice runs it, without and with N4 bias-field correction
NYUL_ROWS: tuple[str, ...] = ("nyul", "n4_nyul")
#: each goal's limit and direction
GOALS: dict[str, tuple[str, float]] = {
    "learned_vs_nyul_ssim": (">=", 0.0),
    "volume_agreement": ("<=", 0.5),
    "volume_vs_rescan": ("<=", 1.5),
    "ihf_texture": ("<=", 1.2),
    "ihf_roundtrip": ("<", 1e-5),
}
TISSUE_KEYS = {"gm": "target_vd_gm", "wm": "target_vd_wm"}


def per_subject(rows: list[dict], method: str | tuple[str, ...], metric: str) -> dict[str, float]:
    """Each subject's mean of ``metric`` over its rows of ``method`` (rows of one modality and group);
    for several methods (the training runs of one row), the mean of each one's, over the subjects
    every one of them has."""
    if not isinstance(method, str):
        each = [per_subject(rows, m, metric) for m in method]
        common = set.intersection(*(set(e) for e in each)) if each else set()
        return {s: float(np.mean([e[s] for e in each])) for s in sorted(common)}
    out: dict[str, list[float]] = {}
    for r in rows:
        if r["method"] == method and metric in r and np.isfinite(r[metric]):
            out.setdefault(r["subject"], []).append(float(r[metric]))
    return {s: float(np.mean(v)) for s, v in out.items()}


def runs_of(rows: list[dict], row: str) -> tuple[str, ...]:
    """The training runs of a declared row among ``rows``: the row itself and its ``<row>_seed<k>``
    rows, in the order of k."""
    pattern = re.compile(rf"{re.escape(row)}_seed(\d+)")
    names = {r["method"] for r in rows}
    further = sorted((int(m.group(1)), n) for n in names if (m := pattern.fullmatch(n)))
    return ((row,) if row in names else ()) + tuple(n for _, n in further)


def _met(name: str, value: float) -> bool:
    op, limit = GOALS[name]
    return {"<=": value <= limit, ">=": value >= limit, "<": value < limit}[op]


def _entry(modality, group, name, a, b, metric, values: list[float], unit: str) -> dict:
    from mrharmony.stats import mean_ci

    ci = mean_ci(values)
    op, limit = GOALS[name]
    return {
        "modality": modality,
        "group": group,
        "name": name,
        "a": a,
        "b": b,
        "metric": metric,
        "mean": ci["mean"],
        "ci95": ci["ci95"],
        "unit": unit,
        "n": len(values),
        "goal": f"{op} {limit:g}",
        "met": bool(_met(name, ci["mean"])),
    }


def better(rows: list[dict], candidates, metric: str, *, higher: bool) -> str | None:
    """The candidate row with the better mean of ``metric`` over subjects (None: none present)."""
    means = {c: np.mean(list(v.values())) for c in candidates if (v := per_subject(rows, c, metric))}
    if not means:
        return None
    return max(means, key=lambda c: means[c]) if higher else min(means, key=lambda c: means[c])


def structural_goals(rows: list[dict], declared: Mapping[str, str] = DECLARED) -> list[dict]:
    """The goals of the module docstring, judged on an evaluation's rows.

    Parameters
    ----------
    rows
        The rows of :func:`mrharmony.structural.evaluate.compare_harmonizers` (with the ``truth``
        and ``rescan`` rows).
    declared
        The declared rows by role (``hail``, ``ihf``).

    Returns
    -------
    list of dict
        One entry per modality, group, goal and declared row present: ``modality``, ``group``,
        ``name``, ``a`` (the declared row), ``b`` (what it is compared with), ``metric``, ``mean``,
        ``ci95``, ``unit`` (``subject`` or ``pair``), ``n``, ``goal`` and ``met``.
    """
    from mrharmony.stats import t_interval

    goals: list[dict] = []
    for modality, group in sorted({(r["modality"], r["group"]) for r in rows}):
        sel = [r for r in rows if r["modality"] == modality and r["group"] == group]
        for role, learned in declared.items():
            runs = runs_of(sel, learned)
            if not runs:
                continue
            for entry in _role_goals(sel, modality, group, role, learned, runs):
                if len(runs) > 1 and entry["name"] != "ihf_roundtrip":
                    alone = [
                        e["mean"]
                        for run in runs
                        for e in _role_goals(sel, modality, group, role, learned, (run,))
                        if (e["name"], e["metric"]) == (entry["name"], entry["metric"])
                    ]
                    entry["runs"] = t_interval(alone)
                goals.append(entry)
    return goals


def _role_goals(sel: list[dict], modality, group, role: str, learned: str, runs: tuple[str, ...]) -> list[dict]:
    """The goals of one declared row (``learned``, its values the mean over ``runs``) in the rows
    ``sel`` of one modality and group."""
    goals: list[dict] = []
    mine = per_subject(sel, runs, "ssim")
    if not mine:
        return goals
    nyul = better(sel, NYUL_ROWS, "ssim", higher=True)
    if nyul is not None:
        theirs = per_subject(sel, nyul, "ssim")
        common = [s for s in mine if s in theirs]
        values = [mine[s] - theirs[s] for s in common]
        goals.append(_entry(modality, group, "learned_vs_nyul_ssim", learned, nyul, "ssim", values, "subject"))
    for key in TISSUE_KEYS.values():
        a = per_subject(sel, runs, key)
        for name, b in (
            ("volume_agreement", better(sel, NYUL_ROWS, key, higher=False)),
            ("volume_vs_rescan", "rescan"),
        ):
            ref = per_subject(sel, b, key) if b is not None else {}
            common = [s for s in a if ref.get(s, 0) > 0]
            if common:
                values = [a[s] / ref[s] for s in common]
                goals.append(_entry(modality, group, name, learned, b, key, values, "subject"))
    if role == "ihf":
        texture = per_subject(sel, runs, "texture_p2")
        if texture:
            goals.append(
                _entry(
                    modality, group, "ihf_texture", learned, "truth", "texture_p2", list(texture.values()), "subject"
                )
            )
        trips = [float(r["roundtrip"]) for r in sel if r["method"] in runs and "roundtrip" in r]
        if trips:
            entry = _entry(modality, group, "ihf_roundtrip", learned, "input", "roundtrip", trips, "pair")
            entry.update(
                mean=max(trips),
                ci95=[min(trips), max(trips)],
                statistic="maximum over pairs (the interval: their range)",
                met=bool(_met("ihf_roundtrip", max(trips))),
            )
            goals.append(entry)
    return goals


def goals_markdown(goals: list[dict]) -> str:
    """The goals as a Markdown table."""
    lines = [
        "| modality | pairs | goal | a | b | metric | mean [95% interval] | unit (n) | over training runs (n) "
        "| target | met |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for g in goals:
        lo, hi = g["ci95"]
        fmt = ".2e" if g["name"] == "ihf_roundtrip" else ".3f"
        runs = g.get("runs")
        over = f"[{runs['ci95'][0]:{fmt}}, {runs['ci95'][1]:{fmt}}] ({runs['n']})" if runs else ""
        lines.append(
            f"| {g['modality']} | {g['group']} | {g['name']} | {g['a']} | {g['b']} | {g['metric']} | "
            f"{g['mean']:{fmt}} [{lo:{fmt}}, {hi:{fmt}}] | {g['unit']} ({g['n']}) | {over} | {g['goal']} | "
            f"{'yes' if g['met'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"
