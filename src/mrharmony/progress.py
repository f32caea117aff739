"""Progress of long work: items done, rate and time left, on stderr; silent with ``quiet``."""

from __future__ import annotations

import sys


class Progress:
    """A thin wrapper over tqdm so that every command shows progress the same way."""

    def __init__(self, *, total: int, unit: str, desc: str, quiet: bool = False):
        self._bar = None
        if not quiet:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                unit=unit,
                desc=desc,
                file=sys.stderr,
                dynamic_ncols=True,
                bar_format="{desc}: {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}, {rate_fmt}]",
            )

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
