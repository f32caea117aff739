"""How much the simulated platforms differ: mean white-matter FA and MD of the same heads.

For every subject of a dataset made by ``mrharmony simulate`` and every platform, a DTI fit
(dipy, weighted least squares) of the scan as stored (noisy) and rendered again without noise
(``render_scan(noise=False)``), averaged over the subject's white matter (truth fraction >= 0.9 on
the platform's grid, inside the brain mask). Each target's difference from the input platform is
given in percent, mean and range over subjects: what the ``none`` row of the dMRI benchmark
starts from, to set beside published traveling-head differences (docs/results.md).

Usage:
    python benchmarks/platform_differences.py DATASET [--out FILE.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np

from mrharmony.bench.summary import dump_json


def wm_on_grid(root: Path, subject: str, factor: int) -> np.ndarray:
    """The subject's white-matter fraction (truth, fine grid) averaged onto a platform grid."""
    from mrharmony.registration import block_mean

    t = np.asanyarray(nib.load(root / "truth" / subject / "tissue.nii.gz").dataobj)[..., 0].astype(np.float32)
    return block_mean(t, factor)


def wm_means(dwi: np.ndarray, bvals, bvecs, mask: np.ndarray) -> tuple[float, float]:
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel

    fit = TensorModel(gradient_table(bvals, bvecs=bvecs), fit_method="WLS").fit(dwi, mask=mask)
    return float(fit.fa[mask].mean()), float(fit.md[mask].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("--out", help="JSON file for the per-subject values and the summary")
    args = ap.parse_args()

    from mrharmony.data import load_dataset
    from mrharmony.simulate import render_scan

    root = Path(args.dataset)
    ds = load_dataset(root, check_data=False)
    names = [ds.input_platform.name] + [p.name for p in ds.target_platforms]
    values: dict = {}
    for subject in ds.subjects:
        for name in names:
            scan = ds.scan(subject, name)
            dwi, _ = scan.load_dwi()
            bvals, bvecs = scan.gradients()
            k = int(round(ds.platforms[name].voxel_size[0] / 1.2))
            wm = (wm_on_grid(root, subject, k) >= 0.9) & scan.load_mask()
            clean = render_scan(root, subject, name, noise=False)
            values.setdefault(name, []).append(
                {
                    "subject": subject,
                    "noisy": wm_means(dwi.astype(np.float32), bvals, bvecs, wm),
                    "noiseless": wm_means(clean.dwi, bvals, bvecs, wm),
                }
            )
    summary = {}
    ref = names[0]
    lines = [
        f"Mean white-matter FA and MD per platform, {len(ds.subjects)} subjects of {root}; difference from "
        f"{ref} in percent, mean [min, max] over subjects.",
        "",
        "| platform | FA | MD (1e-3 mm^2/s) | FA vs input | MD vs input | FA vs input, noiseless | "
        "MD vs input, noiseless |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in names:
        row = {}
        for kind in ("noisy", "noiseless"):
            for i, metric in enumerate(("fa", "md")):
                v = np.array([s[kind][i] for s in values[name]])
                r = np.array([s[kind][i] for s in values[ref]])
                d = 100 * (v - r) / r
                row[f"{metric}_{kind}"] = float(v.mean())
                row[f"{metric}_{kind}_vs_input_percent"] = {
                    "mean": float(d.mean()),
                    "range": [float(d.min()), float(d.max())],
                }
        summary[name] = row

        def pct(key, row=row):
            p = row[key]
            return f"{p['mean']:+.1f} [{p['range'][0]:+.1f}, {p['range'][1]:+.1f}]"

        lines.append(
            f"| {name} | {row['fa_noisy']:.3f} | {1e3 * row['md_noisy']:.3f} | "
            f"{pct('fa_noisy_vs_input_percent')} | {pct('md_noisy_vs_input_percent')} | "
            f"{pct('fa_noiseless_vs_input_percent')} | {pct('md_noiseless_vs_input_percent')} |"
        )
    print("\n".join(lines))
    if args.out:
        dump_json(
            Path(args.out),
            {"dataset": str(root), "subjects": ds.subjects, "summary": summary, "values": values},
            indent=2,
        )


if __name__ == "__main__":
    main()
