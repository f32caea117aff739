"""The structural wing's methods: one line each, the method's config model (or, for an intensity
baseline, its harmonizer) imported here.

A run config's ``model`` section is the config model of one of its image methods
(``method: hail``; :mod:`mrharmony.structural.config`); the command line (``mrharmony structural
methods``), evaluation, the report and the docs read this table, and the lookups by name live
beside it: :func:`intensity_harmonizer` (a baseline) and :func:`trained_class` (the harmonizer
class of a trained method; :func:`mrharmony.structural.loading.load_image_harmonizer` opens a saved
model with it). A new structural method is its module, its test and one line here.

Attributes
----------
REGISTRY : mrharmony.engine.registry.Registry
    The wing's methods in table order: the image-to-image methods trained by the engine (kind
    ``image``: ``hail``, ``ihf``) and the one-shot intensity baselines (kind ``intensity``:
    ``none``, ``zscore``, ``whitestripe``, ``nyul``, and the last three after N4 bias-field correction:
    ``n4_zscore``, ``n4_whitestripe``, ``n4_nyul``).
INTENSITY_METHODS : tuple of str
    The intensity baselines, in table order.

Examples
--------
>>> from mrharmony.structural.registry import intensity_harmonizer
>>> intensity_harmonizer("nyul")
NyulHarmonizer(name='nyul')
"""

from __future__ import annotations

from mrharmony.engine.registry import Method, Registry
from mrharmony.structural.hail import HAILConfig
from mrharmony.structural.harmonizer import TrainedImageHarmonizer
from mrharmony.structural.ihf import IHFConfig
from mrharmony.structural.intensity import (
    IntensityHarmonizer,
    N4NyulHarmonizer,
    N4WhiteStripeHarmonizer,
    N4ZScoreHarmonizer,
    NoHarmonization,
    NyulHarmonizer,
    WhiteStripeHarmonizer,
    ZScoreHarmonizer,
)

REGISTRY = Registry(
    "structural",
    (
        # image-to-image methods trained by the engine
        Method(
            "hail",
            "image",
            HAILConfig,
            "HAIL: one-shot style transfer (AdaIN) with a consistency loss (re-synthesizes the image: does not keep an "
            "atrophy; the variant hail_residual, residual: true, keeps it)",
        ),
        Method(
            "ihf",
            "image",
            IHFConfig,
            "IHF-Harmony: unpaired harmonization through a hierarchy flow (flow: squeeze, the exactly invertible "
            "variant ihf_squeeze, which keeps an atrophy; the paper's flow does not)",
        ),
        # one-shot intensity baselines (nothing to train)
        Method("none", "intensity", NoHarmonization, "no harmonization: the input as it is"),
        Method(
            "zscore",
            "intensity",
            ZScoreHarmonizer,
            "the brain's mean and standard deviation of the target image (intensity-normalization)",
        ),
        Method(
            "whitestripe",
            "intensity",
            WhiteStripeHarmonizer,
            "WhiteStripe: the white-matter stripe's mean and standard deviation of the target image",
        ),
        Method(
            "nyul",
            "intensity",
            NyulHarmonizer,
            "Nyul histogram matching to the target image's landmarks (maps tissue proportions onto the target's: "
            "does not keep an atrophy)",
        ),
        Method(
            "n4_zscore",
            "intensity",
            N4ZScoreHarmonizer,
            "N4 bias-field correction (SimpleITK), then zscore (does not keep an atrophy: measured)",
        ),
        Method(
            "n4_whitestripe",
            "intensity",
            N4WhiteStripeHarmonizer,
            "N4 bias-field correction (SimpleITK), then whitestripe (does not keep an atrophy: measured)",
        ),
        Method("n4_nyul", "intensity", N4NyulHarmonizer, "N4 bias-field correction (SimpleITK), then nyul"),
    ),
)

#: the intensity baselines, in table order
INTENSITY_METHODS = tuple(REGISTRY.names("intensity"))


def intensity_harmonizer(method: str, *, name: str | None = None) -> IntensityHarmonizer:
    """An intensity baseline, by name.

    Parameters
    ----------
    method
        One of :data:`INTENSITY_METHODS`.
    name
        Its row name (default: the method's).

    Returns
    -------
    IntensityHarmonizer
        The baseline (it learns nothing: ready to use).

    Raises
    ------
    InputError
        An unknown method, in one sentence naming the baselines.
    """
    return REGISTRY.get(method, "intensity").config(name=name)


def trained_class(method: str) -> type[TrainedImageHarmonizer] | None:
    """The harmonizer class of a trained image method.

    Parameters
    ----------
    method
        A method name (``hail``, ``ihf``).

    Returns
    -------
    type or None
        Its :class:`~mrharmony.structural.harmonizer.TrainedImageHarmonizer` subclass; None for a
        name that is no trained image method.
    """
    found = [m for m in REGISTRY.methods("image") if m.name == method]
    return found[0].config.harmonizer() if found else None
