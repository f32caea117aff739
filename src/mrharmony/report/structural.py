"""The structural sections of the report, from a structural evaluation
(:func:`mrharmony.structural.evaluate.evaluate_structural`, or the folder it wrote).

At the top, per modality and group of sites (``seen``: both sites were training sites;
``unseen``: one was never read in training), SSIM against the truth (the test subject's own image
on the target site) and the Dice overlap of the tissue segmentations with the input's (anatomy
kept) of no harmonization, the best intensity baseline and each trained model: means over the
test subjects (each subject's mean over its site pairs), with a 95% bootstrap interval over
subjects where there are three or more. Then, per modality, one test subject harmonized from a
training site to a site never seen in training by every method, beside the truth, one window
for the whole row; the full table and the paired tests in collapsed sections.
"""

from __future__ import annotations

import csv
import html
import json
import os
from pathlib import Path

import numpy as np

from mrharmony.errors import InputError

#: (metric of a row, what it is, whether higher is better), as the summary shows them
GLANCE = (
    ("ssim", "SSIM vs truth", True),
    ("target_vd_gm", "GM volume difference to the target site", False),
    ("dice_wm", "Dice WM vs input", True),
    ("nwd_tp", "nWD(t,p)", False),
)


def load_evaluation(structural) -> tuple[list[dict], dict, list[dict]]:
    """(rows, info, tests) of a structural evaluation object or of the folder it was written to."""
    if hasattr(structural, "rows"):
        return structural.rows, structural.info, structural.tests
    folder = Path(structural)
    summary, rows_file = folder / "evaluation.json", folder / "rows.csv"
    for f in (summary, rows_file):
        if not f.is_file():
            raise InputError("is missing: give the folder that `mrharmony structural evaluate` wrote.", f)
    from mrharmony.structural.evaluate import resolved_info

    info = resolved_info(json.loads(summary.read_text()), folder)
    with open(rows_file, newline="") as fh:
        rows = [{k: _value(v) for k, v in r.items() if v != ""} for r in csv.DictReader(fh)]  # "": not scored
    return rows, info, info.get("wilcoxon", [])


def _value(v: str):
    try:
        return float(v)
    except ValueError:
        return v


def _kind(method: str, info: dict) -> str:
    from mrharmony.structural.metrics import RESCAN_ROW
    from mrharmony.structural.registry import INTENSITY_METHODS

    if method in ("none", RESCAN_ROW):  # no harmonization, and the target site's second session (a floor)
        return method
    origin = info.get("methods", {}).get(method, method)
    return "baseline" if origin in INTENSITY_METHODS else "trained"


def glance(rows: list[dict], info: dict) -> dict:
    """``{(modality, group): {metric: {label: cell}}}`` with the labels ``none``, ``rescan`` (the
    target site's second session, where the dataset has one), ``best baseline`` (by that metric)
    and each trained model; a cell is ``{"mean", "ci95" (None under three
    subjects), "n", "method"}``."""
    from mrharmony.report.format import subject_cell

    out: dict = {}
    for mod, group in dict.fromkeys((r["modality"], r["group"]) for r in rows):
        sel = [r for r in rows if r["modality"] == mod and r["group"] == group and r["method"] != "truth"]
        for metric, _, higher in GLANCE:
            per: dict = {}
            for r in sel:
                v = r.get(metric)
                if isinstance(v, float) and np.isfinite(v):
                    per.setdefault(r["method"], {}).setdefault(r["subject"], []).append(v)
            cells = {}
            for m, by_subject in per.items():
                cells[m] = {**subject_cell(float(np.mean(by_subject[s])) for s in sorted(by_subject)), "method": m}
            entry = {}
            for label in ("none", "rescan"):
                if label in cells:
                    entry[label] = cells[label]
            baselines = [m for m in cells if _kind(m, info) == "baseline"]
            if baselines:
                pick = max if higher else min
                entry["best baseline"] = cells[pick(baselines, key=lambda m: cells[m]["mean"])]
            for m in cells:
                if _kind(m, info) == "trained":
                    entry[m] = cells[m]
            out.setdefault((mod, group), {})[metric] = entry
    return out


