"""What every dMRI network's config model provides: it validates the method's settings and
builds the network (the wing's registry, :mod:`mrharmony.dmri.registry`, names one per method).

A network maps normalized SH features of the input platform to those of its targets with valid
convolutions: ``forward(x) -> {target: [outputs]}``, the last output of each list the final
prediction, every output supervised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from pydantic import Field

from mrharmony.config import StrictModel


@dataclass
class FirstStage:
    """Trained networks a method starts from (MSP's first stage): per target the network, its
    model section and its run directory."""

    nets: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)
    runs: dict = field(default_factory=dict)


class NetworkConfig(StrictModel):
    """The ``model`` section of a run that trains a network."""

    #: whether a run trains one network per target (else one network for every target)
    single_target: ClassVar[bool] = False
    #: whether the method starts from trained single networks (``first_stage_runs``)
    builds_on_single_networks: ClassVar[bool] = False

    method: str
    features: int | None = Field(default=None, ge=2, description="width of the network (None: the paper's)")
    init_from: str | None = Field(default=None, description="a finished run of the same network (method, "
                                  "settings, targets and data) whose weights this run starts from: its training "
                                  "continued with this run's optimizer and schedule")

    def width(self) -> dict:
        """Keyword arguments of the network's width (none: its own default)."""
        return {} if self.features is None else {"features": self.features}

    def build(self, targets: dict[str, int], in_channels: int, *, patch_size: int = 11,
              first_stage_nets: dict | None = None):
        """The torch module for ``targets`` (name -> voxel ratio)."""
        raise NotImplementedError

    def with_position(self, net, targets: dict[str, int], sh_channels: int):
        """``net`` with its outputs modulated by position (``training.inputs: sh+position``,
        :class:`~mrharmony.dmri.networks.position.PositionModulated`)."""
        from mrharmony.dmri.networks.position import PositionModulated

        return PositionModulated(net, targets, sh_channels)

    def first_stage_networks(self, targets: list[str], data) -> FirstStage:
        """The trained networks this method starts from (none but for MSP)."""
        return FirstStage()

    def on_progress(self, net, epoch: float) -> None:
        """Per-step schedule of the network (MSP's alpha ramp)."""

    def columns(self, net) -> dict:
        """Extra columns of ``metrics.csv``."""
        return {}
