"""``prepare --register``: rigid registration of a subject's target scans to its input scan.

A target scan whose grid is not aligned with the input's, or whose brain does not overlap the
input's (see :mod:`mrharmony.data.validate`), is registered rigidly (dipy, mutual information on
the mean b=0 images) to the subject's input scan and resampled (linearly) onto the grid aligned
with the input's at the target's own resolution; its gradient directions are rotated with the
transform. The registered copy is written to
``ROOT/derivatives/mrharmony-registered/<subject>/<platform>/`` (``dwi.nii.gz`` in float32,
``dwi.bval``, ``dwi.bvec``, ``mask.nii.gz`` and ``registration.json`` with the transform and the
mask overlap before and after), and :func:`~mrharmony.data.load_dataset` reads it in place of
the original from then on. Scans that are already co-registered are left alone.
"""

from __future__ import annotations

import numpy as np

from mrharmony.data.dataset import TravelingHeads, registered_folder
from mrharmony.errors import InputError


def register_to_input(ds: TravelingHeads, *, quiet: bool = False) -> list[tuple[str, str]]:
    """Register every target scan of ``ds`` that is not co-registered; return (subject, platform) pairs."""
    from mrharmony.data.validate import (
        check_alignment,
        check_overlap,
        check_scan_headers,
    )
    from mrharmony.progress import Progress

    inp = ds.input_platform.name
    todo = []
    for subject in ds.subjects:
        ref_scan = ds.scan(subject, inp)
        ref = check_scan_headers(ref_scan)
        for t in ds.target_platforms:
            scan = ds.scan(subject, t.name)
            try:
                check_alignment(ref_scan, ref, scan, check_scan_headers(scan))
                check_overlap(ref_scan, scan)
                aligned = True
            except InputError:
                aligned = False
            if not aligned:
                todo.append((subject, t.name))
    progress = Progress(total=len(todo), unit="scans", desc="register", quiet=quiet)
    for subject, name in todo:
        _register_scan(ds, subject, name)
        progress.update(1)
    progress.close()
    return todo


def _mean_b0(dwi: np.ndarray, bvals: np.ndarray) -> np.ndarray:
    return dwi[..., bvals <= 50].mean(axis=-1)


def _register_scan(ds: TravelingHeads, subject: str, name: str) -> None:
    from mrharmony.data.gradients import write_gradients
    from mrharmony.data.validate import mask_dice
    from mrharmony.io import save_nifti, staged_output_dir, write_json
    from mrharmony.registration import block_mean, register, resample, scaled_affine

    ref_scan, scan = ds.scan(subject, ds.input_platform.name), ds.scan(subject, name)
    ref_dwi, ref_aff = ref_scan.load_dwi()
    ref_bvals, _ = ref_scan.gradients()
    ref_mask = ref_scan.load_mask()
    dwi, aff = scan.load_dwi()
    bvals, bvecs = scan.gradients()
    mask = scan.load_mask()
    zoom_in = np.linalg.norm(ref_aff[:3, :3], axis=0)
    zoom_t = np.linalg.norm(aff[:3, :3], axis=0)
    r = max(1, int(round(float(zoom_in[0] / zoom_t[0]))))
    # whole mean b=0 images (cutting them at the masks' edges leaves an outline to lock onto), a
    # finer target averaged down to the input's voxel size so that both pyramids match
    static = _mean_b0(ref_dwi, ref_bvals)
    del ref_dwi
    matrix = register(static, ref_aff, block_mean(_mean_b0(dwi, bvals), r), scaled_affine(aff, r), kind="rigid")
    out_aff = scaled_affine(ref_aff, 1.0 / r)
    out_shape = tuple(int(n) * r for n in ref_mask.shape)
    reg = resample(dwi, aff, out_shape, out_aff, matrix)
    reg_mask = resample(mask.astype(np.float32), aff, out_shape, out_aff, matrix) > 0.5
    # directions: from the target's voxel axes to the world, through the transform, to the new axes
    rot_t = aff[:3, :3] / zoom_t
    rot_out = out_aff[:3, :3] / np.linalg.norm(out_aff[:3, :3], axis=0)
    rot_m = matrix[:3, :3] / np.cbrt(abs(np.linalg.det(matrix[:3, :3])))
    # FSL's bvecs flip x on grids of positive determinant
    flip_t, flip_out = _fsl_flip(aff), _fsl_flip(out_aff)
    new_bvecs = (flip_out @ rot_out.T @ rot_m.T @ rot_t @ flip_t @ bvecs.T).T
    norms = np.linalg.norm(new_bvecs, axis=1, keepdims=True)
    new_bvecs = np.where(norms > 1e-6, new_bvecs / np.maximum(norms, 1e-6), 0.0)
    folder = registered_folder(ds.root, subject, name)
    with staged_output_dir(folder, force=True) as tmp:
        save_nifti(tmp / "dwi.nii.gz", reg, out_aff)
        save_nifti(tmp / "mask.nii.gz", reg_mask.astype(np.uint8), out_aff, dtype=np.uint8)
        write_gradients(tmp / "dwi.bval", tmp / "dwi.bvec", bvals, new_bvecs)
        write_json(
            tmp / "registration.json",
            {
                "Description": f"{name} of {subject} registered rigidly to its {ds.input_platform.name} scan",
                "Sources": [str(scan.dwi), str(scan.bval), str(scan.bvec), str(scan.mask) if scan.mask else None],
                "Transform": "world (mm) of this grid -> world of the source scan",
                "Matrix": matrix.tolist(),
                "MaskDiceBefore": _dice_any_grid(ref_mask, ref_aff, mask, aff),
                "MaskDiceAfter": mask_dice(ref_mask, reg_mask),
            },
        )


def _fsl_flip(affine: np.ndarray) -> np.ndarray:
    return np.diag([-1.0, 1.0, 1.0]) if np.linalg.det(affine[:3, :3]) > 0 else np.eye(3)


def _dice_any_grid(ref_mask, ref_aff, mask, aff) -> float:
    from mrharmony.data.validate import mask_dice
    from mrharmony.registration import resample

    on_ref = resample(mask.astype(np.float32), aff, ref_mask.shape, ref_aff) > 0.5
    return mask_dice(ref_mask, on_ref)
