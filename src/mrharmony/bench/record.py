"""Resumable steps and the record of a benchmark run.

A step (an evaluation, a score) writes its output and, beside it, the names of the runs it was
made from (``<output>.runs``): it is done when both are there and the runs are the same, and redone
when rows were added since (:func:`done`, :func:`mark_done`).

The record is a folder kept under version control: the small files a summary is made from are
copied into it as each step finishes (:func:`save_record`), and copied back on a machine that has
lost the run's output (:func:`restore_record`), whose folds and seeds finished elsewhere are then
skipped (:func:`recorded_only`); models are not recorded. :func:`log_invocation` keeps each
invocation of a run and the commit it ran, so that the rows declared before a run can be traced
to the commit that declared them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

from mrharmony.bench.plan import SettingError
from mrharmony.io import atomic_path, write_text

#: the file of a run's root that every record keeps
TIMING = "timing.json"
#: the log of a run's invocations, in its record (or its output, without one)
INVOCATIONS = "invocations.json"


def done(path: Path, runs: list[str]) -> bool:
    """Whether the step output ``path`` exists and was made from exactly the runs ``runs``
    (as :func:`mark_done` wrote them in ``<path>.runs``)."""
    marker = path.with_name(path.name + ".runs")
    return path.exists() and marker.exists() and json.loads(marker.read_text()) == runs


def mark_done(path: Path, runs: list[str]) -> None:
    """Write ``<path>.runs``: the step output ``path`` is finished, made from ``runs``."""
    write_text(path.with_name(path.name + ".runs"), json.dumps(runs) + "\n")


def check_record(record: Path | None, out: Path) -> None:
    """Refuse a record that is no folder of its own.

    Raises
    ------
    SettingError
        When ``record`` exists and is not a folder, or is the run's output folder ``out``.
    """
    if record is None:
        return
    if record.exists() and not record.is_dir():
        raise SettingError(f"--record {record} is not a folder.")
    if record.resolve() == Path(out).resolve():
        raise SettingError("--record must be a folder other than --out.")


def save_record(record: Path | None, root: Path, work: Path | None = None, files: tuple[str, ...] = ()) -> None:
    """Copy a run's finished small files into its record.

    Parameters
    ----------
    record : Path or None
        The record folder; None: nothing recorded.
    root : Path
        The run's output folder; its ``timing.json`` is copied.
    work : Path, optional
        A fold and seed's folder under ``root``, whose ``files`` (where they exist) are copied.
    files : tuple of str
        Paths under ``work``.

    Each file is copied whole (written beside under another name, then renamed), at the same
    path under ``record`` as under ``root``.
    """
    if record is None:
        return
    sources = [root / TIMING] + ([work / name for name in files] if work is not None else [])
    for src in sources:
        if src.exists():
            with atomic_path(record / src.relative_to(root)) as tmp:
                shutil.copy2(src, tmp)


def restore_record(record: Path, root: Path, files: tuple[str, ...], marker: str) -> list[str]:
    """Copy into ``root`` the recorded files it lacks (a machine that lost the run's output).

    Parameters
    ----------
    record : Path
        The record folder.
    root : Path
        The run's output folder; a file it has already is not overwritten.
    files : tuple of str
        The recorded paths under a fold and seed's folder (:func:`save_record`); files of other
        names in the record (notes, logs) are left there.
    marker : str
        The path under a fold and seed's folder that says it was finished.

    Returns
    -------
    list of str
        The folders (relative to ``root``) whose ``marker`` was restored.
    """
    restored = []
    names = {Path(n).name for n in files} | {TIMING}
    depth = len(Path(marker).parts)
    for src in sorted(record.rglob("*")):
        dst = root / src.relative_to(record)
        if src.is_file() and src.name in names and not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            if src.name == Path(marker).name:
                restored.append(str(src.parents[depth - 1].relative_to(record)))
    return restored


def recorded_only(work: Path, markers: list[str], made_here: str = "runs") -> bool:
    """Whether a fold and seed was finished on another machine: every one of ``markers`` (paths
    under ``work``) restored from the record, and its runs (``made_here``) not here."""
    return all((work / m).exists() for m in markers) and not (work / made_here).exists()


def invocations(root: Path, record: Path | None) -> list[dict]:
    """The invocations of a run (:func:`log_invocation`), oldest first."""
    path = (record or root) / INVOCATIONS
    return json.loads(path.read_text()) if path.exists() else []


def log_invocation(root: Path, record: Path | None, command: str, checkout: Path) -> None:
    """Add an invocation to the run's ``invocations.json`` (in the record, else in ``root``).

    Parameters
    ----------
    root, record : Path
        The run's output and record folders.
    command : str
        The command line, as the summary names it.
    checkout : Path
        A folder of the checkout that runs (its commit is logged).
    """
    path = (record or root) / INVOCATIONS
    runs = json.loads(path.read_text()) if path.exists() else []
    runs.append(
        {
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "commit": commit_of_checkout(checkout),
            "command": command,
        }
    )
    write_text(path, json.dumps(runs, indent=1) + "\n")


def commit_of_checkout(where: Path) -> str | None:
    """The commit of the git checkout ``where`` is in (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None
