"""What a wing's registry of methods is: :class:`Method` (one line of it) and :class:`Registry`.

Each wing keeps its own registry, which imports its methods statically
(:mod:`mrharmony.dmri.registry`, :mod:`mrharmony.structural.registry`), so that every arrow from a
registry to a method is an import that a reader and import-linter see. This module names no
method: it only says what a line holds and how a wing's lines are selected. A new method is its
module, its test and one line in its wing's registry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mrharmony.errors import InputError


@dataclass(frozen=True)
class Method:
    """One method of a wing.

    Attributes
    ----------
    name
        The method's name in configs, tables and ``mrharmony WING methods``.
    kind
        ``network`` (trained by the engine on SH patches), ``statistical`` (fitted in one pass),
        ``image`` (trained by the engine on image crops) or ``intensity`` (nothing to learn).
    config
        Its config model (the ``model`` section of a run config, which builds the method), or
        for a method with nothing to configure (the intensity baselines) its harmonizer class.
    summary
        One line for tables and help.
    extra
        The optional extra of mrharmony it needs (``pip install 'mrharmony[EXTRA]'``), if any.
    """

    name: str
    kind: str
    config: type[Any]
    summary: str
    extra: str | None = None


class Registry:
    """The methods of one wing, in table order.

    Parameters
    ----------
    wing
        ``dmri`` or ``structural``: the command group that trains and applies them.
    methods
        Its lines; names are unique within a wing.

    Raises
    ------
    ValueError
        Two lines with one name.
    """

    def __init__(self, wing: str, methods: Iterable[Method]):
        self.wing = wing
        self.lines = tuple(methods)
        seen = [m.name for m in self.lines]
        if len(seen) != len(set(seen)):
            raise ValueError(f"the {wing} registry names a method twice")

    def methods(self, kind: str | None = None) -> list[Method]:
        """The methods of one kind, in table order.

        Parameters
        ----------
        kind
            ``network``, ``statistical``, ``image`` or ``intensity`` (default: every kind).

        Returns
        -------
        list of Method
        """
        return [m for m in self.lines if kind is None or m.kind == kind]

    def names(self, kind: str | None = None) -> list[str]:
        """The names of :meth:`methods`, in table order.

        Parameters
        ----------
        kind
            As for :meth:`methods`.

        Returns
        -------
        list of str
        """
        return [m.name for m in self.methods(kind)]

    def get(self, name: str, kind: str | None = None) -> Method:
        """One method, by name.

        Parameters
        ----------
        name
            The method's name.
        kind
            The kind it must be of (default: any).

        Returns
        -------
        Method

        Raises
        ------
        InputError
            An unknown name (or one of another kind), in one sentence naming the wing's methods.
        """
        for m in self.methods(kind):
            if m.name == name:
                return m
        what = f"{kind} method of the {self.wing} wing" if kind else f"{self.wing} method"
        raise InputError(
            f"unknown {what} {name!r}; choose one of {', '.join(self.names(kind))} "
            f"(see 'mrharmony {self.wing} methods')."
        )

    def config_models(self, kinds: tuple[str, ...] | None = None) -> list[type]:
        """The config models of the methods of some kinds.

        Parameters
        ----------
        kinds
            The kinds (default: every kind).

        Returns
        -------
        list of type
            Their ``config``, in table order.
        """
        return [m.config for m in self.lines if kinds is None or m.kind in kinds]
