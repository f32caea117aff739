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
Each is an :class:`~mrharmony.structural.harmonizer.ImageHarmonizer`
(:func:`mrharmony.structural.registry.intensity_harmonizer` picks one by name); only the maths is here.
"""

from __future__ import annotations

from abc import abstractmethod

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

    def _transform(self, image, mask, target, target_mask) -> HarmonizedImage:
        from intensity_normalization.normalizers.population.nyul import NyulNormalizer

        img, msk, tgt, tmsk = _images(image, mask, target, target_mask)
        lo, hi = np.percentile(np.asarray(target, np.float64)[target_mask], [1, 99])
        nyul = NyulNormalizer(output_min_value=float(lo), output_max_value=float(hi))
        nyul.fit_population([tgt], [tmsk])
        return HarmonizedImage(nyul.transform(img, msk).get_data().astype(np.float32))
