"""The dMRI wing: ``mrharmony dmri VERB`` with the verbs ``prepare`` (SH features of a dataset),
``train``, ``apply``, ``evaluate`` and ``methods``, the same verbs as the structural wing's.

Each verb's ``add_<verb>(parser)`` sits beside its handler; the handlers import
:mod:`mrharmony.dmri` (and with it torch and dipy) when they run.
"""

from __future__ import annotations

from mrharmony.cli.common import add_force, add_methods, add_run_arguments, add_verbs, say, usage_error


def add_dmri(sp) -> None:
    add_verbs(
        sp,
        {
            "prepare": (add_prepare, "Fit the SH features of every scan of a traveling-heads dataset (cached)."),
            "train": (
                add_train,
                "Train a dMRI network or fit a statistical method from a YAML config (see 'mrharmony dmri methods').",
            ),
            "apply": (add_apply, "Harmonize a new subject's scan with a trained model into an output folder."),
            "evaluate": (
                add_evaluate,
                "Compare trained methods on their common test split (Table 1 of the MSP "
                "paper) and write table.md, rows.csv and evaluation.json.",
            ),
            "methods": (lambda q: add_methods(q, registry), "List the dMRI methods: name, kind, summary."),
        },
    )


def registry():
    from mrharmony.dmri.registry import REGISTRY

    return REGISTRY


def add_prepare(sp) -> None:
    sp.set_defaults(func=run_prepare)
    sp.add_argument(
        "dataset", help="traveling-heads dataset folder (with dataset.yaml), or a multi-site study (with study.yaml)"
    )
    sp.add_argument(
        "--config", help="YAML with SH settings (sh_order_max, basis, legacy, smooth, b0_threshold, shells)"
    )
    sp.add_argument(
        "--shells",
        type=float,
        nargs="+",
        metavar="B",
        help="b-values (s/mm^2) of the shells to fit, each to its own SH features (default: every non-zero shell)",
    )
    sp.add_argument("--sh-order", type=int, help="maximum SH order (default 6: 28 coefficients)")
    sp.add_argument("--basis", choices=["descoteaux07", "tournier07"], help="dipy SH basis (default descoteaux07)")
    sp.add_argument("--smooth", type=float, help="Laplace-Beltrami regularization (default 0.006)")
    add_force(sp, "recompute even the scans that are up to date")
    sp.add_argument(
        "--denoise",
        choices=["mppca"],
        help="also write the features of the input platform's scans denoised first (dipy), for runs "
        "with data.denoise (the scans without denoising are prepared as well)",
    )
    sp.add_argument(
        "--register",
        action="store_true",
        help="first register target scans that are not co-registered with the subject's input scan "
        "(rigid, dipy); copies go to derivatives/mrharmony-registered",
    )


def run_prepare(args) -> int:
    from mrharmony.config import load_yaml_model, model_from_dict
    from mrharmony.dmri.features.prepare import prepare
    from mrharmony.dmri.features.sh import SHConfig

    cfg = load_yaml_model(SHConfig, args.config) if args.config else SHConfig()
    overrides = {
        k: v
        for k, v in (
            ("sh_order_max", args.sh_order),
            ("basis", args.basis),
            ("smooth", args.smooth),
            ("shells", args.shells),
        )
        if v is not None
    }
    if overrides:
        cfg = model_from_dict(SHConfig, {**cfg.model_dump(), **overrides})  # a bad value: one sentence, exit 2
    report = prepare(args.dataset, cfg=cfg, force=args.force, quiet=args.quiet, register=args.register)
    say(
        args, f"SH features in {report.out_dir}: {len(report.computed)} scans computed, {len(report.cached)} up to date"
    )
    if args.denoise:
        report = prepare(args.dataset, cfg=cfg, force=args.force, quiet=args.quiet, denoise=args.denoise)
        say(
            args,
            f"SH features of the input scans denoised by {args.denoise}: {len(report.computed)} scans "
            f"computed, {len(report.cached)} up to date",
        )
    return 0


def add_train(sp) -> None:
    sp.set_defaults(func=run_train)
    add_run_arguments(sp)


def run_train(args) -> int:
    from mrharmony.dmri.training import train

    if args.config is None and not args.resume:
        raise usage_error("a CONFIG is needed unless --resume continues a run")
    run = train(
        args.config,
        args.out,
        resume=args.resume,
        force=args.force,
        quiet=args.quiet,
        stop_after_epochs=args.stop_after_epochs,
    )
    say(args, f"run directory: {run}")
    return 0


