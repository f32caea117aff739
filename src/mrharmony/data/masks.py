"""Brain masks computed from the images, for scans and images that come without one.

Both wings threshold an image and then clean the result the same way
(:func:`largest_component_filled`: the largest connected component, holes filled):

* :func:`brain_mask`: a structural image (skull-stripped), Otsu's threshold (scikit-image);
* :func:`b0_brain_mask`: a diffusion-weighted series, dipy's median Otsu on its mean b=0 image.

Every mask here is deterministic: the same image gives the same mask.

Examples:
    >>> import numpy as np
    >>> img = np.zeros((8, 8, 8), np.float32)
    >>> img[2:6, 2:6, 2:6] = 100.0
    >>> img[0, 0, 0] = 100.0          # a speck outside the brain
    >>> int(brain_mask(img).sum())
    64
"""

from __future__ import annotations

import numpy as np


def largest_component_filled(mask: np.ndarray) -> np.ndarray:
    """The largest connected component of a boolean ``mask`` (face connectivity), its holes
    filled (scipy.ndimage)."""
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    if n > 1:
        mask = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)
    return ndimage.binary_fill_holes(mask)


def brain_mask(image: np.ndarray) -> np.ndarray:
    """The automatic brain mask of a structural image: Otsu's threshold (scikit-image) of the
    image, then :func:`largest_component_filled`. Meant for skull-stripped images."""
    from skimage.filters import threshold_otsu

    return largest_component_filled(image > threshold_otsu(image))


def b0_brain_mask(dwi: np.ndarray, bvals: np.ndarray, b0_threshold: float = 50.0) -> np.ndarray:
    """The automatic brain mask of a diffusion-weighted series (X, Y, Z, N): dipy's median Otsu
    (median radius 2, 1 pass) of the mean of the volumes with b <= ``b0_threshold``, then
    :func:`largest_component_filled`."""
    from dipy.segment.mask import median_otsu

    b0 = dwi[..., np.asarray(bvals) <= b0_threshold].mean(axis=-1)
    _, mask = median_otsu(b0, median_radius=2, numpass=1)
    return largest_component_filled(mask)
