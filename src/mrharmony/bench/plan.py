"""Folds over subjects and seeds: which (fold, seed) pairs a benchmark runs, and in which order.

Every subject is held out once (:func:`folds_of`); each fold is trained with the first seed, and
the first ``seed_folds`` folds with every seed (:class:`Plan`). The first seed of every fold runs
first, then the further seeds, so that a partial summary covers every subject as early as it can.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


class SettingError(Exception):
    """An impossible setting of a benchmark's command line: one sentence, exit 2."""


def folds_of(subjects: list[str], k: int) -> list[list[str]]:
    """``k`` folds of held-out subjects.

    Parameters
    ----------
    subjects : list of str
        Every subject, in the dataset's order.
    k : int
        The number of folds.

    Returns
    -------
    list of list of str
        Per fold its held-out subjects, sorted: a permutation seeded by ``k`` alone, cut into
        near-equal parts, so that the same subjects and ``k`` always give the same folds.
    """
    perm = np.random.default_rng([0, k]).permutation(len(subjects))
    return [sorted(subjects[i] for i in part) for part in np.array_split(perm, k)]


@dataclass
class Plan:
    """The folds and seeds of a benchmark run.

    Parameters
    ----------
    folds : int
        Folds over the subjects.
    seeds : list of int
        Training seeds; the first is the one every fold is trained with.
    seed_folds : int or None
        The folds trained with every seed (the first ``seed_folds``); the others with the first
        seed only. None: every fold with every seed.

    Examples
    --------
    >>> Plan(folds=3, seeds=[0, 1, 2], seed_folds=1).run_order()
    [(0, 0), (1, 0), (2, 0), (0, 1), (0, 2)]
    """

    folds: int
    seeds: list[int]
    seed_folds: int | None = None

    def check(self, n_subjects: int) -> None:
        """Refuse folds and seeds that cannot be run on ``n_subjects`` subjects.

        Raises
        ------
        SettingError
            One sentence naming the option (``--folds``, ``--seeds``, ``--seed-folds``).
        """
        if self.folds < 2:
            raise SettingError(f"--folds must be at least 2, not {self.folds}.")
        if self.folds > n_subjects:
            raise SettingError(
                f"--folds {self.folds} needs at least {self.folds} subjects; the preset has {n_subjects}."
            )
        if n_subjects - int(np.ceil(n_subjects / self.folds)) < 2:
            raise SettingError(
                f"with {n_subjects} subjects and {self.folds} folds fewer than 2 subjects are left to train on."
            )
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise SettingError("--seeds must be distinct non-negative integers.")
        if self.seed_folds is not None and not 1 <= self.seed_folds <= self.folds:
            raise SettingError(f"--seed-folds must be between 1 and --folds ({self.folds}), not {self.seed_folds}.")

    def seeds_of(self, fold: int) -> list[int]:
        """The seeds fold ``fold`` is trained with: every seed on the first ``seed_folds`` folds, else the first."""
        return list(self.seeds) if self.seed_folds is None or fold < self.seed_folds else list(self.seeds[:1])

    def pairs(self) -> list[tuple[int, int]]:
        """Every (fold, seed) pair of the run, fold by fold."""
        return [(f, s) for f in range(self.folds) for s in self.seeds_of(f)]

    def run_order(self) -> list[tuple[int, int]]:
        """The (fold, seed) pairs in the order they are run: the first seed of every fold, then the
        further seeds."""
        first = [(f, self.seeds[0]) for f in range(self.folds)]
        return first + [(f, s) for f in range(self.folds) for s in self.seeds_of(f) if s != self.seeds[0]]

    def scored(self, root: Path, marker: str) -> list[tuple[int, int]]:
        """The (fold, seed) pairs whose folder ``root/fold-F/seed-S`` holds ``marker`` (a finished
        step's file), fold by fold."""
        return [(f, s) for f, s in self.pairs() if (work_dir(root, f, s) / marker).exists()]


def work_dir(root: Path, fold: int, seed: int) -> Path:
    """The folder of one fold and seed under a run's output: ``root/fold-F/seed-S``."""
    return Path(root) / f"fold-{fold}" / f"seed-{seed}"
