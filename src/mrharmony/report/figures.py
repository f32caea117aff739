"""Figures of the report, drawn with matplotlib (Agg) and returned as PNG bytes.

* :func:`training_curves`: training and validation loss per epoch of every run;
* :func:`phase_curves`: the same per phase, for runs of several phases (``stylecode``);
* :func:`error_bars`, :func:`map_grid`, :func:`bland_altman`, :func:`image_row`: the
  pictures of the report's summary (see :mod:`mrharmony.report.html`);
* :func:`fig3_views`: the MSP paper's Fig. 3 for one held-out subject and target: per column
  (ground truth, then each method), the mean of the first 6 SH coefficients and the voxelwise
  MSE of all SH coefficients against the ground truth, then the direction-encoded colour FA
  and its squared error, on the middle axial slice.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def phase_curves(runs: dict[str, Path]) -> bytes:
    """Training (dashed) and validation (solid) loss per epoch of each phase of each trained run."""
    rows = {label: _metrics(run) for label, run in runs.items()}
    phases = sorted({r.get("phase", "1") for rs in rows.values() for r in rs}, key=int)
    panels = [
        (f"phase {phase}", {label: [r for r in rs if r.get("phase", "1") == phase] for label, rs in rows.items()})
        for phase in phases
    ]
    return _loss_panels(panels, "loss", (5.2, 3.8))


def _metrics(run) -> list[dict]:
    with open(Path(run) / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _loss_panels(panels: list[tuple[str, dict]], ylabel: str, size: tuple[float, float]) -> bytes:
    """One panel per (title, label -> rows of metrics.csv): validation (solid) and training (dashed)
    loss per epoch of each run, in the same colour."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(size[0] * len(panels), size[1]), squeeze=False)
    for ax, (title, group) in zip(axes[0], panels):
        for i, (label, rows) in enumerate(group.items()):
            ep = [int(r["epoch"]) for r in rows]
            color = f"C{i % 10}"
            ax.plot(ep, [float(r["val_loss"]) for r in rows], "-o", color=color, ms=3, label=label)
            ax.plot(ep, [float(r["train_loss"]) for r in rows], "--", color=color, alpha=0.5)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title(f"{title}: validation (solid), training (dashed)", fontsize=9)
    return _png(fig)


def training_curves(runs: dict[str, Path]) -> bytes:
    """Loss per epoch: single networks on the left (one target each), multi-task runs on the right
    (losses summed over their targets, so on another scale)."""
    groups: dict[str, dict] = {"single networks (one target)": {}, "multi-task networks (sum over targets)": {}}
    for label, run in runs.items():
        rows = _metrics(run)
        n_targets = sum(1 for k in rows[0] if k.startswith("val_loss_"))
        groups[list(groups)[n_targets > 1]][label] = rows
    return _loss_panels([(t, g) for t, g in groups.items() if g], "patch MSE (normalized SH)", (6.2, 4.2))


def fig3_views(columns: dict[str, dict[str, np.ndarray]], mask: np.ndarray, *, title: str) -> bytes:
    """``columns``: label -> {"sh": SH coefficients at their own scale (X, Y, Z, C), "dec": DEC FA (X, Y, Z, 3)};
    the first is the truth."""
    plt = _plt()
    labels = list(columns)
    z = int(np.argmax(mask.sum(axis=(0, 1)))) if mask.any() else mask.shape[2] // 2
    truth = columns[labels[0]]
    fig, axes = plt.subplots(4, len(labels), figsize=(2.6 * len(labels), 10.4), squeeze=False)
    mean6 = {k: v["sh"][..., :6].mean(-1) for k, v in columns.items()}
    lo, hi = np.percentile(mean6[labels[0]][mask], [1, 99])
    err_sh = {k: ((v["sh"] - truth["sh"]) ** 2).mean(-1) * mask for k, v in columns.items()}
    err_dec = {k: ((v["dec"] - truth["dec"]) ** 2).mean(-1) * mask for k, v in columns.items()}
    e1 = max(float(np.percentile(err_sh[k][mask], 99)) for k in labels[1:]) if len(labels) > 1 else 1.0
    e2 = max(float(np.percentile(err_dec[k][mask], 99)) for k in labels[1:]) if len(labels) > 1 else 1.0
    for j, k in enumerate(labels):

        def show(i, img, j=j, **kw):
            ax = axes[i, j]
            ax.imshow(np.rot90(img), **kw)
            ax.set_xticks([])
            ax.set_yticks([])
            return ax

        show(0, mean6[k][:, :, z] * mask[:, :, z], cmap="gray", vmin=lo, vmax=hi).set_title(k, fontsize=10)
        if j:
            ax = show(1, err_sh[k][:, :, z], cmap="inferno", vmin=0, vmax=e1)
            ax.set_xlabel(f"MSE {err_sh[k][mask].mean():.3f}", fontsize=8)
            ax = show(3, err_dec[k][:, :, z], cmap="inferno", vmin=0, vmax=e2)
            ax.set_xlabel(f"DEC MSE {err_dec[k][mask].mean():.4f}", fontsize=8)
        else:
            axes[1, 0].axis("off")
            axes[3, 0].axis("off")
        show(2, np.clip(columns[k]["dec"][:, :, z], 0, 1))
    for i, name in enumerate(("mean of SH 1-6", "SH MSE", "DEC FA", "DEC error")):
        axes[i, 0].set_ylabel(name)
        if i in (1, 3):
            axes[i, 0].axis("on")
            axes[i, 0].set_xticks([])
            axes[i, 0].set_yticks([])
            for sp in axes[i, 0].spines.values():
                sp.set_visible(False)
    fig.suptitle(title, fontsize=11)
    return _png(fig)


