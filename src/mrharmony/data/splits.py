"""Held-out subjects: which subjects a run never trains on.

Both wings hold subjects out the same way (named in the config, or drawn with a seeded
generator); what they then split (the dMRI patches, the structural images) is theirs.
"""

from __future__ import annotations

import numpy as np

from mrharmony.errors import InputError


def held_out_subjects(
    subjects: list[str], *, named: list[str] | None = None, n: int = 1, seed=0, keep: int = 0, source=None
) -> list[str]:
    """``named`` subjects (each must be among ``subjects``), or ``n`` of them drawn without
    replacement by a generator seeded with ``seed`` (an int or a sequence of ints), leaving at
    least ``keep`` subjects; errors name ``source`` (the config)."""
    if named is not None:
        unknown = [s for s in named if s not in subjects]
        if unknown:
            raise InputError(
                f"names held-out subject {unknown[0]!r}, which is not among the dataset's subjects "
                f"({', '.join(subjects)}).",
                source,
            )
        return list(named)
    if n == 0:
        return []
    if not 0 < n <= len(subjects) - keep:
        raise InputError(f"cannot hold out {n} of {len(subjects)} subjects.", source)
    return [str(s) for s in np.random.default_rng(seed).choice(subjects, size=n, replace=False)]


def training_subjects(subjects: list[str], train_subjects, *, source=None) -> tuple[list[str], list[str]]:
    """The subjects a fit learns from, ``train_subjects`` (a non-empty list of distinct names of
    ``subjects``), and the others, held out of it; both in the order of ``subjects``. Anything
    else is refused in one sentence naming ``source`` (the dataset)."""
    if isinstance(train_subjects, (str, bytes)) or not hasattr(train_subjects, "__iter__"):
        raise InputError(f"train_subjects must be a list of subject names, not {train_subjects!r}.", source)
    named = list(train_subjects)
    if not named:
        raise InputError("train_subjects is empty; name at least one subject of the dataset to fit on.", source)
    unknown = [s for s in named if s not in subjects]
    if unknown:
        raise InputError(
            f"train_subjects names {unknown[0]!r}, which is not among the dataset's subjects ({', '.join(subjects)}).",
            source,
        )
    twice = sorted({s for s in named if named.count(s) > 1})
    if twice:
        raise InputError(f"train_subjects names {twice[0]!r} twice.", source)
    return [s for s in subjects if s in named], [s for s in subjects if s not in named]