def _cell(c: dict | None, label: str) -> str:
    if c is None:
        return "<td></td>"
    text = f"{c['mean']:.3f}"
    if c.get("ci95"):
        text += f" <span class='ci'>[{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}]</span>"
    if label == "best baseline":
        text += f"<br><span class='method'>{html.escape(c['method'])}</span>"
    return f"<td>{text}</td>"


def glance_html(rows: list[dict], info: dict) -> str:
    from mrharmony.report.format import interval_note

    g = glance(rows, info)
    labels = list(dict.fromkeys(label for per in g.values() for entry in per.values() for label in entry))
    lines, body = [], []
    for (mod, group), per in g.items():
        ssim = per.get("ssim", {})
        trained = [k for k in ssim if k not in ("none", "rescan", "best baseline")]
        if trained:
            best = max(trained, key=lambda k: ssim[k]["mean"])
            text = (
                f"<b>{html.escape(mod)}, {group} sites</b>: <code>{html.escape(best)}</code> reaches SSIM "
                f"{ssim[best]['mean']:.3f} against the truth"
            )
            if "best baseline" in ssim:
                text += (
                    f"; the best intensity baseline (<code>{html.escape(ssim['best baseline']['method'])}</code>) "
                    f"{ssim['best baseline']['mean']:.3f}"
                )
            if "none" in ssim:
                text += f"; no harmonization {ssim['none']['mean']:.3f}"
            lines.append(f"<li>{text}.</li>")
        for metric, name, higher in GLANCE:
            if metric in per:
                body.append(
                    f"<tr><td>{html.escape(mod)}</td><td>{group}</td><td>{name} "
                    f"({'higher' if higher else 'lower'} is better)</td>"
                    + "".join(_cell(per[metric].get(label), label) for label in labels)
                    + "</tr>"
                )
    n = max((c["n"] for per in g.values() for e in per.values() for c in e.values()), default=0)
    interval = interval_note(n, "test")
    head = "".join(f"<th>{html.escape(label)}</th>" for label in labels)
    return (
        f"<ul class='lead'>{''.join(lines)}</ul><table class='glance'><tr><th>modality</th><th>sites</th>"
        f"<th>measure</th>{head}</tr>{''.join(body)}</table><p class='note'>Each test subject's mean over its "
        f"site pairs, then the mean over subjects ({interval}).</p>"
    )


def example_images(info: dict, modality: str) -> tuple[dict[str, np.ndarray], np.ndarray, str]:
    """One test subject harmonized by every method of the evaluation from its first training site
    to its first site never seen in training (or another training site), beside the input and the
    truth, on the axial slice with the most brain: ``(columns, mask slice, title)``."""
    from mrharmony.data.structural import load_structural
    from mrharmony.structural.evaluate import image_harmonizers

    ds = load_structural(info["dataset"])
    subject, ref_subject = info["test_subjects"][0], info["one_shot_reference_subject"]
    seen = info["training_sites"]
    source = seen[0]
    target = (info.get("unseen_sites") or [s for s in seen if s != source])[0]
    hs = image_harmonizers(dict(info["methods"]))
    x = ds.load_image(subject, source, modality)[0]
    t = ds.load_image(ref_subject, target, modality)[0]
    truth = ds.load_image(subject, target, modality)[0]
    mask, tmask = ds.load_mask(subject, x), ds.load_mask(ref_subject, t)
    z = int(np.argmax(mask.sum(axis=(0, 1))))
    columns = {f"input ({source})": x[:, :, z]}
    for h in hs:
        if h.applies_to(modality):
            columns[h.name] = h.transform(x, target=t, mask=mask, target_mask=tmask).image[:, :, z]
    columns[f"truth ({target})"] = truth[:, :, z]
    return columns, mask[:, :, z], f"{modality}: {subject} from {source} to {target} (one-shot target: {ref_subject})"