#: colours of the kinds of rows, the same in every figure
KIND_COLOURS = {"none": "0.55", "statistical": "tab:blue", "learned": "tab:orange", "floor": "black"}


def error_bars(values: dict[str, dict[str, list[tuple[str, str, float]]]], measures: dict[str, str]) -> bytes:
    """The cross-platform difference left by every method at a glance: per target (columns) and
    measure (rows), a bar per method (``values[target][measure]``: (method, kind, mean) in order)
    coloured by its kind, with the ``rescan`` floor as a dashed line."""
    plt = _plt()
    targets = list(values)
    keys = [k for k in measures if any(k in values[t] for t in targets)]
    n = max((len(v) for t in targets for v in values[t].values()), default=1)
    fig, axes = plt.subplots(
        len(keys), len(targets), figsize=(3.6 * len(targets), 0.28 * n * len(keys) + 1.2), squeeze=False
    )
    for i, key in enumerate(keys):
        for j, t in enumerate(targets):
            ax = axes[i, j]
            scale = 1e3 if key.startswith("md") else 1.0  # MD in 10^-3 mm^2/s
            rows = [r for r in values[t].get(key, []) if r[1] != "floor"]
            floors = {m: v * scale for m, k, v in values[t].get(key, []) if k == "floor"}
            ax.barh(range(len(rows)), [v * scale for _, _, v in rows], color=[KIND_COLOURS[k] for _, k, _ in rows])
            ax.set_yticks(range(len(rows)), [m for m, _, _ in rows], fontsize=7)
            ax.invert_yaxis()
            if "rescan" in floors:
                ax.axvline(floors["rescan"], color="black", ls="--", lw=1, label="rescan")
                ax.legend(fontsize=7, loc="lower right")
            ax.tick_params(axis="x", labelsize=7)
            ax.set_title(f"{t}: {measures[key]}" + (" (10⁻³ mm²/s)" if scale != 1 else ""), fontsize=8)
            ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def map_grid(
    columns: dict[str, dict[str, np.ndarray | None]], mask: np.ndarray, *, title: str, reference: str
) -> bytes:
    """One slice of every map (rows: FA, MD, DEC FA, SH c0 and the FA difference to the column
    ``reference``) for every column, the same window along a row (set by ``reference``)."""
    plt = _plt()
    labels = list(columns)
    ref = columns[reference]
    md_hi = float(np.percentile(ref["MD"][mask], 99)) if mask.any() else 3e-3
    sh = ref["SH c0"][mask] if ref["SH c0"] is not None and mask.any() else np.zeros(1)
    sh_lo, sh_hi = (float(v) for v in np.percentile(sh, [1, 99]))
    rows = [
        ("FA", {"cmap": "gray", "vmin": 0, "vmax": 1}),
        ("MD", {"cmap": "gray", "vmin": 0, "vmax": md_hi}),
        ("DEC FA", {}),
        ("SH c0", {"cmap": "gray", "vmin": sh_lo, "vmax": sh_hi}),
        (f"FA - {reference}", {"cmap": "RdBu_r", "vmin": -0.25, "vmax": 0.25}),
    ]
    fig, axes = plt.subplots(len(rows), len(labels), figsize=(1.9 * len(labels), 1.9 * len(rows) * 1.05), squeeze=False)
    for j, label in enumerate(labels):
        col = columns[label]
        for i, (name, kw) in enumerate(rows):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if name.startswith("FA - "):
                img = (col["FA"] - ref["FA"]) * mask
                if label != reference:
                    ax.set_xlabel(f"mean |diff| {np.abs(img[mask]).mean():.3f}", fontsize=7)
            elif name == "DEC FA":
                img = np.clip(col[name], 0, 1) * mask[..., None]
            else:
                img = None if col[name] is None else col[name] * mask
            if img is None:
                ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes, fontsize=8)
            else:
                ax.imshow(np.rot90(img), **kw)
            if i == 0:
                ax.set_title(label, fontsize=8)
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _png(fig)


