"""How far a target scan's expected FA and MD lie from its noiseless truth: the magnitude noise floor.

A magnitude image's noise does not average out: at low signal (high b, low SNR) the expected
magnitude lies above the signal (Rician for one coil channel, non-central chi for several), and
DTI fitted to it gives a lower MD and a different FA than the noiseless signal does. A network
trained to predict a target scan learns, at best, the scan's expected value; scored against the
noiseless truth it is then wrong by this bias, however well it is trained. This script measures
the bias through the evaluation's one path (``TargetReference`` and ``Harmonizer.dti_of``, on the
benchmark's seeded sample of brain voxels):

- ``expected scan``: the noiseless render of the target, each DWI value replaced by the expected
  magnitude of the platform's noise model (sigma estimated from the stored scan's b=0 volumes
  against the noiseless render; coils from ``simulation.yaml``), fitted and normalized as the
  scan is;
- ``scan`` and ``rescan``: the stored scan and a second session, for scale.

Each against the noiseless target (mean absolute and mean signed FA and MD differences) and
against the target scan (mean absolute differences).

Usage:
    python benchmarks/magnitude_bias.py DATASET RUN [--subjects sub-02 sub-08] [--targets ...]
        [--voxels 40000] [--out FILE.json]

``RUN``: any trained run of the dataset whose targets include those asked for (its harmonizer
gives the path from features to DTI; the path does not depend on its weights).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from mrharmony.bench.summary import dump_json


def expected_magnitude(nu: np.ndarray, sigma: float, coils: int) -> np.ndarray:
    """E|S + noise| of a root-sum-of-squares combination of ``coils`` channels, complex Gaussian
    noise of std ``sigma`` per real component: the mean of a non-central chi distribution with
    2 ``coils`` degrees of freedom, scaled by sigma (Rician for one coil)."""
    from scipy.special import gammaln, hyp1f1

    x = -(np.asarray(nu, np.float64) ** 2) / (2 * sigma**2)
    scale = sigma * math.sqrt(2) * math.exp(gammaln(coils + 0.5) - gammaln(coils))
    out = np.empty_like(x)
    small = x > -400  # beyond that (signal over 28 sigma), two terms of the asymptotic series, within 1e-5 sigma
    out[small] = scale * hyp1f1(-0.5, coils, x[small])
    big = ~small
    n = np.abs(np.asarray(nu, np.float64)[big])
    out[big] = n + (2 * coils - 1) * sigma**2 / (2 * n)
    return out


def noise_sigma(scan_dwi: np.ndarray, clean_dwi: np.ndarray, b0: np.ndarray, mask: np.ndarray) -> float:
    """The noise std per real component, from the stored scan's b=0 volumes against the noiseless
    render, where the signal is high enough for the magnitude's noise to be Gaussian."""
    m = scan_dwi[..., b0][mask].astype(np.float64)
    c = clean_dwi[..., b0][mask].astype(np.float64)
    sigma = float(np.std(m - c))
    for _ in range(3):
        high = c > 8 * sigma
        sigma = float(np.std((m - c)[high]))
    return sigma


def bias_of(y: np.ndarray, h, reference, target: str, where: np.ndarray) -> dict:
    """FA and MD differences of raw SH coefficients ``y`` from the noiseless target's (absolute and
    signed means), and from the target scan's (absolute means, ``*_scan``), on the voxels ``where``."""
    from mrharmony.dmri.features.dti import dti_from_sh

    tf, gradients = reference.scan(target)
    fa, md, _ = dti_from_sh(y, *gradients, tf.sh, where)
    fa_c, md_c = reference.noiseless_dti(target, where)
    fa_s, md_s = reference.dti(target, where)
    dfa, dmd = (fa - fa_c)[where], (md - md_c)[where]
    return {
        "fa_mae": float(np.abs(dfa).mean()),
        "fa_mean_diff": float(dfa.mean()),
        "md_mae": float(np.abs(dmd).mean()),
        "md_mean_diff": float(dmd.mean()),
        "fa_mae_scan": float(np.abs(fa - fa_s)[where].mean()),
        "md_mae_scan": float(np.abs(md - md_s)[where].mean()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("run")
    ap.add_argument("--subjects", nargs="+")
    ap.add_argument("--targets", nargs="+")
    ap.add_argument("--voxels", type=int, default=40000, help="seeded brain voxels per subject and target")
    ap.add_argument("--out", help="also write the numbers to this JSON file")
    args = ap.parse_args()

    from mrharmony.config import read_yaml
    from mrharmony.data import load_dataset
    from mrharmony.dmri.evaluate import TargetReference
    from mrharmony.dmri.features.sh import fit_sh
    from mrharmony.dmri.loading import load_harmonizer
    from mrharmony.simulate import render_scan

    ds = load_dataset(args.dataset, check_data=False)
    h = load_harmonizer(args.run)
    coils = {
        p["name"]: int(p.get("noise_coils", 1)) for p in read_yaml(Path(args.dataset) / "simulation.yaml")["platforms"]
    }
    results = []
    print(
        "| subject | target | sigma / b0 (90th centile) | row | FA MAE | FA mean diff | MD MAE (1e-5) | MD mean diff (1e-5) "
        "| FA MAE vs scan | MD MAE vs scan (1e-5) |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    for subject in args.subjects or ds.subjects[-1:]:
        ref = TargetReference(ds, subject, max_voxels=args.voxels)
        for t in args.targets or h.targets:
            tf, (bvals, bvecs) = ref.scan(t)
            where = ref.sample(t, tf.mask)
            clean = render_scan(ds.root, subject, t, noise=False)
            stored, _ = ds.scan(subject, t).load_dwi()
            b0 = bvals <= tf.sh.b0_threshold
            sigma = noise_sigma(stored, clean.dwi, b0, tf.mask)
            expected = np.zeros_like(clean.dwi)
            expected[where] = expected_magnitude(clean.dwi[where], sigma, coils[t])
            y = fit_sh(expected, bvals, bvecs, where, tf.sh)
            b0_p90 = float(np.percentile(clean.dwi[..., b0].mean(-1)[tf.mask], 90))
            rows = {
                "expected scan": bias_of(y, h, ref, t, where),
                "scan": bias_of(tf.data, h, ref, t, where),
                "rescan": bias_of(ref.rescan_features(t), h, ref, t, where),
            }
            for name, r in rows.items():
                results.append({"subject": subject, "target": t, "sigma": sigma, "row": name, **r})
                print(
                    f"| {subject} | {t} | {sigma / b0_p90:.3f} | {name} | {r['fa_mae']:.4f} | {r['fa_mean_diff']:+.4f} "
                    f"| {r['md_mae'] * 1e5:.2f} | {r['md_mean_diff'] * 1e5:+.2f} | {r['fa_mae_scan']:.4f} "
                    f"| {r['md_mae_scan'] * 1e5:.2f} |",
                    flush=True,
                )
    if args.out:
        dump_json(Path(args.out), results, indent=1)
    return 0


if __name__ == "__main__":
    from mrharmony.errors import InputError

    try:
        raise SystemExit(main())
    except InputError as e:  # a dataset not made by 'mrharmony simulate', a run of another dataset, ...
        print(f"magnitude_bias.py: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
