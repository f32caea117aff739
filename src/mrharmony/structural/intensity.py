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

* ``n4_zscore``, ``n4_whitestripe``, ``n4_nyul``: the same after N4 bias-field correction of
  both images (:mod:`mrharmony.structural.bias`), as structural pipelines run them.

These are what HAIL is measured against; each needs only the two images, like HAIL's one shot.
Each is an :class:`~mrharmony.structural.harmonizer.ImageHarmonizer`
(:func:`mrharmony.structural.registry.intensity_harmonizer` picks one by name); only the maths is here.
"""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from collections import OrderedDict
from typing import ClassVar

import numpy as np

from mrharmony.structural.harmonizer import HarmonizedImage, ImageHarmonizer


def _images(*arrays):
    from intensity_normalization.adapters.images import NumpyImageAdapter

    return [NumpyImageAdapter(np.asarray(a, np.float64)) for a in arrays]


class IntensityHarmonizer(ImageHarmonizer):
    """A one-shot intensity baseline: it learns nothing, so any modality and no model file."""

    description = "image harmonized to the site of the target image by an intensity baseline"


class NoHarmonization(IntensityHarmonizer):
    """``none``: the input as it is (float32)."""

    method = "none"
    title = "no harmonization"
    description = "image as it was (no harmonization; the reference row of a comparison)"

    def _transform(self, image, mask, target, target_mask) -> HarmonizedImage:
        return HarmonizedImage(np.asarray(image, np.float32).copy())


class _Standardization(IntensityHarmonizer):
    """The input standardized by an intensity-normalization normalizer fitted on it, then given
    the mean and standard deviation the same normalizer finds in the target."""

    @abstractmethod
    def normalizer(self):
        """A new, unfitted intensity-normalization normalizer."""

    def _transform(self, image, mask, target, target_mask) -> HarmonizedImage:
        img, msk, tgt, tmsk = _images(image, mask, target, target_mask)
        src, ref = self.normalizer().fit(img, msk), self.normalizer().fit(tgt, tmsk)
        z = src.transform(img, msk).get_data()
        return HarmonizedImage((z * ref.std + ref.mean).astype(np.float32))


class ZScoreHarmonizer(_Standardization):
    """``zscore``: standardized over the brain and given the target brain's mean and std."""

    method = "zscore"
    title = "z-score"
    description = "image harmonized to the site of the target image by z-score standardization over the brain"

    def normalizer(self):
        from intensity_normalization.normalizers.individual.zscore import (
            ZScoreNormalizer,
        )

        return ZScoreNormalizer()


class WhiteStripeHarmonizer(_Standardization):
    """``whitestripe``: standardized by the normal-appearing white matter stripe of each image."""

    method = "whitestripe"
    title = "WhiteStripe"
    description = "image harmonized to the site of the target image by WhiteStripe standardization"

    def normalizer(self):
        from intensity_normalization.normalizers.individual.whitestripe import (
            WhiteStripeNormalizer,
        )

        return WhiteStripeNormalizer()


class NyulHarmonizer(IntensityHarmonizer):
    """``nyul``: piecewise-linear histogram matching onto the target brain's own landmarks."""

    method = "nyul"
    title = "Nyul"
    description = "image harmonized to the site of the target image by Nyul histogram matching"
    #: the input's brain histogram is mapped onto the target's, so a brain with more CSF and less
    #: GM than the target's is given the target's proportions
    keeps_differences = False

    def _transform(self, image, mask, target, target_mask) -> HarmonizedImage:
        from intensity_normalization.normalizers.population.nyul import NyulNormalizer

        img, msk, tgt, tmsk = _images(image, mask, target, target_mask)
        lo, hi = np.percentile(np.asarray(target, np.float64)[target_mask], [1, 99])
        nyul = NyulNormalizer(output_min_value=float(lo), output_max_value=float(hi))
        nyul.fit_population([tgt], [tmsk])
        return HarmonizedImage(nyul.transform(img, msk).get_data().astype(np.float32))


class N4Corrected(IntensityHarmonizer):
    """An intensity baseline (:meth:`baseline`) after N4 bias-field correction of both images
    (:func:`mrharmony.structural.bias.n4_correct`). The last corrections are kept for every N4
    row alike (up to :attr:`cache_bytes`), so an image harmonized to many targets, by several
    baselines, or a target given to many inputs, is corrected once."""

    #: measured: fitted on each image, N4 moves a cortical thinning's volume change by more than 10%
    keeps_differences = False
    #: how many bytes of corrected images are kept, for all N4 rows together
    cache_bytes: ClassVar[int] = 256 * 2**20
    _corrected: ClassVar[OrderedDict[str, np.ndarray]] = OrderedDict()

    def corrected(self, image: np.ndarray, mask: np.ndarray, voxel_mm=None) -> np.ndarray:
        """The N4-corrected image, its B-spline mesh spaced in millimetres of ``voxel_mm`` (None: 1 mm voxels)."""
        from mrharmony.structural.bias import n4_correct

        cache = N4Corrected._corrected
        voxel = tuple(float(v) for v in np.broadcast_to(1.0 if voxel_mm is None else voxel_mm, 3))
        # N4 works in float32 (n4_correct): a float64 copy of an image is the same image
        key = hashlib.sha1(
            np.ascontiguousarray(image, np.float32).tobytes() + np.packbits(mask).tobytes() + repr(voxel).encode()
        ).hexdigest()
        if key not in cache:
            cache[key] = n4_correct(image, mask, voxel_mm=voxel)
            while sum(v.nbytes for v in cache.values()) > self.cache_bytes and len(cache) > 1:
                cache.popitem(last=False)
        cache.move_to_end(key)
        return cache[key]

    def _transform(self, image, mask, target, target_mask) -> HarmonizedImage:
        voxel, target_voxel = self.voxel_sizes
        corrected, corrected_target = (
            self.corrected(image, mask, voxel),
            self.corrected(target, target_mask, target_voxel),
        )
        return self.baseline()._transform(corrected, mask, corrected_target, target_mask)

    @abstractmethod
    def baseline(self) -> IntensityHarmonizer:
        """The intensity baseline that follows the correction."""


class N4ZScoreHarmonizer(N4Corrected):
    """``n4_zscore``: N4 bias-field correction, then ``zscore``."""

    method = "n4_zscore"
    title = "N4 + z-score"
    description = "image harmonized to the site of the target image by N4 bias-field correction and z-score"

    def baseline(self) -> IntensityHarmonizer:
        return ZScoreHarmonizer()


class N4WhiteStripeHarmonizer(N4Corrected):
    """``n4_whitestripe``: N4 bias-field correction, then ``whitestripe``."""

    method = "n4_whitestripe"
    title = "N4 + WhiteStripe"
    description = "image harmonized to the site of the target image by N4 bias-field correction and WhiteStripe"

    def baseline(self) -> IntensityHarmonizer:
        return WhiteStripeHarmonizer()


class N4NyulHarmonizer(N4Corrected):
    """``n4_nyul``: N4 bias-field correction, then ``nyul``."""

    method = "n4_nyul"
    title = "N4 + Nyul"
    description = "image harmonized to the site of the target image by N4 bias-field correction and Nyul matching"

    def baseline(self) -> IntensityHarmonizer:
        return NyulHarmonizer()
