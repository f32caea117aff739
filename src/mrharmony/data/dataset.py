"""The traveling-heads data model and its on-disk layout.

A traveling-heads dataset is a set of subjects, each scanned on every platform (a scanner +
protocol). One platform is the *input* (the old scanner), the others are *targets*. A dataset
is a folder with a ``dataset.yaml`` describing the platforms; the scans are found by its
``layout``, one of the classes of :mod:`mrharmony.data.layouts`:

``mrharmony`` (the default, what ``mrharmony simulate`` writes)::

    ROOT/<subject>/<platform>/dwi.nii.gz      4D diffusion-weighted series
    ROOT/<subject>/<platform>/dwi.bval        FSL b-values (one row)
    ROOT/<subject>/<platform>/dwi.bvec        FSL gradient directions (three rows)
    ROOT/<subject>/<platform>/mask.nii.gz     brain mask on the same grid

``mushac``: as the MUSHAC / CDMRI challenge distributed its data, the platform split into
scanner and protocol folders, ``DATA/<subject>/<scanner>/<protocol>/dwi.nii.gz`` (and
``dwi.bval``, ``dwi.bvec``, ``mask.nii.gz``), each platform naming its ``scanner`` and
``protocol``;

``bids``: a BIDS dataset (read with pybids) whose subjects have dwi runs on several platforms,
the platform being the value of one entity (``bids_entity``: ``ses``, ``acq`` or ``run``), each
platform's name that value; brain masks are taken from a derivative
``..._desc-brain_mask.nii.gz`` beside or under ``derivatives/`` when there is one, else computed
(dipy's median Otsu on the mean b=0 image) and written by ``prepare`` with the features.

``data_root`` (relative to the folder of ``dataset.yaml``) says where the scans are when they
are not beside it; ``mrharmony describe`` writes a ``dataset.yaml`` for a MUSHAC or BIDS folder
from its headers and sidecars. Derivatives (SH features, registered copies) are written under
``ROOT/derivatives/``. A scan registered by ``prepare --register`` is read from its registered
copy, ``ROOT/derivatives/mrharmony-registered/<subject>/<platform>/``.

:func:`load_dataset` validates the whole dataset before any work is done (see
:mod:`mrharmony.data.validate`); a problem is one :class:`~mrharmony.errors.InputError`
naming the file.

Examples
--------
>>> ds = load_dataset("th-demo")                                     # doctest: +SKIP
>>> ds.input_platform.name, [p.name for p in ds.target_platforms]    # doctest: +SKIP
('ge_st', ['prisma_st', 'connectom_st', 'connectom_sa'])
>>> dwi, affine = ds.scan("sub-01", "ge_st").load_dwi()              # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from mrharmony.config import StrictModel, dump_yaml, load_yaml_model
from mrharmony.data.layouts import LAYOUTS, ScanFiles, layout_named, layout_names
from mrharmony.errors import InputError

DATASET_FILE = "dataset.yaml"
SCAN_FILES = ("dwi.nii.gz", "dwi.bval", "dwi.bvec", "mask.nii.gz")
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


class PlatformSpec(StrictModel):
    """One acquisition platform (scanner + protocol) as ``dataset.yaml`` describes it.

    Attributes
    ----------
    name : str
        A plain name (letters, digits, ``_``, ``.``, ``-``).
    role : {'input', 'target', 'site'}
        The platform harmonized from (exactly one per traveling-heads dataset) or to; ``site``: a
        platform of a multi-site study (:mod:`mrharmony.data.study`), whose people are scanned there only.
    voxel_size : tuple of float
        Voxel edges in mm (one number in the file: isotropic).
    bvalues : list of float
        The nominal shells in s/mm^2, b=0 included.
    te_ms : float, optional
        The echo time; simulated platforms need it.
    n_directions : int
        Gradient directions per non-zero shell.
    scanner, protocol : str, optional
        The MUSHAC layout's folders of the platform.
    description : str, optional
        Free text.
    """

    name: str = Field(pattern=_NAME)
    role: Literal["input", "target", "site"]
    voxel_size: tuple[float, float, float]
    bvalues: list[float] = Field(min_length=2, description="nominal shells in s/mm^2, b=0 included")
    te_ms: float | None = Field(default=None, gt=0, description="echo time; simulated platforms need it")
    n_directions: int = Field(ge=1, description="gradient directions per non-zero shell")
    scanner: str | None = None
    protocol: str | None = None
    description: str | None = None

    @field_validator("voxel_size", mode="before")
    @classmethod
    def _isotropic_shorthand(cls, v: Any) -> Any:
        return (v, v, v) if isinstance(v, (int, float)) else v

    @field_validator("voxel_size")
    @classmethod
    def _positive(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(v) <= 0:
            raise ValueError("voxel sizes must be positive")
        return v

    @field_validator("bvalues")
    @classmethod
    def _shells(cls, v: list[float]) -> list[float]:
        if min(v) < 0:
            raise ValueError("b-values cannot be negative")
        if min(v) > 50:
            raise ValueError("the b-values must include b=0")
        return v


class DatasetSpec(StrictModel):
    """The contents of ``dataset.yaml`` (strict: an unknown key is an error).

    Attributes
    ----------
    name : str
        The dataset's name.
    description : str, optional
        Free text.
    layout : str
        Where the scans lie: one of :data:`mrharmony.data.layouts.LAYOUTS` (``mrharmony``,
        ``mushac``, ``bids``).
    data_root : str, optional
        Where the scans are, relative to ``dataset.yaml`` (default: beside it).
    bids_entity : {'ses', 'acq', 'run'}, optional
        For the BIDS layout: the entity that tells the platforms apart.
    platforms : list of PlatformSpec
        At least two, exactly one of role ``input``, with distinct names.
    subjects : list of str, optional
        The subjects (default: those the layout finds).
    generated_by : dict, optional
        What wrote the dataset (the simulator records itself).
    """

    name: str = "traveling-heads"
    description: str | None = None
    layout: str = Field(default="mrharmony", description="one of mrharmony.data.layouts.LAYOUTS")
    data_root: str | None = Field(default=None, description="where the scans are, relative to dataset.yaml")
    bids_entity: Literal["ses", "acq", "run"] | None = None
    platforms: list[PlatformSpec] = Field(min_length=2)
    subjects: list[str] | None = None
    generated_by: dict[str, Any] | None = None

    @field_validator("layout")
    @classmethod
    def _known_layout(cls, v: str) -> str:
        names = layout_names()
        if v not in names:
            quoted = [repr(n) for n in names]
            expected = " or ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)
            raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
        return v

    @model_validator(mode="after")
    def _roles(self) -> DatasetSpec:
        names = [p.name for p in self.platforms]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"platform name {dup[0]!r} is used twice")
        sites = [p.name for p in self.platforms if p.role == "site"]
        if sites:
            raise ValueError(f"platform {sites[0]!r} has role 'site', which a traveling-heads dataset does not take")
        inputs = [p.name for p in self.platforms if p.role == "input"]
        if len(inputs) != 1:
            raise ValueError(f"exactly one platform must have role 'input', found {len(inputs)}")
        if self.subjects is not None:
            bad = [s for s in self.subjects if not re.match(_NAME, s)]
            if bad:
                raise ValueError(f"subject name {bad[0]!r} is not a plain folder name")
        problem = layout_named(self.layout).check_spec(self)
        if problem:
            raise ValueError(problem)
        for other in LAYOUTS:  # the keys of another layout do not go with this one
            given = [k for k in other.own_keys if other.name != self.layout and getattr(self, k) is not None]
            if given:
                raise ValueError(f"'{given[0]}' goes with layout {other.name}, and layout {other.name} needs it")
        return self


@dataclass(frozen=True)
class Scan:
    """One subject on one platform: its files, read on demand.

    Attributes
    ----------
    subject : str
        The subject.
    platform : PlatformSpec
        The platform.
    dwi, bval, bvec : pathlib.Path
        The 4D series and its FSL gradient table.
    mask : pathlib.Path or None
        The brain mask; None: computed from the b=0 volumes (:func:`automatic_mask`).
    """

    subject: str
    platform: PlatformSpec
    dwi: Path
    bval: Path
    bvec: Path
    mask: Path | None  # None: computed from the b=0 volumes (see automatic_mask)

    @classmethod
    def in_folder(cls, subject: str, platform: PlatformSpec, folder: Path) -> Scan:
        """A scan of the folder layouts: ``dwi.nii.gz``, ``dwi.bval``, ``dwi.bvec``, ``mask.nii.gz``.

        Parameters
        ----------
        subject, platform
            The scan's subject and platform.
        folder
            The folder holding the four files (the mask may be missing).

        Returns
        -------
        Scan
        """
        return cls(subject, platform, *ScanFiles.in_folder(folder))

    @property
    def folder(self) -> Path:
        return self.dwi.parent

    def load_dwi(self) -> tuple[np.ndarray, np.ndarray]:
        """Read the DWI series.

        Returns
        -------
        tuple of numpy.ndarray
            The series as float32 (X, Y, Z, N) and its affine.

        Raises
        ------
        InputError
            A missing, unreadable or corrupt file, naming it.
        """
        from mrharmony.data.images import read_float32, read_image

        img = read_image(self.dwi)
        return read_float32(img, self.dwi), img.affine

    def load_mask(self) -> np.ndarray:
        """Read the brain mask, or compute it when the scan has none (:func:`automatic_mask`).

        Returns
        -------
        numpy.ndarray
            Boolean (X, Y, Z).

        Raises
        ------
        InputError
            A missing, unreadable or corrupt file, naming it.
        """
        from mrharmony.data.images import read_image

        if self.mask is None:
            dwi, _ = self.load_dwi()
            return automatic_mask(dwi, self.gradients()[0])
        img = read_image(self.mask)
        data = np.asanyarray(img.dataobj)
        if data.ndim == 4 and data.shape[-1] == 1:
            data = data[..., 0]
        return data > 0

    def gradients(self) -> tuple[np.ndarray, np.ndarray]:
        """Read and check the gradient table (:func:`mrharmony.data.gradients.read_gradients`).

        Returns
        -------
        tuple of numpy.ndarray
            b-values (N,) in s/mm^2 and unit gradient directions (N, 3), zero for b=0 volumes.

        Raises
        ------
        InputError
            A missing or malformed file, naming it.
        """
        from mrharmony.data.gradients import read_gradients

        return read_gradients(self.bval, self.bvec)


def automatic_mask(dwi: np.ndarray, bvals: np.ndarray, b0_threshold: float = 50.0) -> np.ndarray:
    """A brain mask from the mean b=0 image (:func:`mrharmony.data.masks.b0_brain_mask`).

    dipy's median Otsu (median radius 2, 1 pass), the largest connected component, holes
    filled. Deterministic.

    Parameters
    ----------
    dwi
        The DWI series (X, Y, Z, N).
    bvals
        Its b-values (N,).
    b0_threshold
        The largest b-value of a b=0 volume (s/mm^2).

    Returns
    -------
    numpy.ndarray
        Boolean (X, Y, Z).
    """
    from mrharmony.data.masks import b0_brain_mask

    return b0_brain_mask(dwi, bvals, b0_threshold)


@dataclass
class TravelingHeads:
    """A validated traveling-heads dataset: subjects x platforms of co-registered scans
    (made by :func:`load_dataset`).

    Attributes
    ----------
    root : pathlib.Path
        The dataset folder (holding ``dataset.yaml``).
    spec : DatasetSpec
        The contents of ``dataset.yaml``.
    subjects : list of str
        The subjects, in order.
    platforms : dict of str to PlatformSpec
        The platforms by name, the input first.
    index : dict
        (subject, platform name) -> :class:`Scan`.
    """

    root: Path
    spec: DatasetSpec
    subjects: list[str]
    platforms: dict[str, PlatformSpec] = field(default_factory=dict)
    index: dict[tuple[str, str], Scan] = field(default_factory=dict)  # (subject, platform) -> scan

    @property
    def input_platform(self) -> PlatformSpec:
        """The platform of role ``input`` (the one harmonized from)."""
        return next(p for p in self.platforms.values() if p.role == "input")

    @property
    def target_platforms(self) -> list[PlatformSpec]:
        """The platforms of role ``target``, in the order of ``dataset.yaml``."""
        return [p for p in self.platforms.values() if p.role == "target"]

    def platform(self, name: str) -> PlatformSpec:
        """The platform called ``name``.

        Raises
        ------
        InputError
            An unknown platform, naming the dataset's.
        """
        try:
            return self.platforms[name]
        except KeyError:
            known = ", ".join(self.platforms)
            raise InputError(
                f"unknown platform {name!r}; this dataset has {known}.", self.root / DATASET_FILE
            ) from None

    @property
    def data_root(self) -> Path:
        """Where the scans are (the dataset folder, unless ``data_root`` says otherwise)."""
        return (self.root / self.spec.data_root).resolve() if self.spec.data_root else self.root

    def scan(self, subject: str, platform: str) -> Scan:
        """The scan of ``subject`` on the platform called ``platform``.

        Raises
        ------
        InputError
            An unknown subject or platform.
        """
        if subject not in self.subjects:
            raise InputError(f"unknown subject {subject!r}.", self.root)
        self.platform(platform)
        return self.index[(subject, platform)]

    def scans(self, subjects: list[str] | None = None) -> Iterator[Scan]:
        """Every scan of ``subjects`` (default: every subject), subject by subject, the input platform's first."""
        for s in subjects or self.subjects:
            for p in self.platforms:
                yield self.scan(s, p)

    def voxel_ratio(self, target: str) -> int:
        """How many target voxels fit along one input voxel.

        Parameters
        ----------
        target
            A platform's name.

        Returns
        -------
        int
            1, or 2 for a 2x finer target.
        """
        vin = np.asarray(self.input_platform.voxel_size)
        vt = np.asarray(self.platform(target).voxel_size)
        return int(round(float(vin[0] / vt[0])))


