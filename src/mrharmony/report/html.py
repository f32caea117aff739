"""``mrharmony report RUN_DIR ... --out report.html``: one self-contained HTML file.

It holds the evaluation table with the paired tests, the training curves, the MSP paper's
Fig. 3 views for a held-out subject (ground truth, the best single network and MSP, or the
methods given), and where every number came from. Images are embedded (base64 PNG), so the file
can be sent as it is.
"""

from __future__ import annotations

import base64
import html
import os
import time
from pathlib import Path

from mrharmony import __version__
from mrharmony.dmri.tables import format_cell
from mrharmony.errors import InputError
from mrharmony.io import check_new_file, write_text

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}tr:nth-child(even){background:#f7f7f7}td.best{font-weight:bold;background:#e6f2e6}
.note{color:#555;font-size:.9em}img{max-width:100%}code{background:#f2f2f2;padding:0 .2em}
"""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(ev) -> str:
    from mrharmony.dmri.tables import table_rows

    head = "".join(f"<th>{html.escape(t)}</th>" for t in ev.targets)
    rows = []
    for m, params, cells in table_rows(ev):
        tds = "".join("<td></td>" if c is None else ('<td class="best">' if c[1] else "<td>") + c[0] + "</td>"
                      for c in cells)
        rows.append(f"<tr><td>{html.escape(m)}</td><td>{params}</td>{tds}</tr>")
    return f"<table><tr><th>method</th><th>parameters</th>{head}</tr>{''.join(rows)}</table>"


def _tests(ev) -> str:
    from mrharmony.dmri.tables import format_p, tests_against_best

    rows = [f"<tr><td>{html.escape(t)}</td><td>{html.escape(r['a'])}</td><td>{html.escape(r['b'])}</td>"
            f"<td>{r['median_difference']:+.4f}</td><td>{format_p(r['p'])}</td><td>{format_p(r['p_bonferroni'])}</td></tr>"
            for t, _, r in tests_against_best(ev)]
    total = sum(len(v) for v in ev.tests.values())
    return (f"<p class='note'>The best method of each target against every other; corrected over all {total} "
            "pairwise tests of the table.</p><table><tr><th>target</th><th>best</th><th>other</th>"
            f"<th>median best &minus; other</th><th>p</th><th>p (Bonferroni)</th></tr>{''.join(rows)}</table>")


def _volume_table(ev) -> str:
    if not ev.volume_errors:
        return "<p class='note'>Whole-volume errors are computed for held-out subjects only (subject split).</p>"
    rows = "".join(f"<tr><td>{html.escape(r['method'])}</td><td>{r['subject']}</td><td>{r['target']}</td>"
                   f"<td>{format_cell(r['sh_mse'])}</td><td>{r['fa_mae']:.4f}</td><td>{r['md_mae']:.2e}</td></tr>"
                   for r in ev.volume_errors)
    return ("<table><tr><th>method</th><th>subject</th><th>target</th><th>SH MSE</th><th>FA MAE</th>"
            f"<th>MD MAE (mm&sup2;/s)</th></tr>{rows}</table>"
            "<p class='note'>FA and MD of every row and of the target scan come through one path (the features' "
            "signal on the target scan's gradient table, then a DTI fit), so a perfect prediction scores 0; "
            "<code>oracle</code> (simulated data): the noiseless target through the same path, the floor that the "
            "target scan's own noise sets.</p>")


def build_report(runs: list[str | os.PathLike], out: str | os.PathLike, *, evaluation=None, target: str | None = None,
                 subject: str | None = None, force: bool = False, quiet: bool = False) -> Path:
    """Evaluate ``runs`` (unless ``evaluation`` is given) and write the HTML report to ``out``."""
    from mrharmony.data import load_dataset
    from mrharmony.dmri.evaluate import evaluate
    from mrharmony.dmri.loading import load_harmonizer
    from mrharmony.report.figures import fig3_views, training_curves

    out = check_new_file(out, force=force)
    if out.parent and not out.parent.exists():
        raise InputError("cannot be written: its folder does not exist.", out)
    ev = evaluation or evaluate(runs, quiet=quiet)
    hs = [load_harmonizer(r) for r in runs]
    labels = {}
    for r, h in zip(runs, hs):
        if (Path(r) / "metrics.csv").is_file():  # trained runs (statistical ones are fitted in one pass)
            labels[f"{h.name} ({', '.join(h.targets)})"] = Path(r)
    curves = training_curves(labels)
    ds = load_dataset(hs[0].meta["data"]["dataset"], check_data=False)
    target = target or ("connectom_sa" if "connectom_sa" in ev.targets else ev.targets[-1])
    subject = subject or (ev.test_subjects[0] if ev.test_subjects else ds.subjects[-1])
    fig3 = _fig3(ds, hs, ev, target, subject, fig3_views)
    s = ev.summary()
    split = ("by patch (the MSP paper's 90/10 split: test patches come from subjects seen in training)"
             if ev.split == "patch" else f"by held-out subject ({', '.join(ev.test_subjects)}, never seen in training)")
    def shown(path) -> str:  # paths relative to the report, so that a moved report folder stays right
        return os.path.relpath(Path(path).resolve(), out.resolve().parent)

    def about(h) -> str:
        if "parameter_count" not in h.meta:  # a statistical method, fitted on the training subjects
            return f"fitted on {', '.join(h.meta.get('fit_subjects', []))}"
        return f"{h.meta['parameter_count']:,} parameters, best epoch {h.meta.get('best_epoch')}"

    runs_list = "".join(f"<li><code>{html.escape(shown(r))}</code>: {html.escape(h.name)}, "
                        f"targets {html.escape(', '.join(h.targets))}, {html.escape(about(h))}</li>"
                        for r, h in zip(runs, hs))
    body = f"""
<h1>mrharmony report</h1>
<p class="note">Dataset <code>{html.escape(shown(ds.root))}</code> ({len(ds.subjects)} subjects; input platform
{html.escape(ds.input_platform.name)}). Generated {time.strftime('%Y-%m-%d %H:%M')} by mrharmony {__version__}.</p>
<h2>Patch MSE (Table 1 of the MSP paper)</h2>
<p>Mean (std) of the MSE in normalized SH space over {s['n_patches']} test patches (central {ev.eval_size}&sup3;
input voxels of each patch; lower is better, best per target in bold). Split {html.escape(split)}. The
"none" row takes the input's SH coefficients, at their own scale, as the target's (no
harmonization); "meanvar_global" is the input standardized per channel.</p>
{_table(ev)}
<h3>Paired Wilcoxon signed-rank tests</h3>
{_tests(ev)}
<h2>Whole-volume errors</h2>
{_volume_table(ev)}
<h2>Training curves</h2>
<p class="note">Validation loss is that of the final predictions; training loss sums every supervised output
(both stages of MSP, every stage of CPM), so it sits above it for those.</p>
{_img(curves, 'training curves')}
<h2>Held-out subject {html.escape(subject)}, target {html.escape(target)} (Fig. 3 of the MSP paper)</h2>
{fig3}
<h2>Provenance</h2>
<ul>{runs_list}</ul>
<p class="note">Every number above is recomputed by <code>mrharmony evaluate</code> on the same runs.</p>
"""
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>mrharmony report</title><style>{CSS}</style></head><body>{body}</body></html>"
    write_text(out, page)
    return out


def _fig3(ds, hs, ev, target, subject, fig3_views) -> str:
    from mrharmony.dmri.features.dti import dti_maps
    from mrharmony.dmri.features.prepare import load_features
    from mrharmony.engine.registry import methods

    s = ev.summary()["patch_mse"]
    single = {m.name for m in methods("dmri", "network") if m.load().single_target}
    singles = [m for m in ev.methods if m in single and target in s.get(m, {})]
    chosen = []
    if singles:
        chosen.append(min(singles, key=lambda m: s[m][target]["mean"]))
    chosen += [m for m in ev.methods if m == "msp" and target in s.get(m, {})]
    if not chosen:
        return "<p class='note'>No single network or MSP predicts this target.</p>"
    f = load_features(ds, subject, ds.input_platform.name)
    tf = load_features(ds, subject, target)
    scan = ds.scan(subject, target)
    bvals, bvecs = scan.gradients()
    dwi, _ = scan.load_dwi()
    columns = {"ground truth": {"sh": tf.data, "dec": dti_maps(dwi, bvals, bvecs, tf.mask)[2]}}
    for m in chosen:
        h = next(h for h in hs if h.name == m and target in h.targets)
        y = h.predict(f)[target]
        dec = h.predict_dti(f, gradients={target: (bvals, bvecs)}, pred={target: y})[target][2]
        columns[m] = {"sh": y, "dec": dec}
    png = fig3_views(columns, tf.mask, title=f"{subject}, {target}: truth vs {', '.join(chosen)}")
    return _img(png, "Fig. 3 views")
