"""The structural wing: ``mrharmony structural VERB`` with the verbs of both wings (``train``,
``apply``, ``evaluate``, ``methods``) and its own: ``restore`` (the input back from an invertible
model's output) and ``metrics`` (of one harmonized image).

``train`` trains the method the config names (``model.method``), ``apply`` applies whichever
method the model file holds. Each verb's parser sits beside its handler; the handlers import
:mod:`mrharmony.structural` (and with it torch) when they run.
"""

from __future__ import annotations

from mrharmony.cli.common import add_force, add_methods, add_run_arguments, add_verbs, check_new_output, say


def add_structural(sp) -> None:
    add_verbs(
        sp,
        {
            "train": (add_train, "Train HAIL or IHF-Harmony, whichever the YAML config names (model.method)."),
            "apply": (
                add_apply,
                "Harmonize an image to the site of one target image (a HAIL or IHF-Harmony model, or a baseline) "
                "into an output folder.",
            ),
            "evaluate": (
                add_evaluate,
                "Evaluate trained models and intensity baselines on the held-out subjects of a "
                "structural dataset, seen and unseen sites, per modality, and write table.md, "
                "rows.csv and evaluation.json.",
            ),
            "methods": (lambda q: add_methods(q, registry), "List the structural methods: name, kind, summary."),
            "restore": (
                add_restore,
                "The input back from an image IHF-Harmony's squeeze variant (ihf_squeeze) "
                "harmonized (its exact inverse; what it needs is read from the image's sidecar).",
            ),
            "metrics": (add_metrics, "nWD(i,p), nWD(t,p), rAVD and Dice (GM, WM), and SSIM / PSNR against a truth."),
        },
    )


def registry():
    from mrharmony.structural.registry import REGISTRY

    return REGISTRY


def add_train(q) -> None:
    q.set_defaults(func=run_train)
    add_run_arguments(q)


def run_train(args) -> int:
    from mrharmony.structural.training import train_structural

    out = train_structural(
        args.config,
        args.out,
        resume=args.resume,
        force=args.force,
        quiet=args.quiet,
        stop_after_epochs=args.stop_after_epochs,
    )
    done = (out / "model.pt").is_file()
    say(args, f"{'trained' if done else 'stopped (resume with --resume)'}: {out}")
    return 0


def add_apply(q) -> None:
    q.set_defaults(func=run_apply)
    q.add_argument(
        "model",
        help="HAIL or IHF-Harmony run directory or model.pt, or an intensity baseline by name "
        "(see 'mrharmony structural methods')",
    )
    q.add_argument("--input", required=True, help="the image to harmonize (3D NIfTI)")
    q.add_argument("--target-image", required=True, help="one image of the target site (any subject, any grid)")
    q.add_argument(
        "--out",
        required=True,
        help="output folder (BIDS-derivative style): the harmonized image, "
        "named after --input with desc-harmonized (float32, the input's "
        "grid), and its JSON sidecar",
    )
    q.add_argument(
        "--mask",
        help="brain mask of the input (default: Otsu threshold, largest component, "
        "holes filled; meant for skull-stripped images)",
    )
    q.add_argument("--target-mask", help="brain mask of the target image (default: as --mask)")
    q.add_argument(
        "--allow-modality-mismatch",
        action="store_true",
        help="harmonize although the BIDS suffixes of --input and --target-image name different "
        "modalities (refused by default); recorded in the sidecar",
    )
    add_force(q, "replace an existing output folder")


def run_apply(args) -> int:
    from mrharmony.structural.apply import apply_image_model

    out = apply_image_model(
        args.model,
        input_path=args.input,
        target_path=args.target_image,
        out=args.out,
        mask_path=args.mask,
        target_mask_path=args.target_mask,
        force=args.force,
        allow_modality_mismatch=args.allow_modality_mismatch,
    )
    say(args, f"harmonized image: {out}")
    return 0