def bland_altman(per_target: dict[str, dict[str, dict[str, np.ndarray]]], kinds: dict[str, str]) -> bytes:
    """Agreement of regional FA and MD with the target scan (Bland-Altman): per target (columns)
    and measure (rows), each label's regions as (mean of the two, label minus scan), with its
    bias and 95% limits of agreement in the legend."""
    plt = _plt()
    targets = list(per_target)
    fig, axes = plt.subplots(2, len(targets), figsize=(4.0 * len(targets), 6.4), squeeze=False)
    for j, t in enumerate(targets):
        scan = per_target[t]["scan"]
        for i, name in enumerate(("FA", "MD")):
            ax = axes[i, j]
            for label, values in per_target[t].items():
                if label == "scan":
                    continue
                a, b = values[name], scan[name]
                d = a - b
                bias, sd = float(d.mean()), float(d.std(ddof=1)) if d.size > 1 else 0.0
                scale = 1e3 if name == "MD" else 1.0  # MD in 10^-3 mm^2/s
                colour = KIND_COLOURS[kinds.get(label, "learned")]
                ax.scatter(
                    (a + b) / 2 * scale,
                    d * scale,
                    s=5,
                    alpha=0.45,
                    color=colour,
                    label=f"{label}: {bias * scale:+.3f} ± {1.96 * sd * scale:.3f}",
                )
            ax.axhline(0, color="0.3", lw=0.8)
            unit = " (10⁻³ mm²/s)" if name == "MD" else ""
            ax.set_xlabel(f"mean of the two{unit}", fontsize=7)
            ax.set_ylabel(f"{name}: harmonized - target scan", fontsize=7)
            ax.tick_params(labelsize=7)
            ax.set_title(f"{t}: regional {name}", fontsize=8)
            ax.legend(fontsize=6, title="bias ± 1.96 SD", title_fontsize=6, markerscale=2)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def image_row(columns: dict[str, np.ndarray], mask: np.ndarray, *, title: str) -> bytes:
    """Structural images side by side (the last column is the truth) in the truth's window, and
    below each its difference to the truth on one shared scale."""
    plt = _plt()
    labels = list(columns)
    truth = columns[labels[-1]]
    lo, hi = (float(v) for v in np.percentile(truth[mask], [1, 99.5]))
    diffs = {k: (v - truth) * mask for k, v in columns.items()}
    d = max(float(np.percentile(np.abs(diffs[k][mask]), 99)) for k in labels[:-1]) if len(labels) > 1 else 1.0
    fig, axes = plt.subplots(2, len(labels), figsize=(1.75 * len(labels), 4.0), squeeze=False)
    for j, k in enumerate(labels):
        for i, (img, kw) in enumerate(
            (
                (columns[k] * mask, {"cmap": "gray", "vmin": lo, "vmax": hi}),
                (diffs[k], {"cmap": "RdBu_r", "vmin": -d, "vmax": d}),
            )
        ):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 1 and j == len(labels) - 1:
                ax.axis("off")
                continue
            ax.imshow(np.rot90(img), **kw)
        axes[0, j].set_title(k, fontsize=7)
        if j < len(labels) - 1:
            axes[1, j].set_xlabel(f"mean |diff| {np.abs(diffs[k][mask]).mean():.3g}", fontsize=6)
    axes[0, 0].set_ylabel("image", fontsize=7)
    axes[1, 0].set_ylabel("minus truth", fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return _png(fig)
