"""Tiled whole-volume inference against patch-by-patch inference: same values, how much faster.

On a held-out subject's input volume of a prepared dataset and a trained run:

* tiled inference (:func:`mrharmony.dmri.inference.predict_volume`) of the whole volume, timed;
* the reference, one 11^3 patch per voxel with its output's centre kept
  (:func:`mrharmony.dmri.inference.predict_patchwise`), timed on a seeded sample of brain voxels and
  its rate extrapolated to every brain voxel (running it on all of them takes hours);
* the largest absolute difference between the two on the sampled voxels.

Usage:
    python benchmarks/inference.py RUN_DIR [--subject sub-06] [--sample 2000] [--tile 48]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--subject")
    ap.add_argument("--sample", type=int, default=2000)
    ap.add_argument("--tile", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from mrharmony.data import load_dataset
    from mrharmony.dmri.features.prepare import load_features
    from mrharmony.dmri.inference import predict_patchwise, predict_volume
    from mrharmony.dmri.models import load_model

    net, meta = load_model(args.run)
    ds = load_dataset(meta["data"]["dataset"], check_data=False)
    subject = args.subject or ds.subjects[-1]
    f = load_features(ds, subject, ds.input_platform.name)
    if meta.get("position_channels"):  # training.inputs: sh+position: the network reads them too
        from mrharmony.dmri.features.position import with_position

        f.data = with_position(f.data, f.mask, f.affine)
    sizes = {t: v[-1] for t, v in meta["output_sizes"].items()}
    t0 = time.perf_counter()
    full = predict_volume(
        net,
        f.data,
        output_sizes=sizes,
        ratios=meta["ratios"],
        patch=meta["patch_size"],
        tile=args.tile,
        out_channels=meta["in_channels"],
    )
    tiled_s = time.perf_counter() - t0
    brain = np.argwhere(f.mask)
    rng = np.random.default_rng(args.seed)
    sample = brain[rng.choice(len(brain), min(args.sample, len(brain)), replace=False)]
    t0 = time.perf_counter()
    ref = predict_patchwise(net, f.data, sample, output_sizes=sizes, ratios=meta["ratios"], patch=meta["patch_size"])
    patch_s = time.perf_counter() - t0
    diff = 0.0
    for t, r in meta["ratios"].items():
        blocks = np.stack(
            [full[t][a * r : (a + 1) * r, b * r : (b + 1) * r, d * r : (d + 1) * r] for a, b, d in sample]
        )
        diff = max(diff, float(np.abs(blocks - ref[t]).max()))
    patch_all_s = patch_s / len(sample) * len(brain)
    res = {
        "machine": f"{platform.node()} ({os.cpu_count()} cores)",
        "run": args.run,
        "method": meta["model"]["method"],
        "targets": meta["targets"],
        "subject": subject,
        "volume_shape": list(f.data.shape[:3]),
        "brain_voxels": int(len(brain)),
        "tile": args.tile,
        "tiled_seconds": round(tiled_s, 2),
        "patchwise_seconds_for_sample": round(patch_s, 2),
        "sample": int(len(sample)),
        "patchwise_seconds_all_brain_extrapolated": round(patch_all_s, 1),
        "speedup": round(patch_all_s / tiled_s, 1),
        "max_abs_difference": diff,
    }
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
