"""``mrharmony bids BIDS_DIR OUTPUT_DIR participant --participant-label 01 02 --model MODEL``.

The BIDS App convention (one participant per cluster job): every dwi run of the named
participants that matches the ``--filter`` entities (e.g. ``ses=ge``: the scans of the input
platform) is harmonized with the model and written as a BIDS derivative dataset in OUTPUT_DIR:
``dataset_description.json`` (``DatasetType: derivative``, ``GeneratedBy``), and for each run,
in the run's own ``sub-*/[ses-*/]dwi/`` folder, the outputs of ``mrharmony dmri apply`` named
``<source entities>_space-<target>_desc-harmonized_...`` with JSON sidecars, float32. A brain
mask is taken from a ``..._desc-brain_mask.nii.gz`` derivative of the run when there is one,
else computed and written beside the outputs. A model that adjusts for the person's covariates
(ComBat fitted on a study with ``age``, ``sex`` or ``group``) reads them from the dataset's
``participants.tsv`` (``M``/``F`` or ``male``/``female``; ``control``/``patient``), checked for every
participant before any work.

Each participant's outputs are built under a temporary name and moved into place whole; a
participant whose outputs exist is an error unless ``--force`` (checked for every participant
before any work). The participant's ``log/participant.json`` records the run: the model, the
filters and targets, the runs harmonized, the resources it was given and the container image
it ran in. The group level is :mod:`mrharmony.dmri.bids_group`.

Both levels run inside :func:`app_resources`, the BIDS Apps' usual resource options:
``--n-cpus`` (threads of PyTorch and of the numerical libraries, in this process and its
children), ``--work-dir`` (every temporary file and cache goes under it, so that the app runs
from a read-only image with only the output and the work directory writable) and ``--mem-gb``
(advisory: a run is harmonized one at a time in memory that follows the scan and the model's
tiled inference, not a setting; the value is recorded with the outputs).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mrharmony.errors import InputError

#: the variables that set the threads of the numerical libraries (OpenMP, MKL, OpenBLAS, numexpr,
#: Accelerate) where they are read: in child processes, and by libraries loaded later
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def work_dir_variables(work: Path) -> dict[str, Path]:
    """The variables that send temporary files and caches under the work directory ``work``:
    temporary files (``TMPDIR``, ``TMP``, ``TEMP``), the XDG cache (PyTorch's among others),
    matplotlib's configuration and font cache, numba's and dipy's caches."""
    tmp = work / "tmp"
    return {
        "TMPDIR": tmp,
        "TMP": tmp,
        "TEMP": tmp,
        "XDG_CACHE_HOME": work / "cache",
        "TORCH_HOME": work / "cache" / "torch",
        "MPLCONFIGDIR": work / "matplotlib",
        "NUMBA_CACHE_DIR": work / "cache" / "numba",
        "DIPY_HOME": work / "dipy",
    }


def prepare_work_dir(work_dir: str | os.PathLike) -> Path:
    """The work directory as an absolute path, created if needed; one sentence naming it if it
    is not a directory or not writable."""
    work = Path(work_dir).expanduser().absolute()
    if work.exists() and not work.is_dir():
        raise InputError("is not a directory; --work-dir needs a writable directory.", work)
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot be created as the --work-dir ({exc.strerror}).", work) from None
    if not os.access(work, os.W_OK | os.X_OK):
        raise InputError("is not writable; --work-dir needs a writable directory.", work)
    return work


@contextlib.contextmanager
def app_resources(*, n_cpus: int | None = None, work_dir: str | os.PathLike | None = None) -> Iterator[None]:
    """Run the block with at most ``n_cpus`` threads and every temporary file and cache under
    ``work_dir`` (each left as it is when None); everything is restored afterwards.

    ``n_cpus`` sets PyTorch's threads, limits the BLAS and OpenMP libraries already loaded
    (threadpoolctl) and sets :data:`THREAD_VARIABLES` for child processes. ``work_dir`` is
    created if needed, holds ``tmp/`` (Python's :mod:`tempfile` and ``TMPDIR``), ``cache/``,
    ``matplotlib/`` and ``dipy/`` (:func:`work_dir_variables`).

    Examples
    --------
    >>> with app_resources(n_cpus=2, work_dir="work"):  # doctest: +SKIP
    ...     run_bids_app("bids", "out", "participant", model="runs/diqt")
    """
    if n_cpus is not None and (isinstance(n_cpus, bool) or not isinstance(n_cpus, int) or n_cpus < 1):
        raise InputError(f"--n-cpus {n_cpus!r} is not a whole number of at least 1.")
    saved: dict[str, str | None] = {}

    def setenv(name: str, value: str) -> None:
        saved.setdefault(name, os.environ.get(name))
        os.environ[name] = value

    with contextlib.ExitStack() as stack:
        try:
            if work_dir is not None:
                work = prepare_work_dir(work_dir)
                for name, path in work_dir_variables(work).items():
                    path.mkdir(parents=True, exist_ok=True)
                    setenv(name, str(path))
                stack.callback(setattr, tempfile, "tempdir", tempfile.tempdir)
                tempfile.tempdir = str(work / "tmp")
            if n_cpus is not None:
                for name in THREAD_VARIABLES:
                    setenv(name, str(n_cpus))
                import torch
                from threadpoolctl import threadpool_limits

                stack.callback(torch.set_num_threads, torch.get_num_threads())
                torch.set_num_threads(n_cpus)
                stack.enter_context(threadpool_limits(limits=n_cpus))
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


#: how participants.tsv may spell the sexes (BIDS suggests M / F; male / female are common)
SEX_VALUES = {"m": "M", "male": "M", "f": "F", "female": "F"}


def participant_covariates(root: Path, labels: list[str], needed: list[str]) -> dict[str, dict]:
    """Per participant label, the covariates a model needs (``age``, ``sex``, ``group``) from the BIDS
    dataset's ``participants.tsv``.

    Raises
    ------
    InputError
        No participants.tsv, a needed column missing, or a participant without a valid value: one
        sentence naming the file.
    """
    import csv
    import io

    from mrharmony.data.study import GROUPS

    path = root / "participants.tsv"
    if not path.is_file():
        raise InputError(f"is missing; the model adjusts for {', '.join(needed)}, which it reads from there.", path)
    rows = {
        (r.get("participant_id") or "").strip().removeprefix("sub-"): r
        for r in csv.DictReader(io.StringIO(path.read_text()), delimiter="\t")
    }
    out = {}
    for label in labels:
        row = rows.get(label)
        if row is None:
            raise InputError(f"does not list sub-{label}; the model needs its {', '.join(needed)}.", path)
        cov: dict = {}
        for c in needed:
            raw = (row.get(c) or "n/a").strip()
            value: object = None
            if c == "age":
                try:
                    value = float(raw)
                except ValueError:
                    value = None
            elif c == "sex":
                value = SEX_VALUES.get(raw.lower())
            elif raw in GROUPS:
                value = raw
            if value is None:
                raise InputError(f"gives sub-{label} the {c} {raw!r}, which the model cannot use.", path)
            cov[c] = value
        out[label] = cov
    return out


def run_bids_app(
    bids_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    level: str,
    *,
    model: str,
    participants: list[str] | None = None,
    filters: list[str] | None = None,
    targets: list[str] | None = None,
    force: bool = False,
    quiet: bool = False,
    allow_protocol_mismatch: bool = False,
    resources: dict | None = None,
) -> list[Path]:
    """Harmonize the participants' dwi runs into the derivative dataset ``output_dir`` (see the
    module docstring); ``resources`` (e.g. ``{"n_cpus": 2, "mem_gb": 8, "work_dir": ...}``) is
    recorded in each participant's ``log/participant.json``. Returns the participants' folders."""
    from mrharmony import __version__
    from mrharmony.data.gradients import read_gradients
    from mrharmony.data.images import read_image
    from mrharmony.data.layouts import ENTITIES, find_brain_mask, open_bids
    from mrharmony.dmri.apply import apply_model, check_protocol
    from mrharmony.dmri.loading import load_harmonizer
    from mrharmony.io import container_record, staged_output_dir, write_derivative_description, write_json
    from mrharmony.progress import Progress

    if level != "participant":
        raise InputError(f"analysis level {level!r} does not exist; mrharmony runs at the participant level.")
    root, out = Path(bids_dir).resolve(), Path(output_dir)
    inside = out.resolve() == root or root in out.resolve().parents
    if inside and "derivatives" not in out.resolve().relative_to(root).parts:
        raise InputError("is inside the BIDS dataset; write the derivatives elsewhere or under its derivatives/.", out)
    h = load_harmonizer(model)  # a bad model stops the run before any output
    query = {}
    for f in filters or []:
        key, _, value = f.partition("=")
        if key not in ENTITIES or not value:
            raise InputError(f"filter {f!r} is not ENTITY=VALUE with ENTITY one of {', '.join(ENTITIES)}.")
        query[ENTITIES[key]] = value
    layout = open_bids(root)
    labels = [p.removeprefix("sub-") for p in participants] if participants else layout.get_subjects()
    unknown = sorted(set(labels) - set(layout.get_subjects()))
    if unknown:
        raise InputError(f"has no participant sub-{unknown[0]}.", root)
    jobs = []
    for label in labels:
        files = layout.get(subject=label, suffix="dwi", extension=[".nii.gz", ".nii"], return_type="object", **query)
        if not files:
            raise InputError(f"has no dwi run of sub-{label} matching {query or 'any entity'}.", root / f"sub-{label}")
        for f in files:
            bval, bvec = layout.get_bval(f.path), layout.get_bvec(f.path)
            if not bval or not bvec:
                raise InputError("has no .bval / .bvec beside it or inherited.", f.path)
            # every run's protocol is checked before anything is written
            bvals, _ = read_gradients(bval, bvec)
            check_protocol(
                h, read_image(f.path).header.get_zooms(), bvals, dwi=f.path, bval=bval, allow=allow_protocol_mismatch
            )
            jobs.append((label, Path(f.path), bval, bvec))
    # a model that adjusts for the person's covariates (ComBat fitted on a study) reads them first
    covariates = (
        participant_covariates(root, list(dict.fromkeys(j[0] for j in jobs)), h.covariates) if h.covariates else {}
    )
    for label in dict.fromkeys(j[0] for j in jobs):
        if (out / f"sub-{label}").exists() and not force:
            raise InputError("already exists; pass --force to replace it.", out / f"sub-{label}")
    out.mkdir(parents=True, exist_ok=True)
    write_derivative_description(
        out / "dataset_description.json",
        name=f"{root.name} harmonized by mrharmony ({h.name})",
        description=f"mrharmony bids: harmonization to {', '.join(targets or h.targets)}",
        SourceDatasets=[{"URL": root.as_uri()}],
    )
    written = []
    progress = Progress(total=len(jobs), unit="runs", desc="harmonize", quiet=quiet)
    for label in dict.fromkeys(j[0] for j in jobs):
        subject_dir = root / f"sub-{label}"
        with staged_output_dir(out / f"sub-{label}", force=force) as tmp:
            for _, dwi, bval, bvec in (j for j in jobs if j[0] == label):
                dest = tmp / dwi.parent.relative_to(subject_dir)
                mask = find_brain_mask(dwi, root)
                prefix = dwi.name.split(".")[0].removesuffix("_dwi")
                run_dir = tmp / f".run-{prefix}"
                apply_model(
                    model,
                    dwi=str(dwi),
                    bval=bval,
                    bvec=bvec,
                    mask=str(mask) if mask else None,
                    out=run_dir,
                    targets=targets,
                    prefix=prefix,
                    description=False,
                    allow_protocol_mismatch=allow_protocol_mismatch,
                    covariates=covariates.get(label),
                )
                dest.mkdir(parents=True, exist_ok=True)
                for item in run_dir.iterdir():
                    os.replace(item, dest / item.name)
                run_dir.rmdir()
                progress.update(1)
            write_json(
                tmp / "log" / "participant.json",
                {
                    "mrharmony": __version__,
                    "level": "participant",
                    "bids_dir": str(root),
                    "model": str(Path(model).resolve()),
                    "filters": list(filters or []),
                    "targets": list(targets or h.targets),
                    "runs": [str(j[1].relative_to(root)) for j in jobs if j[0] == label],
                    "allow_protocol_mismatch": allow_protocol_mismatch,
                    "resources": dict(resources or {}),
                    "container": container_record(),
                },
            )
        written.append(out / f"sub-{label}")
    progress.close()
    return written
