"""How much of the normalized SH variance of each scan is measurement noise.

The patch MSE of the MSP paper is computed on SH coefficients normalized per channel, so every
channel weighs the same. Noise in the DWI propagates to each coefficient with the variance gain
of the (regularized) SH fit; relative to the channel's variance across the brain it gives the
share of that channel that no harmonization can predict (the target's own noise). This script
estimates it per scan: the noise sigma from the differences of the b=0 volumes (NEMA), divided
by each voxel's mean b=0 signal, times the fit's gain, averaged over the mask, over the
channel's variance.

Usage:
    python benchmarks/noise_floor.py DATASET [--subject sub-06]

Prints, per platform, the noise share of the normalized variance, averaged over channels and
per SH order.
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("--subject")
    args = ap.parse_args()

    from mrharmony.data import load_dataset
    from mrharmony.dmri.features.prepare import load_features
    from mrharmony.dmri.features.sh import (
        SHConfig,
        b0_normalize,
        sh_matrices,
        sh_orders,
    )

    ds = load_dataset(args.dataset, check_data=False)
    subject = args.subject or ds.subjects[-1]
    print("| platform | mean over channels | l = 0 | l = 2 | l = 4 | l = 6 |\n| --- | --- | --- | --- | --- | --- |")
    for name in ds.platforms:
        f = load_features(ds, subject, name, normalized=False)
        cfg = f.sh
        scan = ds.scan(subject, name)
        dwi, _ = scan.load_dwi()
        mask = scan.load_mask()
        bvals, bvecs = scan.gradients()
        _, sel, s0 = b0_normalize(dwi, bvals, mask, cfg)
        b0 = dwi[..., bvals <= cfg.b0_threshold][mask]
        sigma = float(np.std(np.diff(b0, axis=1))) / np.sqrt(2)
        ok = s0[mask] > 0
        rel2 = (sigma / s0[mask][ok]) ** 2
        _, inv_b = sh_matrices(bvecs[sel], SHConfig(**cfg.model_dump()))
        gain = (inv_b**2).sum(axis=0)
        share = (rel2[:, None] * gain[None, :]).mean(axis=0) / f.stats.std**2
        orders = sh_orders(cfg.sh_order_max)
        per = [share[orders == l].mean() for l in sorted(set(orders.tolist()))]
        print(
            f"| {name} | {share.mean():.2f} | " + " | ".join(f"{v:.3f}" if v < 0.1 else f"{v:.2f}" for v in per) + " |"
        )


if __name__ == "__main__":
    main()
