"""One-shot intensity baselines of structural harmonization: an input image is given the
appearance of one target image, intensities only (no spatial model), inside brain masks.

* ``none``: the input as it is;
* ``zscore``: the input standardized over its brain (intensity-normalization's z-score) and given
  the target brain's mean and standard deviation;
* ``whitestripe``: the same with the mean and standard deviation of the normal-appearing white
  matter stripe (WhiteStripe, Shinohara et al. 2014, via intensity-normalization) of each image;
* ``nyul``: piecewise-linear histogram matching (Nyul and Udupa 1999, via intensity-normalization)
  whose standard scale is the target image's own landmarks (percentiles 1, 10, 20, ..., 90, 99 of
  its brain), so the input's landmarks land on the target's.

These are what HAIL is measured against; each needs only the two images, like HAIL's one shot.
"""

from __future__ import annotations

import numpy as np

from mrharmony.errors import InputError

INTENSITY_METHODS = ("none", "zscore", "whitestripe", "nyul")


def _images(*arrays):
    from intensity_normalization.adapters.images import NumpyImageAdapter

    return [NumpyImageAdapter(np.asarray(a, np.float64)) for a in arrays]


def harmonize_intensity(method: str, image: np.ndarray, mask: np.ndarray, target: np.ndarray,
                        target_mask: np.ndarray) -> np.ndarray:
    """The input ``image`` with the appearance of ``target`` by one intensity baseline (float32)."""
    if method not in INTENSITY_METHODS:
        raise InputError(f"unknown intensity method {method!r}; choose one of {', '.join(INTENSITY_METHODS)}.")
    m, tm = np.asarray(mask, bool), np.asarray(target_mask, bool)
    if method == "none":
        return np.asarray(image, np.float32).copy()
    img, msk, tgt, tmsk = _images(image, m, target, tm)
    if method in ("zscore", "whitestripe"):
        from intensity_normalization.normalizers.individual.whitestripe import WhiteStripeNormalizer
        from intensity_normalization.normalizers.individual.zscore import ZScoreNormalizer

        cls = ZScoreNormalizer if method == "zscore" else WhiteStripeNormalizer
        src, ref = cls().fit(img, msk), cls().fit(tgt, tmsk)
        z = src.transform(img, msk).get_data()
        return (z * ref.std + ref.mean).astype(np.float32)
    from intensity_normalization.normalizers.population.nyul import NyulNormalizer

    lo, hi = np.percentile(np.asarray(target, np.float64)[tm], [1, 99])
    nyul = NyulNormalizer(output_min_value=float(lo), output_max_value=float(hi))
    nyul.fit_population([tgt], [tmsk])
    return nyul.transform(img, msk).get_data().astype(np.float32)
