"""The BIDS App: ``mrharmony bids BIDS_DIR OUTPUT_DIR participant|group``, with the BIDS Apps'
usual arguments. The participant level harmonizes the participants' dwi runs with a trained dMRI
model into a derivative dataset; the group level summarizes FA and MD per site, before and after.

The handler imports :mod:`mrharmony.dmri` when it runs.
"""

from __future__ import annotations

from mrharmony.cli.common import add_force, say, usage_error
from mrharmony.cli.dmri import add_protocol_flag


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


def run_bids(args) -> int:
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
        )
        say(args, f"cross-site summary in {out}")
        return 0
    if not args.model:
        raise usage_error("the participant level needs --model")

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
    )
    say(args, f"harmonized {len(written)} participant(s) into {args.output_dir}")
    return 0
