"""The wall time of a benchmark's steps over resumed runs, less the pauses logged while other jobs
had the machine.

A long benchmark on a shared machine is stopped (``kill -STOP``) while other jobs run, and may
be killed and resumed. :class:`Timing` keeps, per step, the intervals it ran in (``timing.json``,
brought up to date by a heartbeat, so that a killed step keeps its time up to then), and
:func:`pauses_of` reads the log of the pauses, so that they are left out of a step's time.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from mrharmony.io import write_text

#: a line of a pause log: "paused (SIGSTOP) from <date as date(1) prints it> for N s during STEP (why)"
PAUSE_LINE = re.compile(r"\bfrom (\w{3} \w{3} +\d+ [\d:]+ UTC \d{4}) for (\d+(?:\.\d+)?) s during\b")


class Timing:
    """When each step ran, over resumed runs of a script, in a JSON file.

    The file holds per step a list of ``[start, end]`` intervals (Unix seconds). A running step's
    end is brought up to date every :attr:`HEARTBEAT` seconds, so that a step whose process is
    killed keeps its time up to then. Totals written by the first layout of the file (seconds per
    step, no intervals; an interrupted step's time lost when its process was killed) are kept apart,
    under ``"before_intervals"``.

    Parameters
    ----------
    path : Path
        The timing file (``timing.json``); read if it exists, written whole at every heartbeat
        and at the end of every step.

    Examples
    --------
    >>> timing = Timing(Path(tmp) / "timing.json")  # doctest: +SKIP
    >>> with timing.step("fold-0/seed-0/train"):  # doctest: +SKIP
    ...     train()
    >>> timing.seconds("fold-0/seed-0/train", pauses_of(log))  # doctest: +SKIP
    """

    #: seconds between two updates of a running step's end
    HEARTBEAT = 30.0

    def __init__(self, path: Path):
        self.path = Path(path)
        raw = json.loads(self.path.read_text()) if self.path.exists() else {}
        if raw and "intervals" not in raw:  # the first layout: seconds per step
            raw = {"intervals": {}, "before_intervals": raw}
        self.intervals: dict[str, list[list[float]]] = raw.get("intervals", {})
        self.before: dict[str, float] = raw.get("before_intervals", {})
        self._lock = threading.Lock()

    def _write(self) -> None:
        with self._lock:  # whole or not at all: a reader (a partial summary) or a kill never sees half a file
            write_text(
                self.path, json.dumps({"intervals": self.intervals, "before_intervals": self.before}, indent=1) + "\n"
            )

    @contextlib.contextmanager
    def step(self, key: str):
        """Time the block as the step ``key`` (a new interval of it).

        An interrupted step's time counts too: the interval is closed when the block ends by an
        exception (a script turns SIGTERM into an exit), and a killed process keeps the time up
        to its last heartbeat.

        Parameters
        ----------
        key : str
            The step's name, e.g. ``fold-0/seed-1/train``.
        """
        span = [time.time(), time.time()]
        self.intervals.setdefault(key, []).append(span)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.HEARTBEAT):
                span[1] = time.time()
                self._write()

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            span[1] = time.time()
            self._write()

    def seconds(self, key: str, pauses: Sequence[tuple[float, float]] = ()) -> float:
        """The wall seconds of a step's intervals, less the parts of ``pauses`` inside them.

        Parameters
        ----------
        key : str
            The step.
        pauses : list of (float, float)
            ``(start, end)`` Unix times of pauses (:func:`pauses_of`).
        """
        return sum(
            (b - a) - sum(max(0.0, min(b, q) - max(a, p)) for p, q in pauses) for a, b in self.intervals.get(key, [])
        )

    def hours(self, pauses: Sequence[tuple[float, float]] = ()) -> float:
        """The hours of every step timed by intervals, less ``pauses`` (first-layout totals apart)."""
        return sum(self.seconds(k, pauses) for k in self.intervals) / 3600


def pauses_of(path: Path | None) -> list[tuple[float, float]]:
    """The pauses logged in ``path``.

    Parameters
    ----------
    path : Path or None
        A pause log: one line per pause, ``paused (SIGSTOP) from <date as date(1) prints it, UTC>
        for N s during ...``; other lines are notes. None: no pauses.

    Returns
    -------
    list of (float, float)
        The ``(start, end)`` Unix times of each pause, in the log's order.
    """
    if path is None:
        return []
    out = []
    for line in Path(path).read_text().splitlines():
        if m := PAUSE_LINE.search(line):
            t0 = datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S UTC %Y")
            start = t0.replace(tzinfo=UTC).timestamp()
            out.append((start, start + float(m.group(2))))
    return out