def structural_sections(structural, out: Path) -> tuple[str, str]:
    """(the report's structural section, its provenance) for a structural evaluation."""
    from mrharmony.report.figures import image_row
    from mrharmony.report.format import img_tag, readable_p
    from mrharmony.structural.metrics import markdown_table, summarize

    rows, info, tests = load_evaluation(structural)
    pictures = ""
    for modality in info.get("modalities", []):
        columns, mask, title = example_images(info, modality)
        pictures += img_tag(image_row(columns, mask, title=title), f"{modality} example")
    table = markdown_table(
        summarize(rows, extra_metrics=tuple(k for k in ("texture_p2", "roundtrip") if any(k in r for r in rows)))
    )
    test_rows = "".join(
        f"<tr><td>{html.escape(str(x.get('modality', '')))}</td><td>{html.escape(str(x.get('group', '')))}</td>"
        f"<td>{html.escape(str(x.get('metric', '')))}</td><td>{html.escape(str(x.get('method', x.get('b', ''))))}</td>"
        f"<td>{x.get('n', '')}</td><td title='{x['p']:.3g}'>{readable_p(x['p'])}</td>"
        f"<td title='{x['p_bonferroni']:.3g}'>{readable_p(x['p_bonferroni'])}</td></tr>"
        for x in tests
    )

    if max((x.get("n", 0) for x in tests), default=0) < 2:
        tests_html = "<p class='note'>One test subject: no test across subjects.</p>"
    else:
        tests_html = (
            "<table><tr><th>modality</th><th>sites</th><th>metric</th><th>other</th><th>subjects</th>"
            f"<th>p</th><th>p (Bonferroni)</th></tr>{test_rows}</table>"
        )

    def shown(path) -> str:
        return os.path.relpath(Path(path).resolve(), out.resolve().parent)

    body = f"""
<h2>Structural: does each image look as the target site's would, with its anatomy kept?</h2>
<p class="note">Dataset <code>{html.escape(shown(info["dataset"]))}</code>; test subjects
{html.escape(", ".join(info["test_subjects"]))}; one-shot target images from {html.escape(info["one_shot_reference_subject"])};
training sites {html.escape(", ".join(info["training_sites"]))}, never seen in training
{html.escape(", ".join(info.get("unseen_sites", [])) or "none")}.</p>
{glance_html(rows, info)}
<h3>One test subject to a site</h3>
<p class="note">One axial slice; the same window along the row (that of the truth). Below each image its
difference to the truth.</p>
{pictures}
<details><summary>All metrics (mean over the test subjects [95% interval over them, with three or more];
with fewer, mean ± std over their site pairs)</summary><pre>{html.escape(table)}</pre></details>
<details><summary>Paired Wilcoxon tests against {html.escape(info.get("reference", ""))} over the test subjects
(Bonferroni)</summary>{tests_html}</details>
"""
    methods = "".join(
        f"<li>{html.escape(m)}: <code>{html.escape(shown(o) if os.path.sep in str(o) else str(o))}</code>"
        f"{html.escape(_card_line(o))}</li>"
        for m, o in info.get("methods", {}).items()
    )
    return body, f"<h3>Structural methods</h3><ul>{methods}</ul>"


def _card_line(model) -> str:
    """``; model card VARIANT, SHA-256 …`` for a saved model (nothing for a baseline or a model
    that is no longer there)."""
    from mrharmony.engine.card import card_hash, read_card

    if os.path.sep not in str(model) or not Path(model).exists():
        return ""
    try:
        card, _ = read_card(model)
    except InputError:
        return ""
    return f"; model card {card.get('variant') or card.get('method')}, SHA-256 {card_hash(card)[:12]}"
