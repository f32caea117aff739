"""What the learned image methods (HAIL, IHF-Harmony) share below their own modules: the base of
their config models, which tells the training engine what a method trains and how, and the
intensity scale of the images their networks see.

A method's module defines a subclass of :class:`ImageMethodConfig` (the ``model`` section of its
run config) and names it in the registry (:mod:`mrharmony.structural.registry`); the run config of
the structural wing (:mod:`mrharmony.structural.config`) takes the registry's models as its
``model`` section, and the image trainee (:mod:`mrharmony.structural.training`) asks the config
model for the network, what trains in phase 2, the losses and what is deployed.
"""

from __future__ import annotations

import numpy as np

from mrharmony.config import StrictModel

#: the percentile of the brain's intensities that an image is divided by (see :func:`brain_scale`)
BRAIN_PERCENTILE = 99.0


def brain_scale(image: np.ndarray, mask: np.ndarray) -> float:
    """The intensity an image is divided by before it enters the networks: the 99th percentile of
    its brain (robust to the scale every scanner stores its values on)."""
    v = float(np.percentile(np.asarray(image, np.float64)[np.asarray(mask, bool)], BRAIN_PERCENTILE))
    return v if v > 0 else 1.0


class ImageMethodConfig(StrictModel):
    """The ``model`` section of an image method's run: what the engine needs to know of it."""

    method: str

    def row_name(self) -> str:
        """The name of the method's rows, sidecars and model card (a variant's own where it is one)."""
        return self.method

    def spatial_dims(self) -> int:
        """3 for networks on volumes, 2 for networks on slices."""
        return 3

    def build(self):
        """The module a run trains (phase 1 trains its feature autoencoder, ``reconstruct``)."""
        raise NotImplementedError

    def pretrains(self) -> bool:
        """Whether phase 1 (the feature autoencoder) runs."""
        return True

    def crop_multiple(self) -> int:
        """What the edges of a training crop must be a multiple of."""
        return 1

    def check_crop(self, crop_size: int, source) -> None:
        """Refuse a crop size the method cannot take."""

    def phase2_modules(self, net) -> tuple:
        """(trained, frozen) modules of phase 2."""
        raise NotImplementedError

    def transfer_losses(self, net, batch: dict) -> dict:
        """Phase 2 losses of a batch of triplets; ``loss`` is minimized."""
        raise NotImplementedError

    def deployed(self, net):
        """The part of the trainee that applying needs, saved as ``model.pt``."""
        return net

    @classmethod
    def harmonizer(cls):
        """The :class:`~mrharmony.structural.harmonizer.TrainedImageHarmonizer` that applies a
        trained model of the method."""
        raise NotImplementedError
