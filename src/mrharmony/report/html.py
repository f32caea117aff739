"""``mrharmony report RUN_DIR ... [--structural EVAL_DIR] --out report.html``: one self-contained
HTML file, pictures first and tables second, as a reader takes it in.

dMRI (:mod:`mrharmony.report.dmri`): at the top, per target, how far each measure (FA, MD)
still is from the target scan after the best statistical and the best learned method, against
no harmonization and the rescan floor, in sentences, a table and a bar chart; then one held-out
subject's maps (input, methods, target scan, noiseless target; one window per row), Bland-Altman
plots of regional FA and MD against the target scan, the training curves; the whole-volume
errors, the MSP paper's patch table with its Wilcoxon tests and its Fig. 3 in collapsed
sections. Structural (:mod:`mrharmony.report.structural`): the same order for a structural
evaluation. Images are embedded (base64 PNG) and nothing is loaded from elsewhere, so the file
can be sent as it is.
"""

from __future__ import annotations

import html
import os
import time
from pathlib import Path

import numpy as np

from mrharmony import __version__
from mrharmony.dmri.tables import format_cell
from mrharmony.errors import InputError
from mrharmony.io import check_new_file, write_text
from mrharmony.report.format import img_tag, interval_note, number, readable_p

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1180px;margin:2em auto;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}tr:nth-child(even){background:#f7f7f7}td.best{font-weight:bold;background:#e6f2e6}
.note{color:#555;font-size:.9em}img{max-width:100%}code{background:#f2f2f2;padding:0 .2em}
h3{font-size:1.05em;margin-top:1.6em}ul.lead li{margin:.3em 0}table.glance td{vertical-align:top}
.ci{color:#666;font-size:.85em}.gain{color:#1a7f37;font-size:.85em}.loss{color:#b3261e;font-size:.85em}
.method{font-family:monospace;font-size:.85em;color:#444}details{margin:.8em 0}
summary{cursor:pointer;font-weight:600;padding:.3em 0}
"""


def _table(ev) -> str:
    from mrharmony.dmri.tables import table_rows

    head = "".join(f"<th>{html.escape(t)}</th>" for t in ev.targets)
    rows = []
    for m, params, cells in table_rows(ev):
        tds = "".join(
            "<td></td>" if c is None else ('<td class="best">' if c[1] else "<td>") + c[0] + "</td>" for c in cells
        )
        rows.append(f"<tr><td>{html.escape(m)}</td><td>{params}</td>{tds}</tr>")
    return f"<table><tr><th>method</th><th>parameters</th>{head}</tr>{''.join(rows)}</table>"


def _tests(ev) -> str:
    from mrharmony.dmri.tables import tests_against_best

    rows = [
        f"<tr><td>{html.escape(t)}</td><td>{html.escape(r['a'])}</td><td>{html.escape(r['b'])}</td>"
        f"<td>{r['median_difference']:+.4f}</td><td title='{r['p']:.3g}'>{readable_p(r['p'])}</td>"
        f"<td title='{r['p_bonferroni']:.3g}'>{readable_p(r['p_bonferroni'])}</td></tr>"
        for t, _, r in tests_against_best(ev)
    ]
    total = sum(len(v) for v in ev.tests.values())
    return (
        f"<p class='note'>The best method of each target against every other; corrected over all {total} "
        "pairwise tests of the table.</p><table><tr><th>target</th><th>best</th><th>other</th>"
        f"<th>median best &minus; other</th><th>p</th><th>p (Bonferroni)</th></tr>{''.join(rows)}</table>"
    )


def _volume_table(ev) -> str:
    if not ev.volume_errors:
        return "<p class='note'>Whole-volume errors are computed for held-out subjects only (subject split).</p>"
    noiseless = any("fa_mae_noiseless" in r for r in ev.volume_errors)

    def cells(r, suffix=""):
        return (
            f"<td>{format_cell(r.get('sh_rel' + suffix))}</td><td>{r['fa_mae' + suffix]:.4f}</td>"
            f"<td>{r['md_mae' + suffix]:.2e}</td>"
        )

    rows = "".join(
        f"<tr><td>{html.escape(r['method'])}</td><td>{r['subject']}</td><td>{r['target']}</td>"
        f"{cells(r)}{cells(r, '_noiseless') if noiseless else ''}</tr>"
        for r in ev.volume_errors
    )
    head = "<th>SH rel</th><th>FA MAE</th><th>MD MAE (mm&sup2;/s)</th>"
    second = head.replace("</th>", " vs noiseless</th>") if noiseless else ""
    return (
        f"<table><tr><th>method</th><th>subject</th><th>target</th>{head}{second}</tr>{rows}</table>"
        "<p class='note'>FA and MD of every row and of the target scan come through one path (the features' "
        "signal on the target scan's gradient table, then a DTI fit), so a perfect prediction scores 0; "
        "<code>oracle</code> (simulated data): the noiseless target through the same path, the floor that the "
        "target scan's own noise sets.</p>"
    )


def _glance_cell(c: dict | None, none: dict | None = None) -> str:
    if c is None:
        return "<td></td>"
    text = number(c["mean"])
    if c.get("ci95"):
        text += f" <span class='ci'>[{number(c['ci95'][0])}, {number(c['ci95'][1])}]</span>"
    if none is not None and none["mean"] > 0:
        change = 100 * (c["mean"] / none["mean"] - 1)
        text += f"<br><span class='{'gain' if change < 0 else 'loss'}'>{change:+.0f}% vs none</span>"
    if "method" in c:
        text += f"<br><span class='method'>{html.escape(c['method'])}</span>"
    return f"<td>{text}</td>"


def _dmri_glance(ev) -> str:
    from mrharmony.report.dmri import MEASURES, glance

    g = glance(ev)
    if not g:
        return "<p class='note'>No whole-volume errors: the runs were split by patch, so no subject was held out.</p>"
    names = dict(MEASURES)
    lines, rows = [], []
    n_subjects = max(c["none"]["n"] for per in g.values() for c in per.values())
    for t, per in g.items():
        fa = per.get("fa_mae")
        if fa and "learned" in fa:
            best, none = fa["learned"], fa["none"]
            text = (
                f"<b>{html.escape(t)}</b>: the best learned method (<code>{html.escape(best['method'])}</code>) "
                f"leaves an FA difference to the target scan of {number(best['mean'])}, "
                f"{100 * (best['mean'] / none['mean'] - 1):+.0f}% against no harmonization ({number(none['mean'])})"
            )
            if "statistical" in fa:
                text += (
                    f"; the best statistical method (<code>{html.escape(fa['statistical']['method'])}</code>) "
                    f"{number(fa['statistical']['mean'])}"
                )
            if "rescan" in fa:
                text += f"; a second session on the target scanner differs by {number(fa['rescan']['mean'])}"
            lines.append(f"<li>{text}.</li>")
        for key, c in per.items():
            rows.append(
                f"<tr><td>{html.escape(t)}</td><td>{names[key]}</td>{_glance_cell(c['none'])}"
                f"{_glance_cell(c.get('statistical'), c['none'])}{_glance_cell(c.get('learned'), c['none'])}"
                f"{_glance_cell(c.get('rescan'))}{_glance_cell(c.get('oracle'))}</tr>"
            )
    interval = interval_note(n_subjects, "held-out")
    return (
        f"<ul class='lead'>{''.join(lines)}</ul>"
        "<table class='glance'><tr><th>target</th><th>mean absolute difference</th><th>no harmonization</th>"
        "<th>best statistical</th><th>best learned</th><th>rescan floor</th><th>oracle</th></tr>"
        f"{''.join(rows)}</table><p class='note'>Mean over voxels of the held-out subjects' brains, then over "
        f"subjects ({interval}). MD in mm&sup2;/s. <i>rescan</i>: a second session of the subject on the target "
        "scanner (what harmonization can at best reach); <i>oracle</i>: the noiseless target (the target scan's "
        "own noise). Every row's FA and MD come through one path, so a perfect prediction scores 0.</p>"
    )


def _dmri_bars(ev) -> str:
    from mrharmony.report.dmri import FLOORS, MEASURES, learned_rows
    from mrharmony.report.figures import error_bars

    learned = set(learned_rows(ev))
    values: dict = {}
    for t in ev.targets:
        for key, _ in MEASURES[:2]:
            by_method: dict = {}
            for r in ev.volume_errors:
                if r["target"] == t and r.get(key) is not None:
                    by_method.setdefault(r["method"], []).append(r[key])
            kinds = {
                m: "floor" if m in FLOORS else "none" if m == "none" else "learned" if m in learned else "statistical"
                for m in by_method
            }
            if by_method:
                values.setdefault(t, {})[key] = [
                    (m, kinds[m], float(np.mean(v))) for m, v in by_method.items() if m != "oracle"
                ]
    if not values:
        return ""
    return img_tag(error_bars(values, dict(MEASURES[:2])), "FA and MD differences per method and target")


def build_report(
    runs: list[str | os.PathLike],
    out: str | os.PathLike,
    *,
    evaluation=None,
    target: str | None = None,
    subject: str | None = None,
    structural=None,
    force: bool = False,
    quiet: bool = False,
) -> Path:
    """Write the HTML report of the dMRI ``runs`` (evaluated unless ``evaluation`` is given) and,
    with ``structural`` (a structural evaluation or its folder), of the structural wing, to ``out``.
    ``target`` and ``subject`` pick the dMRI pictures' (default connectom_sa and the first held-out
    subject)."""
    out = check_new_file(out, force=force)
    if out.parent and not out.parent.exists():
        raise InputError("cannot be written: its folder does not exist.", out)
    if not runs and structural is None:
        raise InputError("name dMRI runs or a structural evaluation to report on.")
    sections, provenance = [], []
    from mrharmony.dmri.loading import learned_from_study, load_harmonizer

    loaded = [load_harmonizer(r) for r in runs]
    study = [(r, h) for r, h in zip(runs, loaded) if learned_from_study(h)]
    runs = [r for r, h in zip(runs, loaded) if not learned_from_study(h)]
    if runs:
        body, prov = _dmri_sections(runs, out, evaluation=evaluation, target=target, subject=subject, quiet=quiet)
        sections.append(body)
        provenance.append(prov)
    if study:
        from mrharmony.report.study import study_sections

        body, prov = study_sections([r for r, _ in study], [h for _, h in study], out)
        sections.append(body)
        provenance.append(prov)
    if structural is not None:
        from mrharmony.report.structural import structural_sections

        body, prov = structural_sections(structural, out)
        sections.append(body)
        provenance.append(prov)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>mrharmony report</title><style>{CSS}</style>"
        f"</head><body><h1>mrharmony report</h1><p class='note'>Generated {time.strftime('%Y-%m-%d %H:%M')} by "
        f"mrharmony {__version__}. Pictures first, tables in the collapsed sections below them.</p>"
        f"{''.join(sections)}<h2>Provenance</h2>{''.join(provenance)}"
        "<p class='note'>Every number above is recomputed by <code>mrharmony dmri evaluate</code> (dMRI runs of "
        "traveling heads) and <code>mrharmony structural evaluate</code> on the same runs, or read from the runs' "
        "own records (runs learned from a study).</p></body></html>"
    )
    write_text(out, page)
    return out


def _dmri_sections(runs, out: Path, *, evaluation, target, subject, quiet) -> tuple[str, str]:
    from mrharmony.dmri.evaluate import evaluate, table_rows_of
    from mrharmony.report.dmri import (
        FLOORS,
        HeldOutSubject,
        chosen_methods,
        learned_rows,
        pictured_methods,
        regional_agreement,
        subject_maps,
    )
    from mrharmony.report.figures import bland_altman, map_grid, training_curves

    ev = evaluation or evaluate(runs, quiet=quiet)
    rows = table_rows_of(runs)
    ds = rows.dataset
    hs = rows.harmonizers
    labels = {}
    for r, h in zip(runs, hs):
        if (Path(r) / "metrics.csv").is_file():  # trained runs (statistical ones are fitted in one pass)
            labels[f"{h.name} ({', '.join(h.targets)})"] = Path(r)
    target = target or ("connectom_sa" if "connectom_sa" in ev.targets else ev.targets[-1])
    if target not in ev.targets:
        raise InputError(f"the runs predict no target {target!r} (they predict {', '.join(ev.targets)}).")
    subject = subject or (ev.test_subjects[0] if ev.test_subjects else ds.subjects[-1])
    s = ev.summary()
    split = (
        "by patch (the MSP paper's 90/10 split: test patches come from subjects seen in training)"
        if ev.split == "patch"
        else f"by held-out subject ({', '.join(ev.test_subjects)}, never seen in training)"
    )

    def shown(path) -> str:  # paths relative to the report, so that a moved report folder stays right
        return os.path.relpath(Path(path).resolve(), out.resolve().parent)

    from mrharmony.engine.card import card_hash, card_of

    def about(h) -> str:
        card = card_of(h.meta or {})
        what = (
            f"fitted on {', '.join(h.meta.get('fit_subjects', []))}"
            if "parameter_count" not in h.meta
            else f"{h.meta['parameter_count']:,} parameters, best epoch {h.meta.get('best_epoch')}"
        )
        return f"{what}; model card {card.get('variant') or card.get('method')}, SHA-256 {card_hash(card)[:12]}"

    pictures = ""
    held = HeldOutSubject(rows, subject, ev.references.get(subject))
    if ev.test_subjects:  # pictures of a subject no method saw in training
        maps, mask = subject_maps(held, target, pictured_methods(ev, target))
        ref = "noiseless target" if "noiseless target" in maps else "target scan"
        pictures += (
            f"<h3>Held-out subject {html.escape(subject)} on {html.escape(target)}</h3>"
            f"<p class='note'>One axial slice; the same window along each row. The last row is each column's "
            f"FA minus the {ref}'s (red: higher).</p>"
            + img_tag(map_grid(maps, mask, title=f"{subject}, {target}", reference=ref), "maps")
        )
        learned = set(learned_rows(ev))
        kinds = {
            "input": "none",
            "rescan": "floor",
            **{m: "learned" if m in learned else "statistical" for m in ev.methods if m not in FLOORS},
        }
        agreement = {t: regional_agreement(held, t, chosen_methods(ev, t)) for t in ev.targets}
        pictures += (
            "<h3>Regional FA and MD against the target scan (Bland-Altman)</h3><p class='note'>Means over "
            f"cubes of about 10 mm inside the brain of {html.escape(subject)} (up to 150 per target, drawn at "
            "random with a fixed seed), each method's minus the target "
            "scan's; <i>input</i> is no harmonization, <i>rescan</i> a second session on the target scanner."
            "</p>" + img_tag(bland_altman(agreement, kinds), "Bland-Altman plots")
        )
    curves = img_tag(training_curves(labels), "training curves") if labels else ""
    runs_list = "".join(
        f"<li><code>{html.escape(shown(r))}</code>: {html.escape(h.name)}, "
        f"targets {html.escape(', '.join(h.targets))}, {html.escape(about(h))}</li>"
        for r, h in zip(runs, hs)
        if h is not rows.identity
    )
    body = f"""
<h2>dMRI: do FA and MD agree with the target scanner after harmonization?</h2>
<p class="note">Dataset <code>{html.escape(shown(ds.root))}</code> ({len(ds.subjects)} subjects; input platform
{html.escape(ds.input_platform.name)}); split {html.escape(split)}.</p>
{_dmri_glance(ev)}
{_dmri_bars(ev)}
{pictures}
<h3>Training curves</h3>
<p class="note">Validation loss is that of the final predictions; training loss sums every supervised output
(both stages of MSP, every stage of CPM), so it sits above it for those.</p>
{curves}
<details><summary>Whole-volume errors per subject</summary>{_volume_table(ev)}</details>
<details><summary>Patch MSE (Table 1 of the MSP paper) and paired Wilcoxon tests</summary>
<p>Mean (std) of the MSE in normalized SH space (every row's coefficients and the target scan's on one fixed
scale per target platform) over {s["n_patches"]} test patches (central {ev.eval_size}&sup3;
input voxels of each patch; lower is better, best per target in bold). The "none" row takes the input's SH
coefficients, at their own scale, as the target's (no harmonization); "meanvar_global" standardizes each scan
per channel and gives it the target platform's average. Patches overlap, so their count overstates the evidence: the intervals above are over subjects.</p>
{_table(ev)}{_tests(ev)}</details>
<details><summary>Fig. 3 of the MSP paper: SH and DEC FA errors of {html.escape(subject)} on {html.escape(target)}
</summary>{_fig3(held, ev, target)}</details>
"""
    return body, f"<h3>dMRI runs</h3><ul>{runs_list}</ul>"


def _fig3(held, ev, target: str) -> str:
    """The MSP paper's Fig. 3 for one held-out subject: the target scan, the best single network
    (patch MSE) and MSP; SH and DEC FA (every column through the evaluation's one path) on the
    slice with the most brain, errors over that slice."""
    from mrharmony.dmri.registry import REGISTRY
    from mrharmony.report.dmri import slice_with_most_brain
    from mrharmony.report.figures import fig3_views

    s = ev.summary()["patch_mse"]
    single = {m.name for m in REGISTRY.methods("network") if m.config.single_target}
    singles = [m for m in ev.methods if m in single and target in s.get(m, {})]
    chosen = []
    if singles:
        chosen.append(min(singles, key=lambda m: s[m][target]["mean"]))
    chosen += [m for m in ev.methods if m == "msp" and target in s.get(m, {})]
    if not chosen:
        return "<p class='note'>No single network or MSP predicts this target.</p>"
    tf, _ = held.reference.scan(target)
    where = np.zeros_like(tf.mask)
    z = slice_with_most_brain(tf.mask)
    where[:, :, z] = tf.mask[:, :, z]
    _, _, dec, y = held.reference_maps("scan", target, where)
    columns = {"target scan": {"sh": y, "dec": dec}}
    for m in chosen:
        _, _, dec, y = held.maps(m, target, where)
        columns[m] = {"sh": y, "dec": dec}
    png = fig3_views(columns, where, title=f"{held.subject}, {target}: target scan vs {', '.join(chosen)}")
    return img_tag(png, "Fig. 3 views")
