"""IHF-Harmony against HAIL, histogram matching and no harmonization, per modality.

On the synthetic multi-site data with T1w, T2w and FLAIR (``mrharmony simulate --kind
structural``, ``--preset``, default demo: 8 subjects, 5 sites, two held out of training):

1. IHF-Harmony trained on unpaired crops of the training sites and subjects, all three
   modalities, 2D (slices; 64 x 64 crops inside the brain's extent at a constant learning rate, or
   with ``--recipe slices`` whole slices with a cosine decay of the learning rate, as the
   IHF-Harmony code trains; minibatch 8, 20 epochs of the feature autoencoder and 40 of the flow
   (``--epochs``), 40 steps each), twice: the paper's hierarchy flow (``ihf``) and this project's
   exactly invertible squeeze variant (``ihf_squeeze``); with ``--recipe slices`` the paper's flow
   trained on crops for as many epochs (DIR/run-ihf[-e<N>], where it exists) is scored beside them
   as ``ihf (crops)``;
   HAIL (the paper's model; its row is named by the model) trained on the T1w images of the same
   sites and subjects (or ``--hail-run``);
2. every held-out test subject harmonized from each site to each other site, per modality;
   the one target image of a site is the validation subject's image on it; scored by
   :func:`mrharmony.structural.evaluate.compare_harmonizers` (SSIM / PSNR against the truth,
   nWD, rAVD and the Dice overlap of the tissue segmentations of output and input), plus, for
   the invertible ``ihf_squeeze``, the relative error of the input restored from its harmonized
   image through the inverse flow (``roundtrip``);
3. means over the test subjects with 95% bootstrap intervals over them, and paired Wilcoxon
   tests over subjects of IHF-Harmony against each other method on SSIM and nWD(t,p), per
   modality and group of pairs, Bonferroni-corrected over all of them. With
   ``--extra-test-subjects N`` the test subjects are the split's two and N more people simulated
   beside the data (``DIR/data-plus-N``, the training data's subjects repeated image for image),
   never seen in training.

With ``--dims 3`` the flow works on volumes instead of slices: only ``ihf_squeeze`` (the paper's
hierarchy flow is 2D), on 32^3 crops, minibatch 2, as many epochs and steps as in 2D, against no
harmonization and Nyul histogram matching, scored the same way; its files go to DIR/3d (the data
are shared with the 2D run).

Usage:
    python benchmarks/flow.py --out DIR [--preset demo] [--training-preset demo] [--hail-run RUN] [--dims 3]
        [--epochs N] [--recipe {crops,slices}] [--extra-test-subjects N]

Writes DIR/data, DIR/run-ihf, DIR/run-ihf_squeeze, DIR/run-hail, DIR/rows.csv, DIR/evaluation.json and DIR/table.md
(flows trained otherwise than by default: DIR/run-<flow>-e<N>-slices and DIR/results-e<N>-slices/...;
with ``--dims 3``: DIR/run-ihf_squeeze-3d and DIR/3d/rows.csv, evaluation.json, table.md);
existing data and finished runs are reused, interrupted runs resumed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mrharmony.bench.structural import add_jobs

#: epochs of the flow stage at the demo training preset (40 steps each)
DEFAULT_EPOCHS = 40


#: how the 2D flows are trained: on 64 x 64 crops inside the brain's extent at a constant learning
#: rate, or as the IHF-Harmony code trains, on whole slices (as the flow is applied) with a cosine
#: decay of the learning rate
RECIPES = {"crops": ({"crop_size": 64}, {}), "slices": ({"crop_size": "slice"}, {"lr_schedule": "cosine"})}


def run_suffix(epochs: int, recipe: str = "crops") -> str:
    """What names a run (and its results) trained otherwise than by default: ``-e<epochs>``, ``-<recipe>``."""
    return (f"-e{epochs}" if epochs != DEFAULT_EPOCHS else "") + (f"-{recipe}" if recipe != "crops" else "")


def run_dir(out: Path, name: str, epochs: int, recipe: str = "crops") -> Path:
    """``out/run-<name>``, with :func:`run_suffix` for a flow trained otherwise than by default."""
    return out / f"run-{name}{run_suffix(epochs, recipe)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--preset", default="demo", choices=["tiny", "demo", "full"], help="simulated data size")
    ap.add_argument("--training-preset", default="demo", choices=["test", "demo", "full"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hail-run", help="a HAIL run on the same data and split (default: trained here)")
    ap.add_argument("--modalities", nargs="+", default=["T1w", "T2w", "FLAIR"])
    ap.add_argument(
        "--epochs",
        type=int,
        default=DEFAULT_EPOCHS,
        help=f"epochs of the flow (after 20 of the feature autoencoder), for both flows; runs of "
        f"other than {DEFAULT_EPOCHS} go to DIR/run-<flow>-e<N>, their results to DIR/results-e<N>",
    )
    ap.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default="crops",
        help="2D training: 64 x 64 crops at a constant learning rate (crops), or whole slices with a "
        "cosine decay, as the IHF-Harmony code trains (slices); runs and results of 'slices' go "
        "to DIR/run-<flow>[-e<N>]-slices and DIR/results[-e<N>]-slices",
    )
    ap.add_argument(
        "--extra-test-subjects",
        type=int,
        default=0,
        metavar="N",
        help="also score N more simulated people, never seen in training (intervals over subjects)",
    )
    ap.add_argument(
        "--dims",
        type=int,
        choices=[2, 3],
        default=2,
        help="3: the squeeze flow on volumes (3D crops) instead of slices",
    )
    add_jobs(ap)
    args = ap.parse_args()
    if args.dims == 3 and args.recipe != "crops":
        ap.error("--recipe slices trains the 2D flows (whole slices); the 3D flow trains on crops.")
    if args.dims == 3:
        return volumes(args)

    from mrharmony.bench.structural import (
        evaluation_data,
        structural_data,
        train_or_resume,
        write_results,
    )
    from mrharmony.structural.evaluate import compare_harmonizers
    from mrharmony.structural.hail import HAILHarmonizer
    from mrharmony.structural.ihf import IHFHarmonizer

    out = Path(args.out)
    data, ds = structural_data(out, args.preset, args.seed)
    data_recipe, training_recipe = RECIPES[args.recipe]
    if args.preset == "tiny" and args.recipe == "crops":
        data_recipe = {"crop_size": 16}
    seconds = {}
    flows = {}
    for name, model in (
        ("ihf", {"method": "ihf", "flow": "hierarchy"}),
        ("ihf_squeeze", {"method": "ihf", "flow": "squeeze"}),
    ):
        t0 = time.perf_counter()
        flows[name] = train_or_resume(
            IHFHarmonizer,
            {
                "preset": args.training_preset,
                "data": {"dataset": str(data.resolve()), "modalities": args.modalities, **data_recipe},
                "model": model,
                "training": {"batch_size": 8, "pretrain_epochs": 20, "epochs": args.epochs, **training_recipe},
            },
            run_dir(out, name, args.epochs, args.recipe),
        )
        seconds[name] = round(time.perf_counter() - t0, 1)
    ihf = flows["ihf"]
    hail_config = {
        "preset": args.training_preset,
        "data": {"dataset": str(data.resolve()), "modalities": ["T1w"]},
        "model": {"method": "hail"},
    }
    hail = (
        HAILHarmonizer.load(args.hail_run)
        if args.hail_run
        else train_or_resume(HAILHarmonizer, hail_config, out / "run-hail")
    )
    if hail.split != ihf.split or hail.training_sites != ihf.training_sites:
        raise SystemExit(f"{hail.model_file} was trained on another split or other sites than {ihf.model_file}.")
    hail.modalities = ["T1w"]  # HAIL is scored on T1w images only
    if flows["ihf_squeeze"].split != ihf.split:
        raise SystemExit(f"{flows['ihf_squeeze'].model_file} was trained on another split than {ihf.model_file}.")
    rows = [ihf, flows["ihf_squeeze"], "none", "nyul", hail]
    crops_run = run_dir(out, "ihf", args.epochs)
    if args.recipe != "crops" and (crops_run / "model.pt").exists():  # the paper's flow trained on crops, paired
        on_crops = IHFHarmonizer.load(crops_run)
        if on_crops.split == ihf.split and on_crops.training_sites == ihf.training_sites:
            on_crops.name = "ihf (crops)"
            rows.insert(1, on_crops)
        else:
            print(f"{crops_run} was trained on another split or other sites: not scored beside the flows")
    scored, split = evaluation_data(out, args.preset, args.seed, ds, ihf, args.extra_test_subjects)
    ev = compare_harmonizers(scored, rows, modalities=args.modalities, reference="ihf", split=split, jobs=args.jobs)
    suffix = run_suffix(args.epochs, args.recipe)
    write_results(
        out / f"results{suffix}" if suffix else out,
        ev,
        args,
        training_sites=ihf.training_sites,
        unseen_sites=ds.unseen_sites,
        training_seconds=seconds,
        recipe=args.recipe,
        epochs=args.epochs,
    )


def volumes(args) -> None:
    """The squeeze flow in 3D against none and Nyul: DIR/run-ihf_squeeze-3d, results in DIR/3d."""
    from mrharmony.bench.structural import (
        evaluation_data,
        structural_data,
        train_or_resume,
        write_results,
    )
    from mrharmony.structural.evaluate import compare_harmonizers
    from mrharmony.structural.ihf import IHFHarmonizer

    out = Path(args.out)
    data, ds = structural_data(out, args.preset, args.seed)
    t0 = time.perf_counter()
    flow = train_or_resume(
        IHFHarmonizer,
        {
            "preset": args.training_preset,
            "data": {
                "dataset": str(data.resolve()),
                "modalities": args.modalities,
                "crop_size": 32 if args.preset != "tiny" else 16,
            },
            "model": {"method": "ihf", "flow": "squeeze", "dims": 3},
            "training": {"batch_size": 2, "pretrain_epochs": 20, "epochs": args.epochs},
        },
        run_dir(out, "ihf_squeeze-3d", args.epochs),
    )
    flow.name = f"{flow.name} (3D)"
    seconds = round(time.perf_counter() - t0, 1)
    scored, split = evaluation_data(out, args.preset, args.seed, ds, flow, args.extra_test_subjects)
    ev = compare_harmonizers(
        scored, [flow, "none", "nyul"], modalities=args.modalities, reference=flow.name, split=split, jobs=args.jobs
    )
    write_results(
        out / "3d",
        ev,
        args,
        training_sites=flow.training_sites,
        unseen_sites=ds.unseen_sites,
        dims=3,
        training_seconds={flow.name: seconds},
    )


if __name__ == "__main__":
    main()
