"""IHF-Harmony as a method of the structural wing: its config model (:class:`IHFConfig`, the
``model`` section of a run), the network a config or a saved model describes (:func:`build_flow`)
and the trained model as a harmonizer (:class:`IHFHarmonizer`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator
from torch import nn

from mrharmony.errors import InputError
from mrharmony.structural.base import ImageMethodConfig, brain_scale
from mrharmony.structural.harmonizer import HarmonizedImage, TrainedImageHarmonizer
from mrharmony.structural.ihf.inference import harmonize_flow, restore_flow, target_code
from mrharmony.structural.ihf.losses import hierarchy_losses, squeeze_losses
from mrharmony.structural.ihf.paper_flow import HierarchyFlow
from mrharmony.structural.ihf.residual_flow import ResidualIHF
from mrharmony.structural.ihf.squeeze_flow import SqueezeIHF
from mrharmony.structural.ihf.trainee import IHFTrainee
from mrharmony.structural.ihf.vgg import load_vgg_weights

#: the row name of the squeeze design (``flow: squeeze``), a variant of the paper's flow
SQUEEZE_NAME = "ihf_squeeze"
#: the row name of the residual design (``flow: residual``), a variant of the paper's flow
RESIDUAL_NAME = "ihf_residual"
#: each variant's row name, title and sidecar description
VARIANTS = {
    "squeeze": (
        SQUEEZE_NAME,
        "IHF-Harmony (squeeze variant)",
        "image harmonized by IHF-Harmony's squeeze variant (ihf_squeeze, exactly invertible) to the site of the "
        "target image",
    ),
    "residual": (
        RESIDUAL_NAME,
        "IHF-Harmony (residual variant)",
        "image harmonized by IHF-Harmony's residual variant (ihf_residual, exactly invertible, no squeeze) to the "
        "site of the target image",
    ),
}


def build_flow(model: dict) -> nn.Module:
    """The flow of a saved or configured ``model`` section: the paper's hierarchy flow, or the
    squeeze or residual variant (models saved before the ``flow`` key existed are the squeeze design)."""
    flow = model.get("flow", "squeeze")
    style_dim = model.get("style_dim") or (64 if flow == "hierarchy" else 32)
    hidden = model.get("hidden") or (64 if flow == "hierarchy" else 32)
    if flow == "hierarchy":
        return HierarchyFlow(model["dims"], tuple(model["chunks"]), hidden, style_dim, model["pad"])
    if flow == "residual":
        return ResidualIHF(model["dims"], model["levels"], model["blocks"], hidden, style_dim)
    return SqueezeIHF(model["dims"], model["levels"], model["blocks"], hidden, style_dim)


class IHFHarmonizer(TrainedImageHarmonizer):
    """IHF-Harmony as an :class:`~mrharmony.structural.harmonizer.ImageHarmonizer`: the trained
    flow and style encoder (``net``) applied by
    :func:`~mrharmony.structural.ihf.inference.harmonize_flow`. The paper's hierarchy flow
    (``ihf``) is not invertible from its output (see :mod:`mrharmony.structural.ihf.paper_flow`);
    the squeeze variant (``ihf_squeeze``) is: its result's sidecar holds ``InputScale``,
    ``TargetScale`` and ``StyleCode`` (and its arrays the ``FlowMargin`` of a padded size), with
    which :meth:`restore` (:func:`~mrharmony.structural.ihf.inference.restore_flow`) gives the
    input back from the prediction alone.

    Examples:
        >>> h = IHFHarmonizer.load("runs/ihf_squeeze")                         # doctest: +SKIP
        >>> result = h.transform(image, target=target_image)                   # doctest: +SKIP
        >>> back = h.restore(result)                                           # doctest: +SKIP
    """

    method = "ihf"
    title = "IHF-Harmony"
    array_keys = ("FlowMargin",)
    description = "image harmonized by IHF-Harmony to the site of the target image"
    train_command = "structural train"

    def __init__(self, net, *, meta: dict | None = None, model_file=None, name: str | None = None):
        # the squeeze and residual designs are exactly invertible; the paper's flow is a HierarchyFlow
        flow = "squeeze" if isinstance(net, SqueezeIHF) else "residual" if isinstance(net, ResidualIHF) else None
        super().__init__(net, meta=meta, model_file=model_file, name=name, variant=VARIANTS[flow] if flow else None)
        self.invertible = flow is not None
        # measured (tests/structural/test_keeps_differences.py): the squeeze and residual flows keep a
        # cortical thinning; the paper's hierarchy flow, as briefly trained there, loses most of it
        self.keeps_differences = flow is not None

    @classmethod
    def build_network(cls, model: dict) -> nn.Module:
        return build_flow(model)

    def _transform(self, image, mask, target, target_mask) -> HarmonizedImage:
        out, record = harmonize_flow(self.net, image, mask, target, target_mask)
        margin = record.pop("FlowMargin")
        return HarmonizedImage(out, record, {"FlowMargin": margin} if margin.size else {})

    def _restore(self, result: HarmonizedImage, target, target_mask) -> np.ndarray:
        record = {**result.sidecar, **result.arrays}
        if "InputScale" not in record:
            raise ValueError("an IHF-Harmony prediction is restored with its InputScale, which this result lacks")
        if "StyleCode" not in record:  # written before the record held the code: the target image gives it
            if target is None:
                raise ValueError(
                    "this IHF-Harmony prediction records no style code: restoring it needs the target "
                    "image it was harmonized to"
                )
            s_t = brain_scale(target, target_mask)
            record["TargetScale"] = s_t
            record["StyleCode"] = [float(v) for v in target_code(self.net.eval(), target / s_t, target_mask)[0]]
        return restore_flow(self.net, result.image, record)


class IHFConfig(ImageMethodConfig):
    method: Literal["ihf"]
    flow: Literal["hierarchy", "squeeze", "residual"] = Field(
        default="hierarchy",
        description="hierarchy: the paper's flow (lifting by subtracted deltas, no squeeze; "
        "mrharmony.structural.ihf.paper_flow); squeeze: a variant of this project, named ihf_squeeze in every row "
        "(space-to-channel squeezes and subtractive coupling, exactly invertible from its output); residual: a "
        "variant named ihf_residual (subtractive contracting blocks on the image's own grid, dilated by level, "
        "exactly invertible from its output, nothing tied to pixel parity)",
    )
    dims: Literal[2, 3] = 2
    chunks: tuple[int, ...] = Field(default=(10, 4, 4), min_length=1, description="hierarchy: deltas per block")
    pad: int = Field(default=10, ge=0, description="hierarchy: reflection padding around the image")
    levels: int = Field(default=2, ge=1, le=4, description="squeeze: levels of squeezes; residual: of dilations")
    blocks: int = Field(default=3, ge=1, description="squeeze and residual: blocks per level")
    hidden: int | None = Field(
        default=None,
        ge=4,
        description="hidden channels of the coupling networks (default 64 for hierarchy, 32 for squeeze)",
    )
    style_dim: int | None = Field(
        default=None, ge=2, description="style code (default 64 for hierarchy, as the paper's code, 32 for squeeze)"
    )
    anatomy_weight: float | None = Field(default=None, ge=0, description="default 1 (both flows)")
    artefact_weight: float | None = Field(
        default=None, ge=0, description="default 2 for hierarchy (the paper's code), 10 for squeeze"
    )
    artefact_levels: int | None = Field(
        default=1,
        ge=1,
        description="squeeze: deepest feature levels of the "
        "artefact loss (None: all); hierarchy: every level but the deepest",
    )
    widths: tuple[int, ...] = Field(
        default=(16, 32, 64), min_length=2, description="the self-trained feature encoder of the losses"
    )
    vgg_weights: str | None = Field(
        default=None,
        json_schema_extra={"path": True},
        description="a torchvision-style VGG-19 file (2D): the losses' feature encoder instead of a self-trained one",
    )

    def row_name(self) -> str:
        return VARIANTS[self.flow][0] if self.flow in VARIANTS else self.method

    @model_validator(mode="after")
    def _vgg_is_2d(self) -> IHFConfig:
        if self.vgg_weights and self.dims != 2:
            raise ValueError("vgg_weights needs dims: 2 (VGG-19 is a 2D network)")
        if self.flow == "hierarchy" and self.dims == 3:
            raise ValueError(
                "flow: hierarchy is the paper's 2D flow (its 160 lifted channels at full resolution do "
                "not fit a whole volume); dims: 3 needs flow: squeeze"
            )
        other = {
            "hierarchy": ("levels", "blocks", "artefact_levels"),
            "squeeze": ("chunks", "pad"),
            "residual": ("chunks", "pad"),
        }[self.flow]
        unused = sorted(
            k
            for k in other  # a resolved config writes every key at its default: those pass
            if getattr(self, k) != type(self).model_fields[k].default
        )
        if unused:
            raise ValueError(
                f"{', '.join(unused)} {'is' if len(unused) == 1 else 'are'} not a setting of flow: {self.flow}"
            )
        return self

    def build(self):
        vgg = load_vgg_weights(self.vgg_weights) if self.vgg_weights else None
        return IHFTrainee(build_flow(self.model_dump()), self.dims, tuple(self.widths), vgg)

    def spatial_dims(self) -> int:
        return self.dims

    def pretrains(self) -> bool:
        return not self.vgg_weights  # a VGG-19 from a file needs no phase 1

    def crop_multiple(self) -> int:
        return 2**self.levels if self.flow == "squeeze" else 1

    def check_crop(self, crop_size: int, source) -> None:
        if crop_size % self.crop_multiple():
            raise InputError(
                f"sets crop_size {crop_size}, which the flow's {self.levels} squeezes cannot halve; "
                f"use a multiple of {self.crop_multiple()}.",
                source,
            )

    def phase2_modules(self, net) -> tuple:
        return net.ihf, net.features

    def transfer_losses(self, net, batch: dict) -> dict:
        anatomy = 1.0 if self.anatomy_weight is None else self.anatomy_weight
        if self.flow == "hierarchy":
            artefact = 2.0 if self.artefact_weight is None else self.artefact_weight
            return hierarchy_losses(net, batch, anatomy_weight=anatomy, artefact_weight=artefact)
        artefact = 10.0 if self.artefact_weight is None else self.artefact_weight
        return squeeze_losses(
            net, batch, anatomy_weight=anatomy, artefact_weight=artefact, artefact_levels=self.artefact_levels
        )

    def deployed(self, net):
        return net.ihf

    @classmethod
    def harmonizer(cls):
        return IHFHarmonizer
