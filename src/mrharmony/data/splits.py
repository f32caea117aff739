"""Held-out subjects: which subjects a run never trains on.

Both wings hold subjects out the same way (named in the config, or drawn with a seeded
generator); what they then split (the dMRI patches, the structural images) is theirs.
"""

from __future__ import annotations

import numpy as np

from mrharmony.errors import InputError


def held_out_subjects(subjects: list[str], *, named: list[str] | None = None, n: int = 1, seed=0, keep: int = 0,
                      source=None) -> list[str]:
    """``named`` subjects (each must be among ``subjects``), or ``n`` of them drawn without
    replacement by a generator seeded with ``seed`` (an int or a sequence of ints), leaving at
    least ``keep`` subjects; errors name ``source`` (the config)."""
    if named is not None:
        unknown = [s for s in named if s not in subjects]
        if unknown:
            raise InputError(f"names held-out subject {unknown[0]!r}, which is not among the dataset's subjects "
                             f"({', '.join(subjects)}).", source)
        return list(named)
    if n == 0:
        return []
    if not 0 < n <= len(subjects) - keep:
        raise InputError(f"cannot hold out {n} of {len(subjects)} subjects.", source)
    return [str(s) for s in np.random.default_rng(seed).choice(subjects, size=n, replace=False)]
