"""How the report writes numbers and embeds images (shared by its sections)."""

from __future__ import annotations

import base64
import html

# the fewest subjects a bootstrap interval is shown for ("three" in interval_note; below it, the
# summary says why it has none)
from mrharmony.stats import MIN_INTERVAL_SUBJECTS


def img_tag(png: bytes, alt: str) -> str:
    """An ``<img>`` holding the PNG itself (base64), so that the page needs no other file."""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def readable_p(p: float) -> str:
    """A p-value as a reader takes it in: "< 0.001", two significant digits below 0.1, else two decimals."""
    return "< 0.001" if p < 1e-3 else f"{p:.2g}" if p < 0.1 else f"{p:.2f}"


def number(v: float) -> str:
    """Three significant digits, in scientific notation outside 0.001-10,000."""
    return f"{v:.3g}" if 1e-3 <= abs(v) < 1e4 or v == 0 else f"{v:.2e}"


def subject_cell(values) -> dict:
    """A summary cell of per-subject values: ``{"mean", "ci95" (a 95% bootstrap interval over the
    subjects, None under MIN_INTERVAL_SUBJECTS), "n"}``."""
    from mrharmony.stats import mean_ci

    v = list(values)
    c = mean_ci(v)
    return {"mean": c["mean"], "ci95": c["ci95"] if len(v) >= MIN_INTERVAL_SUBJECTS else None, "n": len(v)}


def interval_note(n: int, who: str) -> str:
    """What a summary's brackets are, for ``n`` subjects called ``who`` (e.g. "held-out")."""
    if n >= MIN_INTERVAL_SUBJECTS:
        return f"95% bootstrap interval over the {who} subjects in brackets"
    return f"{n} {who} subject{'s' if n != 1 else ''}: no interval (it needs three or more)"
