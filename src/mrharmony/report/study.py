"""The report's section on dMRI harmonizers learned from a study's sites (no traveling heads: RISH
and ComBat fitted on two sites' people, ``stylecode`` trained on several sites).

Such runs have no held-out traveling heads to score them on, so the section says what each learned
from and how its training went: per run its method, the sites, the people it learned from and held
out, its model card's hash and, for trained runs, the loss per epoch of each phase (validation on
the held-out people). What they do to a study's FA and MD is measured by ``benchmarks/unpaired.py``
against the simulator's truth.
"""

from __future__ import annotations

import html
import os
from pathlib import Path


def study_sections(runs: list, harmonizers: list, out: Path) -> tuple[str, str]:
    """(the section's HTML, its provenance lines) for the runs learned from a study."""
    from mrharmony.engine.card import card_hash, card_of
    from mrharmony.report.figures import phase_curves
    from mrharmony.report.format import img_tag

    def shown(path) -> str:
        return os.path.relpath(Path(path).resolve(), out.resolve().parent)

    lines, trained = [], {}
    for run, h in zip(runs, harmonizers):
        meta = h.meta or {}
        card = card_of(meta)
        data = card.get("training_data", {})
        sites = ", ".join(p.get("name", "?") for p in data.get("platforms", []))
        fitted, held = data.get("subjects_fitted_on", []), data.get("subjects_held_out", [])
        to = "the scanner of given target scans" if h.method == "stylecode" else ", ".join(h.targets)
        lines.append(
            f"<tr><td>{html.escape(Path(run).name)}</td><td>{html.escape(h.name)}</td><td>{html.escape(sites)}</td>"
            f"<td>{html.escape(to)}</td><td>{len(fitted)}</td><td>{len(held)}</td>"
            f"<td><code>{card_hash(card)[:12]}</code></td></tr>"
        )
        if (Path(run) / "metrics.csv").is_file():
            trained[h.name] = Path(run)
    table = (
        "<table><tr><th>run</th><th>row name</th><th>sites learned from</th><th>harmonizes to</th>"
        "<th>people fitted</th><th>held out</th><th>model card</th></tr>" + "".join(lines) + "</table>"
    )
    curves = (
        "<p class='note'>Loss per epoch of each phase (stylecode: the scanner code's contrastive loss, then the "
        "generator's losses); validation on the people held out.</p>"
        + img_tag(phase_curves(trained), "training curves")
        if trained
        else ""
    )
    body = (
        "<h2>dMRI harmonizers learned from a study's sites</h2><p class='note'>Learned without traveling heads, "
        "so there are no held-out scans of the same people to score them on here; "
        "<code>benchmarks/unpaired.py</code> scores them against the simulator's truth.</p>" + table + curves
    )
    provenance = "".join(
        f"<p class='note'>{html.escape(n)}: <code>{html.escape(shown(r))}</code></p>" for n, r in trained.items()
    )
    return body, provenance
