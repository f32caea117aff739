"""Where a harmonizer's FA and MD errors come from: per tissue of the simulated truth.

For the held-out subjects of the given runs (simulated data) and one target, every run's FA and
MD through the evaluation's one path (``Harmonizer.dti_of``), against the noiseless target: the
mean absolute error and the mean signed error (bias) of FA, and the mean absolute error of MD,
in voxels that are at least 90% white matter, grey matter or CSF in the truth, in the other
brain voxels (partial volume: at 2.4 mm, most of the brain), and in all of them; with the
``none`` row (no harmonization) and the ``rescan`` floor. A smooth prediction lowers FA in white
matter (a negative bias there); noise raises FA where it is low (a positive bias in grey matter
and CSF); a voxel that mixes tissues has an MD that moves with the partial volume of CSF, so
blur and misregistration show there first.

With ``--distance``, also each row's median signed relative MD error (against the noiseless
target) by distance from the brain's centroid: the gradient coils' non-linearity lowers the
effective b-value away from the isocentre, differently on each scanner, which shows there as an
MD error that changes with the distance.

Usage:
    python benchmarks/errors_by_tissue.py RUN_DIR ... [--target prisma_st] [--subject S ...] [--distance]
"""

from __future__ import annotations

import argparse

import nibabel as nib
import numpy as np

TISSUES = {"white matter": 0, "grey matter": 1, "CSF": 2}  # channels of truth/<subject>/tissue.nii.gz
DISTANCE_BINS = ((0, 30), (30, 50), (50, 65), (65, 80), (80, 200))  # mm from the brain's centroid


def tissue_groups(ds, subject: str, target: str, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Voxels of ``mask`` at least 90% one tissue of the truth, the rest (partial volume), and all."""
    from mrharmony.registration import block_mean

    factor = int(round(ds.platforms[target].voxel_size[0] / 1.2))  # the truth's grid is 1.2 mm
    tissue = np.asanyarray(nib.load(ds.root / "truth" / subject / "tissue.nii.gz").dataobj).astype(np.float32)
    groups = {name: (block_mean(tissue[..., c], factor) >= 0.9) & mask for name, c in TISSUES.items()}
    groups["partial volume"] = mask & ~np.logical_or.reduce(list(groups.values()))
    groups["all"] = np.asarray(mask, bool)
    return groups


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--target", default="prisma_st")
    ap.add_argument("--subject", nargs="+", help="default: the runs' held-out subjects")
    ap.add_argument("--distance", action="store_true", help="also the MD error by distance from the brain's centre")
    args = ap.parse_args()

    from mrharmony.dmri.evaluate import TargetReference, table_rows_of
    from mrharmony.dmri.features.prepare import load_features

    rows = table_rows_of(args.runs)
    ds = rows.dataset
    subjects = args.subject or rows.data.test_subjects or [ds.subjects[-1]]
    entries = [(n, h) for n, h in zip(rows.names, rows.harmonizers) if args.target in h.targets]
    entries.append(("rescan", None))
    for subject in subjects:
        ref = TargetReference(ds, subject)
        if not ref.simulated:
            raise SystemExit(f"{ds.root}: is not simulated; the tissues come from its truth.")
        tf, gradients = ref.scan(args.target)
        groups = tissue_groups(ds, subject, args.target, tf.mask)
        f = load_features(ds, subject, ds.input_platform.name)
        clean_fa, clean_md, _ = ref.maps("noiseless", args.target, tf.mask)
        share = ", ".join(f"{k} {m.sum() / tf.mask.sum():.0%}" for k, m in groups.items() if k != "all")
        print(
            f"\n{subject}, {args.target}: FA and MD against the noiseless target, per tissue of the truth "
            f"(share of the brain's voxels: {share}); FA MAE / FA bias / MD MAE (1e-5 mm^2/s)\n"
        )
        print("| row | " + " | ".join(groups) + " |")
        print("|" + " --- |" * (len(groups) + 1))
        voxels = np.argwhere(tf.mask)
        distance = np.linalg.norm((voxels - voxels.mean(0)) * ds.platforms[args.target].voxel_size[0], axis=1)
        by_distance = []
        for name, h in entries:
            if h is None:
                fa, md, _ = ref.maps("rescan", args.target, tf.mask)
            elif h.predicts_sh:
                fa, md, _ = h.dti_of(h.predict(f)[args.target], args.target, tf.mask, gradients=gradients)
            else:
                fa, md, _ = h.predict_dti(f, gradients={args.target: gradients}, masks={args.target: tf.mask})[
                    args.target
                ]
            cells = []
            for m in groups.values():
                d = fa[m] - clean_fa[m]
                cells.append(
                    f"{np.abs(d).mean():.4f} / {d.mean():+.4f} / {1e5 * np.abs(md[m] - clean_md[m]).mean():.2f}"
                )
            print(f"| {name} | " + " | ".join(cells) + " |")
            rel = md[tf.mask] / np.maximum(clean_md[tf.mask], 1e-6) - 1
            by_distance.append((name, [np.median(rel[(distance >= a) & (distance < b)]) for a, b in DISTANCE_BINS]))
        if args.distance:
            print(
                f"\n{subject}, {args.target}: median signed relative MD error against the noiseless target, by "
                "distance from the brain's centroid (mm)\n"
            )
            print("| row | " + " | ".join(f"{a}-{b}" for a, b in DISTANCE_BINS) + " |")
            print("|" + " --- |" * (len(DISTANCE_BINS) + 1))
            for name, values in by_distance:
                print(f"| {name} | " + " | ".join(f"{v:+.3f}" for v in values) + " |")


if __name__ == "__main__":
    main()
