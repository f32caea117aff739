"""HAIL against the one-shot intensity baselines on the synthetic multi-site T1w data.

The HAIL paper's table (nWD(i,p), nWD(t,p), rAVD GM / WM) on our benchmark, seen and unseen
sites separately, plus SSIM / PSNR against the truth our simulator knows:

1. ``mrharmony simulate --kind structural`` data (``--preset``, default demo: 8 subjects, 5 sites,
   two of them held out of training);
2. HAIL trained on the training sites and training subjects (``mrharmony structural train``
   with the packaged defaults at the ``demo`` or ``full`` training preset, and at the ``demo``
   preset 12 autoencoder epochs and 12 of the decoder, the same for every HAIL row): the paper's
   model (``hail``: AdaIN on the deepest features, then the decoder; two levels) and the U-Net
   variant (``hail_unet``; three levels, 16, 32 and 64 channels, as in the demo); with
   ``--ablation`` also the paper's model without the consistency loss;
3. every held-out test subject harmonized from each site to each other site with every method;
   the one target image of a site is the validation subject's image on it (one-shot, never a
   test subject); scored by :func:`mrharmony.structural.evaluate.compare_harmonizers`, which
   every method enters as an :class:`~mrharmony.structural.harmonizer.ImageHarmonizer`;
4. means over the test subjects with 95% bootstrap intervals over them, and paired Wilcoxon
   signed-rank tests over subjects of HAIL against each other row on SSIM and on nWD(t,p), per
   group of pairs, Bonferroni-corrected over all of them.

Usage:
    python benchmarks/hail.py --out DIR [--preset demo] [--training-preset demo] [--ablation]
        [--extra-test-subjects N]

With ``--extra-test-subjects N`` the test subjects are the split's two and N more people
simulated beside the data (``DIR/data-plus-N``, the training data's subjects repeated image for
image), never seen in training: intervals and tests over subjects need more than two.

Writes DIR/data, DIR/run-hail, DIR/run-hail-unet (and DIR/run-hail-noconsistency), DIR/rows.csv (one row per
subject, site pair and method), DIR/evaluation.json and DIR/table.md. Existing data and finished
runs are reused; an interrupted run is resumed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mrharmony.bench.structural import add_jobs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--preset", default="demo", choices=["tiny", "demo", "full"], help="simulated data size")
    ap.add_argument("--training-preset", default="demo", choices=["test", "demo", "full"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--extra-test-subjects",
        type=int,
        default=0,
        metavar="N",
        help="also score N more simulated people, never seen in training (intervals over subjects)",
    )
    ap.add_argument(
        "--ablation", action="store_true", help="also train and score the paper's HAIL without the consistency loss"
    )
    add_jobs(ap)
    args = ap.parse_args()

    from mrharmony.bench.structural import (
        evaluation_data,
        structural_data,
        train_or_resume,
        write_results,
    )
    from mrharmony.structural.evaluate import compare_harmonizers
    from mrharmony.structural.hail import HAILHarmonizer
    from mrharmony.structural.registry import INTENSITY_METHODS

    out = Path(args.out)
    data, ds = structural_data(out, args.preset, args.seed)
    config = {
        "preset": args.training_preset,
        "data": {"dataset": str(data.resolve()), "modalities": ["T1w"]},
        "model": {"method": "hail"},
    }
    if args.training_preset == "demo":
        config["training"] = {"pretrain_epochs": 12, "epochs": 12}
    # rows named by the models themselves (a reused run of the U-Net is hail_unet, whatever its folder)
    paper = train_or_resume(HAILHarmonizer, config, out / "run-hail")
    unet = train_or_resume(
        HAILHarmonizer,
        {**config, "model": {"method": "hail", "skips": True, "widths": [16, 32, 64]}},
        out / "run-hail-unet",
    )
    methods = {paper.name: paper, unet.name: unet}
    if args.ablation:
        config["model"]["consistency_weight"] = 0.0
        ablated = train_or_resume(HAILHarmonizer, config, out / "run-hail-noconsistency")
        methods[f"{ablated.name} (no consistency)"] = ablated
    methods.update({m: m for m in INTENSITY_METHODS})
    scored, split = evaluation_data(out, args.preset, args.seed, ds, paper, args.extra_test_subjects)
    ev = compare_harmonizers(scored, methods, modalities=["T1w"], reference=paper.name, split=split, jobs=args.jobs)
    write_results(out, ev, args, training_sites=ds.train_sites, unseen_sites=ds.unseen_sites)


if __name__ == "__main__":
    main()
