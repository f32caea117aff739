"""Where a harmonizer's FA and MD errors come from: per tissue of the simulated truth.

For the held-out subject of the given runs (simulated data) and one target, every run's FA and
MD through the evaluation's one path (``Harmonizer.dti_of``), against the noiseless target:
the mean absolute error and the mean signed error (bias) in voxels that are at least 90% white
matter, grey matter or CSF in the truth, with the ``none`` row (no harmonization) and the
``rescan`` floor. A smooth prediction lowers FA in white matter (a negative bias there); noise
raises FA where it is low (a positive bias in grey matter and CSF).

Usage:
    python benchmarks/fa_by_tissue.py RUN_DIR ... [--target prisma_st] [--subject S]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np

TISSUES = {"white matter": 0, "grey matter": 1, "CSF": 2}  # channels of truth/<subject>/tissue.nii.gz


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--target", default="prisma_st")
    ap.add_argument("--subject", help="default: the runs' first held-out subject")
    args = ap.parse_args()

    from mrharmony.dmri.evaluate import TargetReference, table_rows_of
    from mrharmony.dmri.features.prepare import load_features
    from mrharmony.registration import block_mean

    rows = table_rows_of(args.runs)
    ds = rows.dataset
    subject = args.subject or (rows.data.test_subjects or [ds.subjects[-1]])[0]
    ref = TargetReference(ds, subject)
    if not ref.simulated:
        raise SystemExit(f"{ds.root}: is not simulated; the tissues come from its truth.")
    tf, gradients = ref.scan(args.target)
    factor = int(round(ds.platforms[args.target].voxel_size[0] / 1.2))  # the truth's grid is 1.2 mm
    tissue = np.asanyarray(nib.load(ds.root / "truth" / subject / "tissue.nii.gz").dataobj).astype(np.float32)
    masks = {name: (block_mean(tissue[..., c], factor) >= 0.9) & tf.mask for name, c in TISSUES.items()}
    f = load_features(ds, subject, ds.input_platform.name)
    identity = rows.identity
    clean_fa, clean_md, _ = identity.dti_of(ref.noiseless_features(args.target), args.target, tf.mask,
                                             gradients=gradients)
    entries = [(n, h) for n, h in zip(rows.names, rows.harmonizers) if args.target in h.targets]
    entries.append(("rescan", None))
    print(f"{subject}, {args.target}: FA and MD against the noiseless target, per tissue of the truth "
          f"(voxels: {', '.join(f'{k} {int(m.sum())}' for k, m in masks.items())})\n")
    print("| row | " + " | ".join(f"FA MAE {k} | FA bias {k}" for k in TISSUES) + " | MD MAE WM (1e-5) |")
    print("|" + " --- |" * (2 * len(TISSUES) + 2))
    for name, h in entries:
        if h is None:
            fa, md, _ = identity.dti_of(ref.rescan_features(args.target), args.target, tf.mask, gradients=gradients)
        elif h.predicts_sh:
            fa, md, _ = h.dti_of(h.predict(f)[args.target], args.target, tf.mask, gradients=gradients)
        else:
            fa, md, _ = h.predict_dti(f, gradients={args.target: gradients}, masks={args.target: tf.mask})[args.target]
        cells = []
        for m in masks.values():
            d = fa[m] - clean_fa[m]
            cells += [f"{np.abs(d).mean():.4f}", f"{d.mean():+.4f}"]
        wm = masks["white matter"]
        print(f"| {name} | " + " | ".join(cells) + f" | {1e5 * np.abs(md[wm] - clean_md[wm]).mean():.2f} |")


if __name__ == "__main__":
    main()
