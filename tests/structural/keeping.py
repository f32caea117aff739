"""What the tests of 'keep what differs between people' share: a subject and the same subject more
atrophied (:func:`mrharmony.simulate.structural.atrophy_pair`), written as files, harmonized on
files, and the tissue-volume changes before and after."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np

from mrharmony.data.structural import load_structural
from mrharmony.simulate.structural import atrophy_pair
from mrharmony.structural.apply import apply_image_model
from mrharmony.structural.metrics import volume_change


def atrophy_files(
    dataset: Path,
    subject: str,
    site: str,
    target_subject: str,
    target_site: str,
    folder: Path,
    *,
    gm_loss: float = 0.1,
    ventricle_growth: float = 0.5,
) -> Path:
    """``folder`` with ``before_T1w.nii.gz`` (the subject on ``site``), ``after_T1w.nii.gz`` (the
    same, more atrophied, rendered with the same draws), their ``mask.nii.gz`` and the one-shot
    target (``target_T1w.nii.gz`` and ``target_mask.nii.gz``)."""
    ds = load_structural(dataset)
    before, after, mask, affine = atrophy_pair(ds, subject, site, gm_loss=gm_loss, ventricle_growth=ventricle_growth)
    folder.mkdir(parents=True, exist_ok=True)
    for name, img in (("before", before), ("after", after)):
        nib.save(nib.Nifti1Image(img, affine), folder / f"{name}_T1w.nii.gz")
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), folder / "mask.nii.gz")
    target, target_affine = ds.load_image(target_subject, target_site)
    nib.save(nib.Nifti1Image(target, target_affine), folder / "target_T1w.nii.gz")
    target_mask = ds.load_mask(target_subject).astype(np.uint8)
    nib.save(nib.Nifti1Image(target_mask, target_affine), folder / "target_mask.nii.gz")
    return folder


def volume_changes(folder: Path, method: str | None = None) -> dict[str, float]:
    """After minus before, the tissue volumes (voxels, from partial volumes) of the two images of
    :func:`atrophy_files`: as rendered (``method`` None), or harmonized on files as ``mrharmony
    structural apply METHOD`` does (:func:`~mrharmony.structural.apply.apply_image_model`)."""
    mask = np.asarray(nib.load(folder / "mask.nii.gz").dataobj) > 0
    images = []
    for name in ("before", "after"):
        path = folder / f"{name}_T1w.nii.gz"
        if method is not None:  # what 'mrharmony structural apply METHOD ...' runs, in this process
            path = apply_image_model(
                method,
                input_path=path,
                target_path=folder / "target_T1w.nii.gz",
                out=folder / "harmonized" / hashlib.sha1(method.encode()).hexdigest()[:10] / name,
                mask_path=folder / "mask.nii.gz",
                target_mask_path=folder / "target_mask.nii.gz",
            )
        images.append(np.asarray(nib.load(path).dataobj, np.float32))
    return volume_change(images[0], images[1], mask)


def assert_claim(folder: Path, method: str, keeps: bool, tolerance: float = 0.1) -> None:
    """A method that claims to keep what differs between people keeps the input's GM and CSF volume
    changes to within ``tolerance`` of their size; one that does not claim it changes one of them by
    more (so that no claim goes stale)."""
    before, after = volume_changes(folder), volume_changes(folder, method)
    assert before["gm"] < 0 < before["csf"], before  # the atrophy is there to keep
    error = max(abs(after[t] - before[t]) / abs(before[t]) for t in ("gm", "csf"))
    assert (error <= tolerance) == keeps, (method, keeps, before, after)