def add_restore(q) -> None:
    q.set_defaults(func=run_restore)
    q.add_argument(
        "model",
        help="the IHF-Harmony squeeze-variant (ihf_squeeze) run directory or model.pt that harmonized the image",
    )
    q.add_argument("--input", required=True, help="the harmonized image (with the sidecar 'structural apply' wrote)")
    q.add_argument(
        "--out",
        required=True,
        help="output folder: the restored image, named after --input with desc-restored, and its JSON sidecar",
    )
    q.add_argument(
        "--target-image",
        help="the target image it was harmonized to (only for outputs whose sidecar records no style code)",
    )
    q.add_argument("--target-mask", help="brain mask of the target image (with --target-image)")
    add_force(q, "replace an existing output folder")


def run_restore(args) -> int:
    from mrharmony.structural.apply import restore_image

    out = restore_image(
        args.model,
        input_path=args.input,
        out=args.out,
        target_path=args.target_image,
        target_mask_path=args.target_mask,
        force=args.force,
    )
    say(args, f"restored image: {out}")
    return 0


def add_evaluate(q) -> None:
    q.set_defaults(func=run_evaluate)
    q.add_argument("dataset", help="structural dataset folder (with structural.yaml)")
    q.add_argument(
        "methods",
        nargs="+",
        metavar="METHOD",
        help="trained models (run directories or model.pt) and intensity baselines "
        "(none, zscore, whitestripe, nyul), in the order of the table's rows",
    )
    q.add_argument("--out", required=True, help="folder for table.md, rows.csv and evaluation.json")
    q.add_argument(
        "--modality",
        action="append",
        choices=["T1w", "T2w", "FLAIR"],
        help="modality to evaluate (repeatable; default: those the trained models were trained on)",
    )
    q.add_argument(
        "--reference", help="the method the paired tests compare with every other (default: the first trained model)"
    )
    q.add_argument(
        "--pair",
        action="append",
        metavar="INPUT_SITE:TARGET_SITE",
        help="a site pair to score (repeatable; default: every ordered pair)",
    )
    q.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="processes that score subjects and modalities side by side, sharing PyTorch's threads "
        "(default: 1; the rows do not depend on it, to float rounding)",
    )
    add_force(q, "replace an existing --out folder")


def run_evaluate(args) -> int:
    from mrharmony.structural.evaluate import evaluate_structural

    pairs = None
    if args.pair:
        pairs = [tuple(p.split(":")) for p in args.pair]
        bad = [p for p, q in zip(args.pair, pairs) if len(q) != 2 or not all(q)]
        if bad:
            from mrharmony.errors import InputError

            raise InputError(f"--pair {bad[0]!r} is not INPUT_SITE:TARGET_SITE.")
    ev = evaluate_structural(
        args.dataset,
        args.out,
        methods=args.methods,
        modalities=args.modality,
        reference=args.reference,
        pairs=pairs,
        jobs=args.jobs,
        force=args.force,
        quiet=args.quiet,
    )
    print(ev.table())
    say(args, f"results in {args.out}: table.md, rows.csv, evaluation.json")
    return 0


def add_metrics(q) -> None:
    q.set_defaults(func=run_metrics)
    q.add_argument("--input", required=True, help="the image before harmonization")
    q.add_argument("--prediction", required=True, help="the harmonized image (on the input's grid)")
    q.add_argument("--target", required=True, help="the one image of the target site")
    q.add_argument("--mask", help="brain mask of the input (default: Otsu, largest component, holes filled)")
    q.add_argument("--target-mask", help="brain mask of the target image (default: as --mask)")
    q.add_argument("--truth", help="the same subject seen by the target site (for SSIM / PSNR)")
    q.add_argument(
        "--modality",
        default="T1w",
        choices=["T1w", "T2w", "FLAIR"],
        help="the images' modality: the tissues' intensity order for the segmentation (default T1w)",
    )
    q.add_argument("--json", help="also write the metrics to this file")
    add_force(q, "overwrite --json")


def run_metrics(args) -> int:
    import json

    from mrharmony.structural.metrics import metrics_from_files

    if args.json:
        check_new_output(args.json, force=args.force)  # before the work, not after it
    res = metrics_from_files(
        input_path=args.input,
        prediction_path=args.prediction,
        target_path=args.target,
        input_mask_path=args.mask,
        target_mask_path=args.target_mask,
        truth_path=args.truth,
        modality=args.modality,
    )
    text = json.dumps(res, indent=2)
    if args.json:
        from mrharmony.io import write_text

        write_text(args.json, text + "\n")
    print(text)
    return 0
