"""Commands of the dMRI wing: ``train``, ``evaluate``, ``apply`` and ``bids`` (the BIDS App).

Each command's ``add_<name>(parser)`` sits beside its handler; the handlers import
:mod:`mrharmony.dmri` (and with it torch and dipy) when they run.
"""

from __future__ import annotations

from mrharmony.cli.common import add_force, add_run_arguments, say, usage_error


def add_train(sp) -> None:
    sp.set_defaults(func=run_train)
    add_run_arguments(sp)


def run_train(args) -> int:
    from mrharmony.dmri.training import train

    if args.config is None and not args.resume:
        raise usage_error("a CONFIG is needed unless --resume continues a run")
    run = train(args.config, args.out, resume=args.resume, force=args.force, quiet=args.quiet,
                stop_after_epochs=args.stop_after_epochs)
    say(args, f"run directory: {run}")
    return 0


def add_evaluate(sp) -> None:
    sp.set_defaults(func=run_evaluate)
    sp.add_argument("runs", nargs="+", help="run directories (same dataset and split)")
    sp.add_argument("--out", help="folder for table.md, table.csv and evaluation.json")
    sp.add_argument("--eval-size", type=int, default=5, help="central input voxels of each patch that are scored (default 5)")
    sp.add_argument("--max-patches", type=int, default=20000, help="seeded subsample of test patches (0: all)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--no-baseline", action="store_true", help="leave out the 'none' (no harmonization) row")
    sp.add_argument("--no-volume-metrics", action="store_true", help="skip whole-volume SH/FA/MD errors")
    sp.add_argument("--first-stages", action="store_true",
                    help="also score the first stage of networks built on single networks (row msp_stage1)")
    add_force(sp, "replace an existing --out folder")


def run_evaluate(args) -> int:
    from mrharmony.dmri.evaluate import evaluate
    from mrharmony.dmri.tables import markdown, write_tables
    from mrharmony.io import staged_output_dir

    ev = evaluate(args.runs, eval_size=args.eval_size, max_patches=args.max_patches or None, seed=args.seed,
                  baseline=not args.no_baseline, volume_metrics=not args.no_volume_metrics,
                  first_stages=args.first_stages, quiet=args.quiet)
    if args.out:
        with staged_output_dir(args.out, force=args.force) as tmp:
            write_tables(ev, tmp)
    print(markdown(ev))
    if args.out:
        say(args, f"tables in {args.out}: table.md, table.csv, evaluation.json")
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
    add_force(sp, "replace an existing output folder")


def add_protocol_flag(sp) -> None:
    sp.add_argument("--allow-protocol-mismatch", action="store_true",
                    help="harmonize a scan whose shell b-value or voxel size differs from the model's training data "
                         "(refused by default); the mismatch is recorded in every sidecar")


def run_apply(args) -> int:
    from mrharmony.dmri.apply import apply_model

    out = apply_model(args.model, dwi=args.dwi, bval=args.bval, bvec=args.bvec, mask=args.mask, out=args.out,
                      targets=args.target, prefix=args.prefix, force=args.force,
                      allow_protocol_mismatch=args.allow_protocol_mismatch)
    say(args, f"harmonized outputs in {out}")
    return 0


def add_bids(sp) -> None:
    sp.set_defaults(func=run_bids)
    sp.add_argument("bids_dir")
    sp.add_argument("output_dir")
    sp.add_argument("analysis_level", choices=["participant", "group"],
                    help="participant: harmonize the participants' dwi runs; group: FA / MD per site, before "
                         "and after, from the participant level's outputs (OUTPUT_DIR/group)")
    sp.add_argument("--participant-label", nargs="+", help="participants (with or without sub-); default all")
    sp.add_argument("--model", help="run directory or model.pt (participant level)")
    sp.add_argument("--site-entity", default="ses", choices=["ses", "acq", "run"],
                    help="group level: the BIDS entity whose value names a run's site (default ses)")
    sp.add_argument("--filter", action="append", metavar="ENTITY=VALUE",
                    help="harmonize only runs with this entity value, e.g. ses=ge (repeatable)")
    sp.add_argument("--target", action="append", help="target platform (repeatable; default: all the model predicts)")
    add_protocol_flag(sp)
    add_force(sp, "replace existing participant outputs")


def run_bids(args) -> int:
    from mrharmony.dmri.bids_app import run_bids_app

    if args.analysis_level == "group":
        from mrharmony.dmri.bids_group import run_group_level

        out = run_group_level(args.bids_dir, args.output_dir, participants=args.participant_label,
                              site_entity=args.site_entity, force=args.force, quiet=args.quiet)
        say(args, f"cross-site summary in {out}")
        return 0
    if not args.model:
        raise usage_error("the participant level needs --model")

    written = run_bids_app(args.bids_dir, args.output_dir, args.analysis_level, model=args.model,
                           participants=args.participant_label, filters=args.filter, targets=args.target,
                           force=args.force, quiet=args.quiet, allow_protocol_mismatch=args.allow_protocol_mismatch)
    say(args, f"harmonized {len(written)} participant(s) into {args.output_dir}")
    return 0
