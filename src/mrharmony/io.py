"""Writing outputs safely: atomic files, guarded output directories, float32 NIfTI.

Every file mrharmony writes goes through :func:`atomic_path`: it is written under a temporary
name in the same directory and renamed into place only once complete, so that an interrupted
run never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mrharmony.errors import InputError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds.

    The temporary name keeps the suffixes of ``path`` (``.nii.gz`` stays ``.nii.gz``) so that
    libraries that pick a format from the file name write the right one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}-", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs get the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_nifti(path: str | os.PathLike, data: np.ndarray, affine: np.ndarray, *, dtype=np.float32) -> None:
    """Write ``data`` as a NIfTI file with the given affine, atomically.

    Floating outputs are float32 with unit scaling (never silently rescaled integers); integer
    dtypes are written as they are, for masks and simulated raw scanner data.
    """
    import nibabel as nib

    arr = np.asarray(data, dtype=dtype)
    img = nib.Nifti1Image(arr, np.asarray(affine, dtype=np.float64))
    img.set_data_dtype(np.dtype(dtype))
    img.header.set_xyzt_units("mm", "sec")
    img.set_sform(img.affine, code=1)
    img.set_qform(img.affine, code=1)
    if np.issubdtype(np.dtype(dtype), np.floating):
        img.header["scl_slope"] = 1.0
        img.header["scl_inter"] = 0.0
    with atomic_path(path) as tmp:
        nib.save(img, tmp)


def check_new_file(path: str | os.PathLike, *, force: bool) -> Path:
    """The overwrite policy for one output file: ``path`` may be written if it does not exist, or
    with ``force``; else one sentence naming it."""
    path = Path(path)
    if path.exists() and not force:
        raise InputError("already exists; pass --force to overwrite it.", path)
    return path


@contextlib.contextmanager
def staged_output_dir(path: str | os.PathLike, *, force: bool) -> Iterator[Path]:
    """Build a whole output directory under a temporary name, then move it into place.

    If the block fails, nothing is left at ``path`` (and an existing output is kept when
    ``force`` was not given, since the check happens first).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError("exists and is not a directory; choose another output path.", path)
    if path.exists() and any(path.iterdir()) and not force:
        raise InputError("already exists and is not empty; pass --force to overwrite it.", path)
    parent = path.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot be created ({exc.strerror}).", path) from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError("cannot be created because its parent directory is not writable.", path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-partial-", dir=parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_format_version(
    version,
    path: str | os.PathLike,
    *,
    remedy: str = "upgrade mrharmony to use it",
    unversioned: str = "it was not written by mrharmony, or is damaged",
) -> None:
    """Refuse a file written by a newer on-disk format, or with no version: one sentence naming
    the file, its version, the newest this mrharmony reads and ``remedy`` (``unversioned``: what
    to say of a file with no version)."""
    from mrharmony import FORMAT_VERSION

    if not isinstance(version, int) or isinstance(version, bool):
        raise InputError(f"has no valid format version ({version!r}); {unversioned}.", path)
    if version > FORMAT_VERSION:
        raise InputError(
            f"was written by a newer mrharmony (format version {version}, this one reads up to "
            f"{FORMAT_VERSION}); {remedy}.",
            path,
        )


#: set by mrharmony's container images: the kind of image (``docker`` or ``apptainer``) and its tag
CONTAINER_TYPE_VARIABLE = "MRHARMONY_CONTAINER_TYPE"
CONTAINER_TAG_VARIABLE = "MRHARMONY_CONTAINER_TAG"


def container_record() -> dict[str, str] | None:
    """The software container mrharmony runs in, as BIDS's ``GeneratedBy.Container`` (``Type``
    and ``Tag``), from the variables its images set; None outside them.

    The Docker image run by Apptainer keeps the Docker image's variables; Apptainer's own
    (``APPTAINER_CONTAINER``, or ``SINGULARITY_CONTAINER`` of its predecessor) tell it apart.
    """
    kind = os.environ.get(CONTAINER_TYPE_VARIABLE, "").strip()
    if not kind:
        return None
    if kind == "docker" and (os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER")):
        kind = "apptainer"
    record = {"Type": kind}
    tag = os.environ.get(CONTAINER_TAG_VARIABLE, "").strip()
    if tag:
        record["Tag"] = tag
    return record


def write_derivative_description(path: str | os.PathLike, *, name: str, description: str, **extra) -> None:
    """``dataset_description.json`` of a BIDS derivative that mrharmony wrote (``DatasetType:
    derivative``, ``GeneratedBy`` naming this version and ``description``, and the container
    image it ran in, if any: :func:`container_record`); ``extra`` adds keys such as
    ``SourceDatasets``."""
    from mrharmony import __version__

    generated_by: dict[str, object] = {"Name": "mrharmony", "Version": __version__, "Description": description}
    container = container_record()
    if container:
        generated_by["Container"] = container
    write_json(
        path,
        {
            "Name": name,
            "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": [generated_by],
            **extra,
        },
    )
