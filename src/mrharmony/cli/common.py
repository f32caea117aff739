"""What every command of the ``mrharmony`` command line shares, written once.

* the flags every command has (``--quiet``) or that mean the same everywhere (``--force``);
* the overwrite policy: an output that exists is replaced only with ``--force``
  (:func:`check_new_output`, for the outputs the command line writes itself; the library
  functions that write folders apply the same rule);
* :func:`say` (a summary line, silent with ``--quiet``) and :func:`usage_error` (a wrong
  combination of arguments, reported like any bad input: one sentence, exit code 2);
* :func:`add_verbs`: the verbs of a wing (``mrharmony dmri VERB``, ``mrharmony structural VERB``),
  the same verbs meaning the same things in both, and the ``methods`` verb they share.

Nothing heavy is imported here: the command modules import this one to build their parsers.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

EXIT_INPUT = 2


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress or summary output")


def add_force(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--force``: what it replaces (or redoes) is said by ``help_text``."""
    parser.add_argument("--force", action="store_true", help=help_text)


def say(args: argparse.Namespace, text: str) -> None:
    """Print a summary line unless ``--quiet`` was given."""
    if not args.quiet:
        print(text)


def usage_error(text: str):
    """An :class:`~mrharmony.errors.InputError` for a wrong combination of arguments (raise it)."""
    from mrharmony.errors import InputError

    return InputError(text + ".")


def check_new_output(path: str | os.PathLike, *, force: bool) -> Path:
    """The overwrite policy for an output the command line writes itself
    (:func:`mrharmony.io.check_new_file`)."""
    from mrharmony.io import check_new_file

    return check_new_file(path, force=force)


def add_run_arguments(sp) -> None:
    """The arguments of a training command: the config, the run directory, resume, force, and
    stopping early (the engine's run, :func:`mrharmony.engine.loop.train`)."""
    sp.add_argument("config", nargs="?", help="run config (YAML); optional with --resume")
    sp.add_argument("--out", required=True, help="run directory (config, log, metrics, checkpoints, model.pt)")
    sp.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    add_force(sp, "replace an existing run directory")
    sp.add_argument(
        "--stop-after-epochs",
        type=int,
        metavar="N",
        help="stop after N epochs of this call (resumable), e.g. for time-limited jobs",
    )


#: a verb of a wing: its name -> (the function that adds its arguments and handler, its help line)
Verbs = dict[str, tuple[Callable[[argparse.ArgumentParser], None], str]]


def add_verbs(parser: argparse.ArgumentParser, verbs: Verbs) -> None:
    """The verbs of a wing as subcommands of ``parser`` (each with ``--quiet``); the verb given
    is ``args.verb``."""
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name, (add_arguments, help_text) in verbs.items():
        q = sub.add_parser(name, help=help_text, description=help_text)
        add_quiet(q)
        add_arguments(q)


def add_methods(q: argparse.ArgumentParser, registry: Callable[[], object]) -> None:
    """``methods``: the methods of one wing's registry (``registry()`` imports and returns it), one
    line each: name, kind, summary."""
    q.set_defaults(func=lambda args: print_methods(registry()))


def print_methods(registry) -> int:
    rows = registry.methods()
    width = max(len(m.name) for m in rows)
    kinds = max(len(m.kind) for m in rows)
    for m in rows:
        extra = f" (needs mrharmony[{m.extra}])" if m.extra else ""
        print(f"{m.name:<{width}}  {m.kind:<{kinds}}  {m.summary}{extra}")
    return 0
