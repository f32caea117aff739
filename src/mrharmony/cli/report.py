"""Commands that present results: ``report`` (the HTML report of trained runs), ``demo`` (the
whole toolkit, dMRI and structural, on synthetic data, ending in that report) and ``card`` (the
model card of a saved model, of either wing).

Each command's ``add_<name>(parser)`` sits beside its handler; the handlers import the
report and demo modules when they run.
"""

from __future__ import annotations

from mrharmony.cli.common import add_force, say


def add_report(sp) -> None:
    sp.set_defaults(func=run_report)
    sp.add_argument("runs", nargs="*", help="dMRI run directories (same dataset and split)")
    sp.add_argument("--out", required=True, help="the HTML file to write")
    sp.add_argument(
        "--structural",
        metavar="EVAL_DIR",
        help="also report a structural evaluation (the folder `mrharmony structural evaluate` wrote)",
    )
    sp.add_argument("--target", help="target platform of the dMRI pictures (default connectom_sa)")
    sp.add_argument("--subject", help="subject of the dMRI pictures (default: the first held-out one)")
    add_force(sp, "replace an existing report")


def run_report(args) -> int:
    from mrharmony.report.html import build_report

    out = build_report(
        args.runs,
        args.out,
        target=args.target,
        subject=args.subject,
        structural=args.structural,
        force=args.force,
        quiet=args.quiet,
    )
    say(args, f"report: {out}")
    return 0


def add_demo(sp) -> None:
    sp.set_defaults(func=run_demo)
    sp.add_argument("out", nargs="?", default="demo-output", help="output folder (default demo-output)")
    sp.add_argument(
        "--preset",
        default="demo",
        choices=["tiny", "demo", "mushac"],
        help="data size (default demo; tiny for a quick check)",
    )
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--only", choices=["dmri", "structural"], help="run one wing only (default: both)")
    add_force(sp, "replace an existing output folder")


def run_demo(args) -> int:
    from mrharmony.demo import run_demo as demo

    demo(args.out, preset=args.preset, seed=args.seed, only=args.only, force=args.force, quiet=args.quiet)
    return 0


def add_card(sp) -> None:
    sp.set_defaults(func=run_card)
    sp.add_argument(
        "model",
        help="a saved model of either wing: run directory, model.pt, or a statistical "
        "method's folder (harmonizer.json)",
    )
    sp.add_argument("--json", action="store_true", help="print the card as JSON")


def run_card(args) -> int:
    import json

    from mrharmony.engine.card import card_text, read_card

    card, file = read_card(args.model)
    print(json.dumps(card, indent=2) if args.json else card_text(card, file))
    return 0
