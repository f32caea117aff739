"""Multi-site structural datasets: ``ROOT/structural.yaml`` and one folder per subject.

The layout is the one ``mrharmony simulate --kind structural`` writes, and a real study can be
arranged the same way (links are fine)::

    ROOT/structural.yaml                   subjects, sites (name and role), modalities
    ROOT/<subject>/<site>/<modality>.nii.gz
    ROOT/<subject>/<site>/rescan/<modality>.nii.gz   optional: a second session (``rescans: true``)
    ROOT/<subject>/rescan_mask.nii.gz      optional: its brain mask (default: the subject's)
    ROOT/<subject>/mask.nii.gz             optional: the subject's brain mask
    ROOT/truth/<subject>/tissue.nii.gz     optional (simulated data): CSF, GM, WM fractions

``structural.yaml`` (:class:`StructuralSpec`, strict: an unknown key or a wrong value is one
sentence naming the file and the key) needs only::

    kind: structural
    subjects: [sub-01, sub-02, ...]
    modalities: [T1w]                   # optional (default: T1w)
    sites:
      - {name: siteA, role: train}      # train: may be used in training
      - {name: siteD, role: unseen}     # unseen: never used in training

and may say ``description`` (of the dataset or a site) and ``generated_by`` (what wrote it: the
simulator records its version, preset and seed there).

A subject without ``mask.nii.gz`` gets the automatic brain mask of its image
(:func:`mrharmony.data.masks.brain_mask`). Images of one subject share a grid; a
subject's images on different sites are the same anatomy (traveling heads) only in simulated
data, where the evaluation uses them as the truth; training never pairs them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from mrharmony.config import StrictModel, dump_yaml, load_yaml_model
from mrharmony.errors import InputError

STRUCTURAL_FILE = "structural.yaml"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"  # a plain folder name


class SiteSpec(StrictModel):
    """One site of ``structural.yaml``."""

    name: str = Field(pattern=_NAME)
    role: Literal["train", "unseen"] = Field(description="train: may be used in training; unseen: never")
    description: str | None = None


class StructuralSpec(StrictModel):
    """The contents of ``structural.yaml``."""

    kind: Literal["structural"]
    description: str | None = None
    subjects: list[str] = Field(min_length=1, description="the subject folders")
    modalities: list[str] = Field(default=["T1w"], description="image names: <subject>/<site>/<modality>.nii.gz")
    sites: list[SiteSpec] = Field(min_length=2)
    rescans: bool = Field(
        default=False, description="every subject has a second session on every site: <subject>/<site>/rescan/"
    )
    generated_by: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_an_older_simulator(cls, data: Any) -> Any:
        """Read a file of ``mrharmony simulate --kind structural`` before ``generated_by`` (0.1):
        its version, preset and seed at the top level and each site's simulated appearance in
        the site's entry, which are the simulator's record (``generated_by``) now."""
        if not (isinstance(data, dict) and "mrharmony_version" in data and "generated_by" not in data):
            return data
        data = dict(data)
        record = {"name": "mrharmony simulate", "version": data.pop("mrharmony_version")}
        for key in ("preset", "seed"):
            if key in data:
                record[key] = data.pop(key)
        sites = data.get("sites")
        if isinstance(sites, list) and all(isinstance(e, dict) for e in sites):
            record["sites"] = sites
            data["sites"] = [{k: e[k] for k in ("name", "role") if k in e} for e in sites]
        data["generated_by"] = record
        return data

    @field_validator("modalities", mode="before")
    @classmethod
    def _default_modality(cls, v: Any) -> Any:
        return v or ["T1w"]

    @model_validator(mode="after")
    def _names(self) -> StructuralSpec:
        for what, names in (
            ("subject", self.subjects),
            ("site", [s.name for s in self.sites]),
            ("modality", self.modalities),
        ):
            bad = [n for n in names if not re.match(_NAME, n)]
            if bad:
                raise ValueError(f"{what} name {bad[0]!r} is not a plain folder or file name")
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{what} name {dup[0]!r} is used twice")
        return self


@dataclass
class StructuralDataset:
    root: Path
    subjects: list[str]
    sites: list[SiteSpec]
    modalities: list[str]
    #: whether every subject has a second session on every site (``<subject>/<site>/rescan/``)
    rescans: bool = False
    #: what wrote the dataset (the simulator records itself), if it says
    generated_by: dict | None = None

    @cached_property
    def site_names(self) -> list[str]:
        return [s.name for s in self.sites]

    @property
    def train_sites(self) -> list[str]:
        return [s.name for s in self.sites if s.role == "train"]

    @property
    def unseen_sites(self) -> list[str]:
        return [s.name for s in self.sites if s.role == "unseen"]

    def image_path(self, subject: str, site: str, modality: str = "T1w") -> Path:
        return self.root / subject / site / f"{modality}.nii.gz"

    def rescan_path(self, subject: str, site: str, modality: str = "T1w") -> Path:
        return self.root / subject / site / "rescan" / f"{modality}.nii.gz"

    def load_rescan(self, subject: str, site: str, modality: str = "T1w") -> tuple[np.ndarray, np.ndarray]:
        """(data float32, affine) of a subject's second session on a site."""
        return read_structural_image(self.rescan_path(subject, site, modality))

    def load_rescan_mask(self, subject: str) -> np.ndarray:
        """The brain mask of a subject's second session (its first session's where there is no file of its own)."""
        path = self.root / subject / "rescan_mask.nii.gz"
        if path.is_file():
            mask = read_structural_image(path, what="mask")[0] > 0
            if mask.any():
                return mask
        return self.load_mask(subject)

    def mask_path(self, subject: str) -> Path:
        return self.root / subject / "mask.nii.gz"

    def truth_path(self, subject: str) -> Path:
        return self.root / "truth" / subject / "tissue.nii.gz"

    def load_image(self, subject: str, site: str, modality: str = "T1w") -> tuple[np.ndarray, np.ndarray]:
        """(data float32, affine) of one image, with clear errors for a bad file."""
        return read_structural_image(self.image_path(subject, site, modality))

    def load_mask(self, subject: str, image: np.ndarray | None = None) -> np.ndarray:
        """The subject's brain mask (bool); the automatic mask of ``image`` when there is no file."""
        path = self.mask_path(subject)
        if path.is_file():
            mask = read_structural_image(path, what="mask")[0] > 0
        elif image is not None:
            from mrharmony.data.masks import brain_mask

            mask = brain_mask(image)
        else:
            raise InputError("is missing and no image was given to compute a mask from.", path)
        if not mask.any():
            raise InputError("is an empty brain mask.", path)
        return mask


