"""A 2D flow trained on crops, applied to such crops and to whole slices: does it matter?

The IHF-Harmony flows normalize their features with statistics over the image they are given
(instance statistics in the artefact-aware normalization). Trained on 64 x 64 crops inside the
brain's extent, a flow sees at apply time whole slices with their background, whose statistics
differ. This applies a trained 2D flow to test subjects' images twice, whole (as the harmonizer
does) and with the input cut to the 64 x 64 window around the brain's in-plane centre (as the
flow was trained), the target's style code in both as the harmonizer takes it (from the target's
whole brain), from each training site to the next, and scores both against the truth in that
window (SSIM inside the brain; the median of output over truth inside the brain).

Usage:
    python benchmarks/flow_crops.py RUN DATA [--subjects sub-06 sub-08] [--modalities T1w FLAIR] [--size 64]

RUN: a 2D IHF-Harmony run (``benchmarks/flow.py`` writes DIR/run-ihf); DATA: its structural data.
Prints a Markdown table; writes nothing.
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("data")
    ap.add_argument("--subjects", nargs="+", help="default: the run's test subjects")
    ap.add_argument("--modalities", nargs="+", default=["T1w", "FLAIR"])
    ap.add_argument("--size", type=int, default=64, help="the crop's edge, as trained")
    args = ap.parse_args()

    from mrharmony.data.structural import load_structural
    from mrharmony.structural.ihf import IHFHarmonizer
    from mrharmony.structural.metrics import ssim_psnr

    h = IHFHarmonizer.load(args.run)
    ds = load_structural(args.data)
    subjects = args.subjects or h.split["test"]
    reference = h.split["validation"][0]  # the one target image of a site, as the benchmark takes it
    sites = list(h.training_sites)
    print(f"{args.run}: {h.name}; test subjects {', '.join(subjects)}; the target image of a site: {reference}'s\n")
    print("| modality | subject | sites | SSIM, whole slices | SSIM, crops | median out / truth, whole | crops |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    gains = []
    for mod in args.modalities:
        for subject in subjects:
            for i, j in zip(sites, sites[1:] + sites[:1]):
                x, _ = ds.load_image(subject, i, mod)
                truth, _ = ds.load_image(subject, j, mod)
                target, _ = ds.load_image(reference, j, mod)
                mask, target_mask = ds.load_mask(subject, x), ds.load_mask(reference, target)
                whole = h.transform(x, target=target, mask=mask, target_mask=target_mask).image
                centre = np.argwhere(mask).mean(0).round().astype(int)[:2]
                window = tuple(
                    slice(max(0, int(c) - args.size // 2), max(0, int(c) - args.size // 2) + args.size) for c in centre
                )
                crop = h.transform(x[window], target=target, mask=mask[window], target_mask=target_mask).image
                m, t = mask[window], truth[window]
                s_whole, s_crop = ssim_psnr(whole[window], t, m)[0], ssim_psnr(crop, t, m)[0]
                gains.append(s_crop - s_whole)
                print(
                    f"| {mod} | {subject} | {i} -> {j} | {s_whole:.4f} | {s_crop:.4f} | "
                    f"{np.median(whole[window][m]) / np.median(t[m]):.3f} | {np.median(crop[m]) / np.median(t[m]):.3f} |",
                    flush=True,
                )
    print(
        f"\nSSIM on crops minus on whole slices: mean {np.mean(gains):+.4f}, range {min(gains):+.4f} to "
        f"{max(gains):+.4f} over {len(gains)} images"
    )


if __name__ == "__main__":
    main()
