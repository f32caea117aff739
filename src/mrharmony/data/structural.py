"""Multi-site structural datasets: ``ROOT/structural.yaml`` and one folder per subject.

The layout is the one ``mrharmony simulate --kind structural`` writes, and a real study can be
arranged the same way (links are fine)::

    ROOT/structural.yaml                   subjects, sites (name and role), modalities
    ROOT/<subject>/<site>/<modality>.nii.gz
    ROOT/<subject>/mask.nii.gz             optional: the subject's brain mask
    ROOT/truth/<subject>/tissue.nii.gz     optional (simulated data): CSF, GM, WM fractions

``structural.yaml`` needs only::

    kind: structural
    subjects: [sub-01, sub-02, ...]
    modalities: [T1w]
    sites:
      - {name: siteA, role: train}      # train: may be used in training
      - {name: siteD, role: unseen}     # unseen: never used in training

A subject without ``mask.nii.gz`` gets the automatic brain mask of its image
(:func:`mrharmony.structural.metrics.brain_mask`). Images of one subject share a grid; a
subject's images on different sites are the same anatomy (traveling heads) only in simulated
data, where the evaluation uses them as the truth; training never pairs them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from mrharmony.errors import InputError

STRUCTURAL_FILE = "structural.yaml"


@dataclass(frozen=True)
class Site:
    name: str
    role: str  # train | unseen


@dataclass
class StructuralDataset:
    root: Path
    subjects: list[str]
    sites: list[Site]
    modalities: list[str]

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
            from mrharmony.structural.metrics import brain_mask

            mask = brain_mask(image)
        else:
            raise InputError("is missing and no image was given to compute a mask from.", path)
        if not mask.any():
            raise InputError("is an empty brain mask.", path)
        return mask


def read_structural_image(path: str | os.PathLike, *, what: str = "image",
                          shape: tuple[int, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A 3D NIfTI as (float32 data, affine); one-sentence errors for a missing, corrupt, 4D,
    non-finite or wrongly shaped file."""
    from mrharmony.data.validate import read_float32, read_image

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


def load_structural(root: str | os.PathLike) -> StructuralDataset:
    """Read ``ROOT/structural.yaml`` (see the module docstring)."""
    from mrharmony.config import read_yaml

    root = Path(root)
    path = root / STRUCTURAL_FILE
    if not path.is_file():
        raise InputError(f"is missing; a structural dataset needs {STRUCTURAL_FILE} "
                         "(see 'mrharmony simulate --kind structural').", path)
    raw = read_yaml(path)
    if not isinstance(raw, dict) or raw.get("kind") != "structural":
        raise InputError("does not describe a structural dataset (kind: structural).", path)
    subjects = raw.get("subjects")
    sites = raw.get("sites")
    if not isinstance(subjects, list) or not subjects or not all(isinstance(s, str) for s in subjects):
        raise InputError("needs 'subjects': a list of subject folders.", path)
    if not isinstance(sites, list) or len(sites) < 2:
        raise InputError("needs 'sites': at least two, each with a name and a role.", path)
    out = []
    for s in sites:
        if not isinstance(s, dict) or not isinstance(s.get("name"), str) or s.get("role") not in ("train", "unseen"):
            raise InputError(f"has a site entry {s!r} without a name and a role (train or unseen).", path)
        out.append(Site(s["name"], s["role"]))
    modalities = raw.get("modalities") or ["T1w"]
    return StructuralDataset(root=root, subjects=list(subjects), sites=out, modalities=list(modalities))