def read_structural_image(
    path: str | os.PathLike, *, what: str = "image", shape: tuple[int, ...] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A 3D NIfTI as (float32 data, affine); one-sentence errors for a missing, corrupt, 4D,
    non-finite or wrongly shaped file."""
    from mrharmony.data.images import read_float32, read_image

    img = read_image(path)
    data = read_float32(img, path)
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"is {data.ndim}D; a structural {what} must be 3D.", path)
    if shape is not None and data.shape != tuple(shape):
        raise InputError(f"has shape {data.shape} but the input image has {tuple(shape)}.", path)
    if not np.all(np.isfinite(data)):
        raise InputError("has NaN or infinite values.", path)
    return data, np.asarray(img.affine, np.float64)


def read_tissue(path: str | os.PathLike, shape: tuple[int, ...]) -> np.ndarray:
    """A simulated subject's CSF, GM and WM fractions (X, Y, Z, 3, float32) on the grid of ``shape``."""
    from mrharmony.data.images import read_float32, read_image

    data = read_float32(read_image(path), path)
    if data.shape != (*shape, 3):
        raise InputError(
            f"has shape {data.shape}; the tissue fractions of a {tuple(shape)} image are {(*shape, 3)}.", path
        )
    return data


def load_structural(root: str | os.PathLike) -> StructuralDataset:
    """Read ``ROOT/structural.yaml`` (see the module docstring).

    Raises:
        InputError: the file is missing or not a valid :class:`StructuralSpec` (one sentence
            naming the file and the key).
    """
    root = Path(root)
    path = root / STRUCTURAL_FILE
    if not path.is_file():
        raise InputError(
            f"is missing; a structural dataset needs {STRUCTURAL_FILE} (see 'mrharmony simulate --kind structural').",
            path,
        )
    spec = load_yaml_model(StructuralSpec, path)
    return StructuralDataset(
        root=root,
        subjects=list(spec.subjects),
        sites=list(spec.sites),
        modalities=list(spec.modalities),
        rescans=spec.rescans,
        generated_by=spec.generated_by,
    )


def write_structural_spec(root: str | os.PathLike, spec: StructuralSpec) -> None:
    """Write ``ROOT/structural.yaml`` (atomically)."""
    from mrharmony.io import write_text

    write_text(Path(root) / STRUCTURAL_FILE, dump_yaml(spec.model_dump(mode="json", exclude_none=True)))
