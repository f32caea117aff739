"""The BIDS App: ``mrharmony bids BIDS_DIR OUTPUT_DIR participant|group``, with the BIDS Apps'
usual arguments (``--participant-label``, ``--n-cpus``, ``--mem-gb``, ``--work-dir``). The
participant level harmonizes the participants' dwi runs with a trained dMRI model into a
derivative dataset; the group level summarizes FA and MD per site, before and after.

The handler imports :mod:`mrharmony.dmri` when it runs.
"""

from __future__ import annotations

import argparse

from mrharmony.cli.common import add_force, say, usage_error
from mrharmony.cli.dmri import add_protocol_flag


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def add_bids(sp) -> None:
    sp.set_defaults(func=run_bids)
    sp.add_argument("bids_dir")
    sp.add_argument("output_dir")
    sp.add_argument(
        "analysis_level",
        choices=["participant", "group"],
        help="participant: harmonize the participants' dwi runs; group: FA / MD per site, before "
        "and after, from the participant level's outputs (OUTPUT_DIR/group)",
    )
    sp.add_argument("--participant-label", nargs="+", help="participants (with or without sub-); default all")
    sp.add_argument("--model", help="run directory or model.pt (participant level)")
    sp.add_argument(
        "--site-entity",
        default="ses",
        choices=["ses", "acq", "run"],
        help="group level: the BIDS entity whose value names a run's site (default ses)",
    )
    sp.add_argument(
        "--filter",
        action="append",
        metavar="ENTITY=VALUE",
        help="harmonize only runs with this entity value, e.g. ses=ge (repeatable)",
    )
    sp.add_argument("--target", action="append", help="target platform (repeatable; default: all the model predicts)")
    add_protocol_flag(sp)
    add_force(sp, "replace existing participant outputs")
    sp.add_argument(
        "--n-cpus",
        type=positive_int,
        metavar="N",
        help="threads of PyTorch and the numerical libraries, in this process and its children (default: all)",
    )
    sp.add_argument(
        "--mem-gb",
        type=positive_float,
        metavar="GB",
        help="memory the job was given, recorded with the outputs; advisory: runs are harmonized one at a "
        "time, in memory that follows the scan and the model, not this value",
    )
    sp.add_argument(
        "--work-dir",
        metavar="DIR",
        help="temporary files and caches (TMPDIR, XDG_CACHE_HOME, MPLCONFIGDIR, ...) go under DIR, created "
        "if needed: with it, only OUTPUT_DIR and DIR need be writable (default: the system's)",
    )


def run_bids(args) -> int:
    from mrharmony.dmri.bids_app import app_resources, prepare_work_dir

    if args.analysis_level == "participant" and not args.model:
        raise usage_error("the participant level needs --model")
    work = prepare_work_dir(args.work_dir) if args.work_dir else None
    resources = {"n_cpus": args.n_cpus, "mem_gb": args.mem_gb, "work_dir": str(work) if work else None}
    with app_resources(n_cpus=args.n_cpus, work_dir=work):
        return run_level(args, resources)


def run_level(args, resources: dict) -> int:
    from mrharmony.dmri.bids_app import run_bids_app

    if args.analysis_level == "group":
        from mrharmony.dmri.bids_group import run_group_level

        out = run_group_level(
            args.bids_dir,
            args.output_dir,
            participants=args.participant_label,
            site_entity=args.site_entity,
            force=args.force,
            quiet=args.quiet,
            resources=resources,
        )
        say(args, f"cross-site summary in {out}")
        return 0
    written = run_bids_app(
        args.bids_dir,
        args.output_dir,
        args.analysis_level,
        model=args.model,
        participants=args.participant_label,
        filters=args.filter,
        targets=args.target,
        force=args.force,
        quiet=args.quiet,
        allow_protocol_mismatch=args.allow_protocol_mismatch,
        resources=resources,
    )
    say(args, f"harmonized {len(written)} participant(s) into {args.output_dir}")
    return 0
