"""IHF-Harmony against HAIL, histogram matching and no harmonization, per modality.

On the synthetic multi-site data with T1w, T2w and FLAIR (``mrharmony simulate --kind
structural``, ``--preset``, default demo: 8 subjects, 5 sites, two held out of training):

1. IHF-Harmony trained on unpaired crops of the training sites and subjects, all three
   modalities, with the packaged defaults (2D, slices; 64 x 64 crops, minibatch 8, 20 epochs of
   the feature autoencoder and 40 of the flow, 40 steps each);
   HAIL trained on the T1w images of the same sites and subjects (or ``--hail-run``);
2. every held-out test subject harmonized from each site to each other site, per modality;
   the one target image of a site is the validation subject's image on it; scored by
   :func:`mrharmony.structural.metrics.evaluate_structural` (SSIM / PSNR against the truth,
   nWD, rAVD and the Dice overlap of the tissue segmentations of output and input), plus, for
   IHF-Harmony, the relative error of the input restored from its harmonized image through the
   inverse flow (``roundtrip``);
3. paired Wilcoxon tests of IHF-Harmony against each other method on SSIM and nWD(t,p), per
   modality and group of pairs, Bonferroni-corrected over all of them.

Usage:
    python benchmarks/flow.py --out DIR [--preset demo] [--training-preset demo] [--hail-run RUN]

Writes DIR/data, DIR/run-ihf, DIR/run-hail, DIR/rows.csv, DIR/summary.json and DIR/table.md;
existing data and finished runs are reused, interrupted runs resumed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--preset", default="demo", choices=["tiny", "demo", "full"], help="simulated data size")
    ap.add_argument("--training-preset", default="demo", choices=["test", "demo", "full"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hail-run", help="a HAIL run on the same data and split (default: trained here)")
    ap.add_argument("--modalities", nargs="+", default=["T1w", "T2w", "FLAIR"])
    args = ap.parse_args()

    from structural_common import structural_data, write_results

    from mrharmony.structural.metrics import baseline_harmonizers, evaluate_structural
    from mrharmony.structural.hail import harmonize, load_hail
    from mrharmony.structural.ihf import harmonize_flow, load_ihf, restore_flow
    from mrharmony.structural.training import train_or_resume

    out = Path(args.out)
    data, ds = structural_data(out, args.preset, args.seed)
    crop = 64 if args.preset != "tiny" else 16
    t0 = time.perf_counter()
    ihf_run = train_or_resume({"preset": args.training_preset,
                               "data": {"dataset": str(data.resolve()), "modalities": args.modalities,
                                        "crop_size": crop},
                               "model": {"method": "ihf"},
                               "training": {"batch_size": 8, "pretrain_epochs": 20, "epochs": 40}}, out / "run-ihf")
    seconds_ihf = time.perf_counter() - t0
    hail_run = Path(args.hail_run) if args.hail_run else train_or_resume(
        {"preset": args.training_preset, "data": {"dataset": str(data.resolve()), "modalities": ["T1w"]},
         "model": {"method": "hail"}}, out / "run-hail")
    flow, meta = load_ihf(ihf_run)
    hail, hail_meta = load_hail(hail_run)
    split = meta["split"]
    if hail_meta["split"] != split or hail_meta["training_sites"] != meta["training_sites"]:
        raise SystemExit(f"{hail_run} was trained on another split or other sites than {ihf_run}.")

    def ihf(x, m, t, tm):
        pred, scale = harmonize_flow(flow, x, m, t, tm)
        back = restore_flow(flow, pred, t, tm, scale)
        return pred, {"roundtrip": float(np.linalg.norm(back - x) / np.linalg.norm(x))}

    rows = []
    t0 = time.perf_counter()
    for modality in args.modalities:
        harmonizers = {"ihf": ihf, **baseline_harmonizers(("none", "nyul"))}
        if modality == "T1w":
            harmonizers["hail"] = lambda x, m, t, tm: harmonize(hail, x, m, t, tm)
        rows += evaluate_structural(ds, harmonizers=harmonizers, subjects=split["test"],
                                    reference_subject=split["validation"][0], seen_sites=meta["training_sites"],
                                    modality=modality)
    seconds = time.perf_counter() - t0
    roundtrip = [r["roundtrip"] for r in rows if "roundtrip" in r]
    write_results(out, rows, {
        "preset": args.preset, "training_preset": args.training_preset, "seed": args.seed,
        "test_subjects": split["test"], "one_shot_reference_subject": split["validation"][0],
        "training_sites": meta["training_sites"], "unseen_sites": ds.unseen_sites,
        "ihf_training_seconds": round(seconds_ihf, 1), "evaluation_seconds": round(seconds, 1),
        "roundtrip_relative_error": {"max": max(roundtrip), "median": float(np.median(roundtrip))},
    }, reference="ihf", extra_metrics=("roundtrip",))
    print(f"round trip (input restored from its harmonized image): max relative error {max(roundtrip):.2e}")


if __name__ == "__main__":
    main()
