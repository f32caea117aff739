"""What every dMRI network's config model provides: it validates the method's settings and
builds the network (the wing's registry, :mod:`mrharmony.dmri.registry`, names one per method).

A network maps normalized SH features of the input platform to those of its targets with valid
convolutions: ``forward(x) -> {target: [outputs]}``, the last output of each list the final
prediction, every output supervised.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from mrharmony.config import StrictModel


class NetworkConfig(StrictModel):
    """The ``model`` section of a run that trains a network."""

    #: whether a run trains one network per target (else one network for every target)
    single_target: ClassVar[bool] = False
    #: whether the method starts from trained single networks (its outputs then hold the first
    #: stage's prediction first, scored as the row ``<name>_stage1``)
    builds_on_single_networks: ClassVar[bool] = False
    #: the keys of a saved model's metadata that hold paths relative to its run directory
    #: (:meth:`build_for_training` records them)
    meta_paths: ClassVar[tuple[str, ...]] = ()

    method: str
    features: int | None = Field(default=None, ge=2, description="width of the network (None: the paper's)")
    init_from: str | None = Field(
        default=None,
        description="a finished run of the same network (method, "
        "settings, targets and data) whose weights this run starts from: its training "
        "continued with this run's optimizer and schedule",
        json_schema_extra={"path": True},
    )

    def width(self) -> dict:
        """Keyword arguments of the network's width (none: its own default)."""
        return {} if self.features is None else {"features": self.features}

    def build(self, targets: dict[str, int], in_channels: int, *, patch_size: int = 11):
        """The torch module for ``targets`` (name -> voxel ratio), with new weights."""
        raise NotImplementedError

    def build_for_training(
        self, targets: dict[str, int], in_channels: int, *, patch_size: int, data, run_dir: Path
    ) -> tuple:
        """The network a run trains and what its saved model records beyond the model section to be
        rebuilt (:meth:`build_saved`); paths in it relative to ``run_dir`` (named in
        :attr:`meta_paths`). Default: a new network, nothing more. ``data`` is the run's
        :class:`~mrharmony.dmri.config.DataConfig` (a method that starts from other runs checks
        them against it)."""
        return self.build(targets, in_channels, patch_size=patch_size), {}

    def build_saved(self, meta: dict):
        """The network of a saved model, before its weights are loaded (``meta``: its metadata,
        paths absolute)."""
        return self.build(meta["ratios"], meta["in_channels"], patch_size=meta["patch_size"])

    def with_position(self, net, targets: dict[str, int], sh_channels: int):
        """``net`` with its outputs modulated by position (``training.inputs: sh+position``,
        :class:`~mrharmony.dmri.networks.position.PositionModulated`)."""
        from mrharmony.dmri.networks.position import PositionModulated

        return PositionModulated(net, targets, sh_channels)

    def on_progress(self, net, epoch: float) -> None:
        """Per-step schedule of the network (MSP's alpha ramp)."""

    def columns(self, net) -> dict:
        """Extra columns of ``metrics.csv``."""
        return {}