def add_evaluate(sp) -> None:
    sp.set_defaults(func=run_evaluate)
    sp.add_argument("runs", nargs="+", help="run directories (same dataset and split)")
    sp.add_argument("--out", required=True, help="folder for table.md, rows.csv and evaluation.json")
    sp.add_argument(
        "--eval-size", type=int, default=5, help="central input voxels of each patch that are scored (default 5)"
    )
    sp.add_argument("--max-patches", type=int, default=20000, help="seeded subsample of test patches (0: all)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--no-baseline", action="store_true", help="leave out the 'none' (no harmonization) row")
    sp.add_argument("--no-volume-metrics", action="store_true", help="skip whole-volume SH/FA/MD errors")
    sp.add_argument(
        "--first-stages",
        action="store_true",
        help="also score the first stage of networks built on single networks (row msp_stage1)",
    )
    add_force(sp, "replace an existing --out folder")


def run_evaluate(args) -> int:
    from mrharmony.dmri.evaluate import evaluate
    from mrharmony.dmri.tables import markdown, write_tables
    from mrharmony.io import staged_output_dir

    ev = evaluate(
        args.runs,
        eval_size=args.eval_size,
        max_patches=args.max_patches or None,
        seed=args.seed,
        baseline=not args.no_baseline,
        volume_metrics=not args.no_volume_metrics,
        first_stages=args.first_stages,
        quiet=args.quiet,
    )
    with staged_output_dir(args.out, force=args.force) as tmp:
        write_tables(ev, tmp)
    print(markdown(ev))
    say(args, f"results in {args.out}: table.md, rows.csv, evaluation.json")
    return 0


def add_apply(sp) -> None:
    sp.set_defaults(func=run_apply)
    sp.add_argument("model", help="run directory or model.pt")
    sp.add_argument("--dwi", required=True)
    sp.add_argument("--bval", required=True)
    sp.add_argument("--bvec", required=True)
    sp.add_argument("--mask", help="brain mask (default: computed from the b=0 volumes and written with the outputs)")
    sp.add_argument("--out", required=True, help="output folder (BIDS-derivative style)")
    sp.add_argument("--target", action="append", help="target platform (repeatable; default: all the model predicts)")
    sp.add_argument("--prefix", help="start of the output file names, e.g. sub-01 (default: from the DWI file name)")
    add_protocol_flag(sp)
    add_covariate_flags(sp)
    g = sp.add_argument_group("target scans (for a model that reads the target scanner from scans: stylecode)")
    g.add_argument("--target-dwi", action="append", help="a DWI series of the target scanner, any person (repeatable)")
    g.add_argument("--target-bval", action="append", help="its b-values (one per --target-dwi)")
    g.add_argument("--target-bvec", action="append", help="its gradient directions (one per --target-dwi)")
    g.add_argument("--target-mask", action="append", help="its brain mask (optional; one per --target-dwi)")
    g.add_argument("--target-name", default="target", help="the target's name in the outputs (default: target)")
    add_force(sp, "replace an existing output folder")


def add_covariate_flags(sp) -> None:
    g = sp.add_argument_group("the person's covariates (for a model that adjusts for them: ComBat fitted on a study)")
    g.add_argument("--age", type=float, help="age in years")
    g.add_argument("--sex", choices=["F", "M"])
    g.add_argument("--group", choices=["control", "patient"])


def covariates_of(args) -> dict | None:
    """The person's covariates given on the command line (None: none given)."""
    given = {c: getattr(args, c, None) for c in ("age", "sex", "group")}
    return {c: v for c, v in given.items() if v is not None} or None


def add_protocol_flag(sp) -> None:
    sp.add_argument(
        "--allow-protocol-mismatch",
        action="store_true",
        help="harmonize a scan whose shell b-value or voxel size differs from the model's training data "
        "(refused by default); the mismatch is recorded in every sidecar",
    )


def target_scans_of(args) -> list[dict] | None:
    """The target scans given on the command line (None: none)."""
    dwis = args.target_dwi or []
    if not dwis:
        if args.target_bval or args.target_bvec or args.target_mask:
            raise usage_error("--target-bval, --target-bvec and --target-mask go with --target-dwi")
        return None
    for flag in ("target_bval", "target_bvec"):
        if len(getattr(args, flag) or []) != len(dwis):
            raise usage_error(f"give one --{flag.replace('_', '-')} per --target-dwi")
    masks = args.target_mask or []
    if masks and len(masks) != len(dwis):
        raise usage_error("give one --target-mask per --target-dwi, or none")
    return [
        {"dwi": d, "bval": b, "bvec": v, "mask": masks[i] if masks else None}
        for i, (d, b, v) in enumerate(zip(dwis, args.target_bval, args.target_bvec))
    ]


def run_apply(args) -> int:
    from mrharmony.dmri.apply import apply_model

    out = apply_model(
        args.model,
        dwi=args.dwi,
        bval=args.bval,
        bvec=args.bvec,
        mask=args.mask,
        out=args.out,
        targets=args.target,
        prefix=args.prefix,
        force=args.force,
        allow_protocol_mismatch=args.allow_protocol_mismatch,
        covariates=covariates_of(args),
        target_scans=target_scans_of(args),
        target_name=args.target_name,
    )
    say(args, f"harmonized outputs in {out}")
    return 0
