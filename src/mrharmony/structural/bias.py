"""N4 bias-field correction (Tustison et al. 2010, through SimpleITK), the step that structural
pipelines run before intensity normalization.

:func:`n4_correct` divides an image by the smooth multiplicative field that N4 fits inside a
brain mask. It is fitted on a copy shrunk by ``shrink`` along each axis, as pipelines do to keep it
fast, and evaluated on the full grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def n4_correct(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    voxel_mm: Sequence[float] = (1.0, 1.0, 1.0),
    shrink: int = 2,
    iterations: Sequence[int] = (50, 50, 50, 50),
    spline_distance_mm: float = 100.0,
) -> np.ndarray:
    """An image with its receive (bias) field removed by N4.

    Parameters
    ----------
    image
        The image (3D, magnitude).
    mask
        Its brain mask: where the field is fitted.
    voxel_mm
        The voxel size, which sets the B-spline mesh in millimetres.
    shrink
        The factor the image is shrunk by for the fit.
    iterations
        Iterations per fitting level (one level per entry).
    spline_distance_mm
        The distance between the B-spline mesh's control points.

    Returns
    -------
    numpy.ndarray
        The corrected image (float32, on the input's grid); outside the mask the field is
        extrapolated smoothly.
    """
    import SimpleITK as sitk

    data = np.asarray(image, np.float32)
    m = np.asarray(mask, bool)
    floor = max(float(np.percentile(data[m], 1)) * 1e-3, 1e-6) if m.any() else 1e-6
    # N4 works on the log of the image: no zero or negative values
    img = sitk.GetImageFromArray(np.maximum(data, floor).transpose(2, 1, 0).copy())
    img.SetSpacing([float(v) for v in voxel_mm])
    msk = sitk.GetImageFromArray(m.astype(np.uint8).transpose(2, 1, 0).copy())
    msk.CopyInformation(img)
    small, small_mask = sitk.Shrink(img, [shrink] * 3), sitk.Shrink(msk, [shrink] * 3)
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([int(i) for i in iterations])
    extent = np.asarray(img.GetSize()) * np.asarray(img.GetSpacing())
    n4.SetNumberOfControlPoints([int(max(4, np.ceil(e / spline_distance_mm) + 3)) for e in extent])
    n4.Execute(small, small_mask)
    log_field = sitk.GetArrayFromImage(n4.GetLogBiasFieldAsImage(img)).transpose(2, 1, 0)
    return (data / np.exp(log_field)).astype(np.float32)
