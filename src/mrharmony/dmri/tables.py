"""The evaluation table as Markdown, CSV and JSON, like Table 1 of the MSP paper."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from mrharmony.io import write_json, write_text


def format_p(p: float) -> str:
    """A p-value as a table shows it: three decimals, or scientific notation below 0.001."""
    if p == 0.0:
        return "< 1e-300"  # below double precision
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def format_cell(v: float | None) -> str:
    """A table cell of an optional value."""
    return "" if v is None else f"{v:.4f}"


def tests_against_best(ev) -> list[tuple[str, str, dict]]:
    """Per target, the tests of the best method (lowest mean patch MSE) against each other one.

    Every pairwise test is in ``evaluation.json``; tables show these, the ones that say whether
    the best method's lead is significant.
    """
    out = []
    for t, best in best_methods(ev).items():
        for row in ev.tests.get(t, []):
            if best in (row["a"], row["b"]):
                flip = row["b"] == best
                other = row["a"] if flip else row["b"]
                diff = -row["median_difference"] if flip else row["median_difference"]
                out.append((t, best, {**row, "a": best, "b": other, "median_difference": diff}))
    return out


def best_methods(ev) -> dict[str, str]:
    """The method with the lowest mean patch MSE, per target."""
    s = ev.summary()["patch_mse"]
    return {t: min((v[t]["mean"], m) for m, v in s.items() if t in v)[1] for t in ev.targets}


def table_rows(ev) -> list[tuple[str, str, list[tuple[str, bool] | None]]]:
    """Rows of the patch-MSE table: (method, parameter count, per target ("mean (std)", is best) or None)."""
    s = ev.summary()["patch_mse"]
    best = best_methods(ev)
    rows = []
    for m in ev.methods:
        if m not in s:  # methods of DTI maps only (ComBat) have whole-volume rows only
            continue
        cells = []
        for t in ev.targets:
            v = s.get(m, {}).get(t)
            cells.append(None if v is None else (f"{v['mean']:.4f} ({v['std']:.4f})", best[t] == m))
        params = ev.parameters.get(m)
        rows.append((m, "" if params is None else f"{params:,}", cells))
    return rows


def markdown(ev) -> str:
    split = (
        "by patch (the paper's 90/10: test patches come from subjects seen in training)"
        if ev.split == "patch"
        else f"by held-out subject ({', '.join(ev.test_subjects)}: never seen in training)"
    )
    lines = [
        f"Patch MSE in normalized SH space (raw coefficients on each target platform's fixed scale), mean (std) "
        f"over {ev.n_patches} test patches "
        f"(central {ev.eval_size}^3 input voxels of each patch); split {split}.",
        "",
    ]
    lines.append("| method | parameters | " + " | ".join(ev.targets) + " |")
    lines.append("| --- | --- | " + " | ".join("---" for _ in ev.targets) + " |")
    for m, params, cells in table_rows(ev):
        texts = ["" if c is None else (f"**{c[0]}**" if c[1] else c[0]) for c in cells]
        lines.append(f"| {m} | {params} | " + " | ".join(texts) + " |")
    lines += [
        "",
        "Paired two-sided Wilcoxon signed-rank tests on the same patches of the best method of each "
        "target against every other, Bonferroni-corrected over all "
        f"{sum(len(v) for v in ev.tests.values())} pairwise tests of the table (all of them are in "
        "evaluation.json); median difference of the per-patch MSE, best - other:",
        "",
    ]
    lines.append("| target | best | other | median best - other | p | p (Bonferroni) |")
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for t, _, row in tests_against_best(ev):
        lines.append(
            f"| {t} | {row['a']} | {row['b']} | {row['median_difference']:+.4f} | {format_p(row['p'])} | "
            f"{format_p(row['p_bonferroni'])} |"
        )
    if ev.volume_errors:
        noiseless = all("fa_mae_noiseless" in r for r in ev.volume_errors)
        lines += [
            "",
            "Whole-volume errors on held-out subjects inside the target's and the input's masks, against the "
            "raw truth (SH rel: the order-balanced relative SH error, the mean over SH orders of each order's squared "
            "error over the target scan's energy of that order; mean absolute FA and MD differences, every row's and the "
            "target scan's FA and MD through one path: raw SH coefficients, their signal on the target scan's "
            "gradient table, a DTI fit; methods that harmonize the DTI maps themselves have no SH error; on simulated data two floors through the same path: `rescan`, a second "
            "session of the subject on the target platform, and `oracle`, the noiseless target"
            + ("; the same three errors against the noiseless target in the last columns" if noiseless else "")
            + (
                f"; FA and MD on {ev.volume_voxels:,} seeded brain voxels per subject and target, the same for "
                "every row"
                if ev.volume_voxels
                else ""
            )
            + "):",
            "",
        ]
        extra = " SH rel, noiseless | FA MAE, noiseless | MD MAE, noiseless |" if noiseless else ""
        lines += [
            "| method | subject | target | SH rel | FA MAE | MD MAE (mm^2/s) |" + extra,
            "| --- | --- | --- | --- | --- | --- |" + " --- |" * (3 if noiseless else 0),
        ]
        for r in ev.volume_errors:
            cells = (
                f" {format_cell(r['sh_rel_noiseless'])} | {r['fa_mae_noiseless']:.4f} | {r['md_mae_noiseless']:.2e} |"
                if noiseless
                else ""
            )
            lines.append(
                f"| {r['method']} | {r['subject']} | {r['target']} | {format_cell(r['sh_rel'])} | {r['fa_mae']:.4f} | "
                f"{r['md_mae']:.2e} |" + cells
            )
        lines += kurtosis_table(ev)
        ratios = rescan_ratios(ev)
        if ratios:
            lines += [
                "",
                "Each method's whole-volume error as a multiple of the rescan floor (mean over held-out subjects; "
                "1 is as good as scanning the subject again on the target scanner):",
                "",
                "| method | target | SH rel / rescan | FA MAE / rescan | MD MAE / rescan |",
                "| --- | --- | --- | --- | --- |",
            ]
            for r in ratios:
                cells = " | ".join("" if r[k] is None else f"{r[k]:.2f}" for k in ("sh_rel", "fa_mae", "md_mae"))
                lines.append(f"| {r['method']} | {r['target']} | {cells} |")
    return "\n".join(lines) + "\n"


def kurtosis_table(ev) -> list[str]:
    """The lines of the multi-shell targets' table: mean kurtosis and each shell's RISH features (empty
    when no target has two shells)."""
    rows = [r for r in ev.volume_errors if "mk_mae" in r]
    if not rows:
        return []
    shells = sorted({k for r in rows for k in r if k.startswith("rish_rel_b") and not k.endswith("_noiseless")})
    noiseless = all("mk_mae_noiseless" in r for r in rows)
    keys = ["mk_mae", *shells] + (["mk_mae_noiseless", *(f"{k}_noiseless" for k in shells)] if noiseless else [])
    lines = [
        "",
        "Targets of two shells or more: the mean absolute error of mean kurtosis (a DKI fit, dipy, of every shell "
        "of the row's signal; for a method of maps, its own MK map) and, per shell, the relative error of the RISH "
        "features (per SH order the mean absolute difference of the energies over the target scan's mean energy, "
        "averaged over orders)"
        + (", against the target scan, then against the noiseless target" if noiseless else "")
        + ":",
        "",
        "| method | subject | target | " + " | ".join(k.replace("_", " ") for k in keys) + " |",
        "| --- | --- | --- |" + " --- |" * len(keys),
    ]
    for r in rows:
        cells = " | ".join("" if r.get(k) is None else f"{r[k]:.4f}" for k in keys)
        lines.append(f"| {r['method']} | {r['subject']} | {r['target']} | {cells} |")
    return lines


def rescan_ratios(ev) -> list[dict]:
    """Per method and target, the mean over held-out subjects of each whole-volume error divided
    by the ``rescan`` row's (None where a method has no such error); empty without a rescan row."""
    floor = {(r["subject"], r["target"]): r for r in ev.volume_errors if r["method"] == "rescan"}
    if not floor:
        return []
    sums: dict = {}
    for r in ev.volume_errors:
        if r["method"] in ("rescan", "oracle") or (r["subject"], r["target"]) not in floor:
            continue
        f = floor[(r["subject"], r["target"])]
        per = sums.setdefault((r["method"], r["target"]), {k: [] for k in ("sh_rel", "fa_mae", "md_mae")})
        for k in per:
            if r[k] is not None and f[k]:
                per[k].append(r[k] / f[k])
    return [
        {"method": m, "target": t, **{k: (float(np.mean(v)) if v else None) for k, v in per.items()}}
        for (m, t), per in sums.items()
    ]


def csv_text(ev) -> str:
    """``rows.csv``: one row per method, held-out subject and target, the whole-volume errors
    (header only when the evaluation skipped them); the per-patch errors are summarized in
    ``table.md`` and ``evaluation.json``."""
    buf = io.StringIO(newline="")
    fields = ["method", "subject", "target"]
    fields += list(dict.fromkeys(k for r in ev.volume_errors for k in r if k not in fields))
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(ev.volume_errors)
    return buf.getvalue()


def write_tables(ev, out: str | os.PathLike) -> dict[str, Path]:
    out = Path(out)
    paths = {"markdown": out / "table.md", "csv": out / "rows.csv", "json": out / "evaluation.json"}
    write_text(paths["markdown"], markdown(ev))
    write_text(paths["csv"], csv_text(ev))
    write_json(paths["json"], ev.summary())
    return paths
