"""The ``mrharmony`` command line: one command, a table of subcommands.

:data:`COMMANDS` names each subcommand, the function that imports the small module of this
package that defines it, and its help line. A command module defines, for each of its commands, ``add_<name>(parser)``
(the arguments, and the handler set as ``func``) beside the handler itself; handlers import
the heavy modules (numpy, nibabel, dipy, torch) when they run. :func:`main` imports only the
module of the command it is given, so that ``mrharmony --help`` answers at once (as dipy's
workflows import only the flow they run). An :class:`~mrharmony.errors.InputError` becomes one
line on stderr, ``mrharmony <command> [<verb>]: error: <message>``, and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from types import ModuleType

from mrharmony import __version__
from mrharmony.cli.common import EXIT_INPUT, add_quiet

# The modules that define the commands, each imported only when one of its commands runs (a static
# import inside a function: an arrow that import-linter and a reader see).


def _data():
    from mrharmony.cli import data

    return data


def _dmri():
    from mrharmony.cli import dmri

    return dmri


def _structural():
    from mrharmony.cli import structural

    return structural


def _bids():
    from mrharmony.cli import bids

    return bids


def _report():
    from mrharmony.cli import report

    return report


# name -> (the function that imports its module, its help line); in the order of `mrharmony --help`.
# The wings are groups of verbs (`mrharmony dmri VERB`, `mrharmony structural VERB`), the same verbs
# meaning the same things in both; the commands about data and the whole toolkit stand at the top.
COMMANDS: dict[str, tuple[Callable[[], ModuleType], str]] = {
    "simulate": (_data, "Generate synthetic traveling heads: dMRI platforms or structural sites."),
    "validate": (_data, "Check a traveling-heads dataset and report the first problem."),
    "describe": (_data, "Write dataset.yaml for a BIDS or MUSHAC-layout folder of traveling heads."),
    "dmri": (_dmri, "Diffusion MRI (MSP, its baselines, RISH, ComBat): prepare, train, apply, evaluate, methods."),
    "structural": (
        _structural,
        "Structural MRI (HAIL, IHF-Harmony, intensity baselines): train, apply, evaluate, methods, restore, metrics.",
    ),
    "bids": (_bids, "BIDS App: harmonize the dwi runs of BIDS participants into a derivative dataset."),
    "report": (_report, "Write a self-contained HTML report of trained runs."),
    "card": (_report, "Print the model card of a saved model: what it is, what it learned from, what it is for."),
    "demo": (
        _report,
        "Run the whole toolkit (dMRI and structural) on synthetic data: simulate, train, evaluate, report.",
    ),
}
#: the commands that are groups of verbs (their verbs carry --quiet)
WINGS = ("dmri", "structural")


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The parser of the command line, with the arguments of ``commands`` (default: all).

    Every command is listed; only those named get their arguments, which imports their module.
    """
    fill = set(COMMANDS if commands is None else commands)
    p = argparse.ArgumentParser(prog="mrharmony", description="Harmonize MRI across scanners, sites and protocols.")
    p.add_argument("--version", action="version", version=f"mrharmony {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if name not in WINGS:
            add_quiet(sp)
        if name in fill:
            getattr(module(), f"add_{name}")(sp)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # the top level takes no option with a value: the first other word names the command
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser([command] if command in COMMANDS else [])
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_INPUT
    from mrharmony.errors import InputError

    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        command = " ".join(w for w in (args.command, getattr(args, "verb", None)) if w)
        print(f"mrharmony {command}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("mrharmony: interrupted", file=sys.stderr)
        return 130
