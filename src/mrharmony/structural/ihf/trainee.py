"""What an IHF-Harmony run trains: the flow with its style encoder, and the fixed feature encoder
that its losses compare images with."""

from __future__ import annotations

import torch
from torch import nn

from mrharmony.structural.hail import HAIL
from mrharmony.structural.ihf.vgg import VGGFeatures


class IHFTrainee(nn.Module):
    """What an IHF-Harmony run trains: the flow with its artefact encoder (``ihf``) and the fixed
    feature encoder of its losses (``features``: a self-trained autoencoder, trained in phase 1,
    or a VGG-19 from a weights file).

    Parameters
    ----------
    flow : nn.Module
        The flow with its style encoder (:class:`~mrharmony.structural.ihf.paper_flow.HierarchyFlow`
        or :class:`~mrharmony.structural.ihf.squeeze_flow.SqueezeIHF`), deployed as the model.
    dims : int
        2 for slices, 3 for volumes (of the self-trained feature encoder).
    widths : tuple of int
        Channels per level of the self-trained feature encoder (a HAIL autoencoder).
    vgg : VGGFeatures, optional
        A VGG-19 feature encoder to use instead of the self-trained one.
    """

    def __init__(self, flow: nn.Module, dims: int = 2, widths=(16, 32, 64), vgg: VGGFeatures | None = None):
        super().__init__()
        self.ihf = flow  # state-dict keys "ihf.*", "features.*" (checkpoints)
        self.features = vgg if vgg is not None else HAIL(tuple(widths), skips=False, dims=dims)

    @property
    def uses_vgg(self) -> bool:
        return isinstance(self.features, VGGFeatures)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Phase 1: the feature autoencoder's reconstruction."""
        return self.features.reconstruct(x)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The features the losses compare, shallowest first."""
        return self.features(x) if self.uses_vgg else self.features.encoder(x)
