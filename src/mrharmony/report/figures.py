"""Figures of the report, drawn with matplotlib (Agg) and returned as PNG bytes.

* :func:`training_curves`: training and validation loss per epoch of every run;
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


def training_curves(runs: dict[str, Path]) -> bytes:
    """Loss per epoch: single networks on the left (one target each), multi-task runs on the right
    (losses summed over their targets, so on another scale)."""
    plt = _plt()
    groups = {"single networks (one target)": {}, "multi-task networks (sum over targets)": {}}
    for label, run in runs.items():
        rows = list(csv.DictReader(open(Path(run) / "metrics.csv")))
        n_targets = sum(1 for k in rows[0] if k.startswith("val_loss_"))
        groups[list(groups)[n_targets > 1]][label] = rows
    panels = [(title, g) for title, g in groups.items() if g]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.2), squeeze=False)
    for ax, (title, group) in zip(axes[0], panels):
        for i, (label, rows) in enumerate(group.items()):
            ep = [int(r["epoch"]) for r in rows]
            color = f"C{i % 10}"
            ax.plot(ep, [float(r["val_loss"]) for r in rows], "-o", color=color, ms=3, label=label)
            ax.plot(ep, [float(r["train_loss"]) for r in rows], "--", color=color, alpha=0.5)
        ax.set_xlabel("epoch")
        ax.set_ylabel("patch MSE (normalized SH)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title(f"{title}: validation (solid), training (dashed)", fontsize=9)
    return _png(fig)


def fig3_views(columns: dict[str, dict[str, np.ndarray]], mask: np.ndarray, *, title: str) -> bytes:
    """``columns``: label -> {"sh": normalized SH (X, Y, Z, C), "dec": DEC FA (X, Y, Z, 3)}; the first is the truth."""
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
        def show(i, img, **kw):
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