def read_dataset_spec(root: str | os.PathLike) -> DatasetSpec:
    """Read and validate ``dataset.yaml`` of a dataset folder (no scan is read).

    Raises
    ------
    InputError
        A missing folder or file, or an invalid ``dataset.yaml``: one sentence naming the file
        and the key.
    """
    root = Path(root)
    if not root.exists():
        raise InputError("does not exist.", root)
    if not root.is_dir():
        raise InputError("is not a directory; a traveling-heads dataset is a folder.", root)
    path = root / DATASET_FILE
    if not path.is_file():
        raise InputError(f"is missing; every dataset describes its platforms in {DATASET_FILE}.", path)
    return load_yaml_model(DatasetSpec, path)


def load_dataset(
    root: str | os.PathLike,
    *,
    check_data: bool = True,
    subjects: list[str] | None = None,
    coregistered: bool = True,
) -> TravelingHeads:
    """Read and validate a traveling-heads dataset (see :mod:`mrharmony.data.validate`).

    Parameters
    ----------
    root
        The dataset folder (holding ``dataset.yaml``).
    check_data
        Also read every image to look for NaN/Inf values and empty masks (slower; the header
        checks always run).
    subjects
        Restrict to these subjects (default: those listed in ``dataset.yaml``, or else every
        folder of ``root`` that holds a platform folder).
    coregistered
        Check that each subject's platforms are co-registered (False: leave it to
        ``prepare --register``).

    Returns
    -------
    TravelingHeads
        The dataset; a scan registered by ``prepare --register`` is read from its registered copy.

    Raises
    ------
    InputError
        The first problem found, as one sentence naming the file.

    Examples
    --------
    >>> ds = load_dataset("th-demo", check_data=False)                  # doctest: +SKIP
    >>> ds.subjects[:2], ds.voxel_ratio("connectom_sa")                 # doctest: +SKIP
    (['sub-01', 'sub-02'], 2)
    """
    from mrharmony.data.validate import validate_dataset

    root = Path(root)
    spec = read_dataset_spec(root)
    ordered = sorted(spec.platforms, key=lambda p: p.role != "input")
    platforms = {p.name: p for p in ordered}
    ds = TravelingHeads(root=root, spec=spec, subjects=[], platforms=platforms)
    data_root = ds.data_root
    if not data_root.is_dir():
        raise InputError("does not exist (the data_root of dataset.yaml).", data_root)
    layout = layout_named(spec.layout)(spec, data_root)
    listed = spec.subjects if spec.subjects is not None else layout.find_subjects()
    if subjects is not None:
        unknown = [s for s in subjects if s not in listed]
        if unknown:
            raise InputError(f"has no subject {unknown[0]!r}.", root)
        listed = list(subjects)
    if not listed:
        raise InputError("holds no subject folders with platform folders in them.", data_root)
    ds.subjects = list(listed)
    ds.index = {(s, p): Scan(s, platforms[p], *files) for (s, p), files in layout.index(ds.subjects).items()}
    _use_registered_copies(ds)
    validate_dataset(ds, check_data=check_data, coregistered=coregistered)
    return ds


REGISTERED = "mrharmony-registered"


def registered_folder(root: Path, subject: str, platform: str) -> Path:
    """Where ``prepare --register`` writes a scan registered to its subject's input scan.

    Parameters
    ----------
    root
        The dataset folder.
    subject, platform
        The scan's subject and platform name.

    Returns
    -------
    pathlib.Path
        ``ROOT/derivatives/mrharmony-registered/<subject>/<platform>``.
    """
    return Path(root) / "derivatives" / REGISTERED / subject / platform


def _use_registered_copies(ds: TravelingHeads) -> None:
    for (s, p), scan in list(ds.index.items()):
        folder = registered_folder(ds.root, s, p)
        if (folder / "registration.json").is_file():
            ds.index[(s, p)] = Scan.in_folder(s, scan.platform, folder)


def write_dataset_spec(root: Path, spec: DatasetSpec) -> None:
    """Write ``spec`` as ``ROOT/dataset.yaml`` (atomically; unset keys left out)."""
    from mrharmony.io import write_text

    write_text(root / DATASET_FILE, dump_yaml(spec.model_dump(mode="json", exclude_none=True)))
