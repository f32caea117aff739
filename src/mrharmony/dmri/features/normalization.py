"""How SH features are scaled before a network sees them: per channel, mean 0 / std 1.

Two schemes, recorded in every saved harmonizer (its reference's ``normalization``):

* ``platform`` (the default): each platform's channels are scaled by statistics fixed at
  training, the mean over the training subjects of each scan's channel mean and standard
  deviation inside its brain mask. Every scan of a platform goes through the same affine map, so
  whatever differs between people (a brain-wide MD change, a larger CSF fraction) moves the
  scaled features and, through the network, the harmonized ones.
* ``scan``: the MSP paper's normalization, "on each acquisition, per channel": each scan is
  standardized by its own brain mean and spread, and the prediction is mapped back with the
  target platform's training average. This replaces every brain-wide property of a person with
  the training subjects' average; it stays as a named option whose rows carry the suffix
  ``_scannorm``.

The per-scan statistics are written once by ``prepare`` beside each scan's features (which are
stored at their own scale), so the platform statistics are read from the sidecars without
loading any volume.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

#: the schemes; the first is the default
NORMALIZATIONS: tuple[str, ...] = ("platform", "scan")
#: the row-name suffix of a harmonizer trained with per-scan normalization
SCAN_SUFFIX = "_scannorm"


@dataclass(frozen=True)
class ChannelStats:
    """Mean and standard deviation of each channel (last axis) inside a mask."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, data: np.ndarray, mask: np.ndarray) -> ChannelStats:
        vals = data[mask].astype(np.float64)
        if vals.shape[0] == 0:
            raise ValueError("cannot compute channel statistics on an empty mask")
        std = vals.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)  # a constant channel is centred, not divided by 0
        return cls(vals.mean(axis=0).astype(np.float32), std.astype(np.float32))

    @classmethod
    def average(cls, stats: list[ChannelStats]) -> ChannelStats:
        """The mean of several scans' means and of their standard deviations (a platform's scale)."""
        if not stats:
            raise ValueError("no scans to average")
        return cls(
            np.mean([s.mean for s in stats], axis=0).astype(np.float32),
            np.mean([s.std for s in stats], axis=0).astype(np.float32),
        )

    def apply(self, data: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Normalized copy of ``data``; voxels outside ``mask`` (when given) become 0."""
        out = ((data - self.mean) / self.std).astype(np.float32)
        if mask is not None:
            out[~mask] = 0.0
        return out

    def invert(self, data: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Map normalized values back to the original scale."""
        out = (np.asarray(data, np.float32) * self.std + self.mean).astype(np.float32)
        if mask is not None:
            out[~mask] = 0.0
        return out

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> ChannelStats:
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))


def scan_stats(ds, subject: str, platform: str, denoise: str = "none") -> ChannelStats:
    """The channel statistics of one scan's features inside its mask, as ``prepare`` recorded them
    (``denoise``: of the scan denoised first)."""
    from mrharmony.dmri.features.paths import feature_paths
    from mrharmony.errors import InputError

    side = feature_paths(ds.root, subject, platform, denoise)[1]
    if not side.is_file():
        raise InputError("is missing; run 'mrharmony dmri prepare' on the dataset first.", side)
    return ChannelStats.from_dict(json.loads(side.read_text())["normalization"])


def platform_stats(ds, platform: str, subjects: list[str], denoise: str = "none") -> ChannelStats:
    """A platform's fixed scale: the average of its training scans' statistics (:func:`scan_stats`)."""
    return ChannelStats.average([scan_stats(ds, s, platform, denoise) for s in subjects])


@dataclass(frozen=True)
class FeatureScaling:
    """The scale each scan's features are given for training or prediction (see the module docstring).

    ``kind``: ``platform`` or ``scan``; ``platforms``: for ``platform``, each platform's fixed
    statistics (for ``scan``, the targets' averages that predictions are mapped back with);
    ``denoised``: the platform whose scans were denoised before their fit and how (the input's,
    :mod:`mrharmony.dmri.features.denoise`; its statistics are those of the denoised features).
    """

    kind: str
    platforms: dict[str, ChannelStats]
    denoised: tuple[str, str] | None = None

    def __post_init__(self):
        if self.kind not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {self.kind!r}; one of {', '.join(NORMALIZATIONS)}")

    def denoise_of(self, platform: str) -> str:
        """How the scans of ``platform`` were denoised (``none`` for all but the denoised one)."""
        return self.denoised[1] if self.denoised and self.denoised[0] == platform else "none"

    def stats(self, platform: str, own: ChannelStats, denoise: str = "none") -> ChannelStats:
        """The statistics that scale a scan of ``platform`` (``denoise``: denoised so) whose own
        statistics are ``own``."""
        if denoise != self.denoise_of(platform):
            raise ValueError(f"features of {platform} denoised by {denoise}, scaled for {self.denoise_of(platform)}")
        return own if self.kind == "scan" else self.platforms[platform]

    def of_scan(self, ds, subject: str, platform: str) -> ChannelStats:
        """:meth:`stats` for a prepared scan of a dataset."""
        d = self.denoise_of(platform)
        return self.stats(platform, scan_stats(ds, subject, platform, d) if self.kind == "scan" else None, d)

    @classmethod
    def from_dataset(
        cls, kind: str, ds, platforms: list[str], subjects: list[str], *, denoised: tuple[str, str] | None = None
    ) -> FeatureScaling:
        """The scaling learned from the training ``subjects``' prepared features."""
        d = dict([denoised]) if denoised else {}
        return cls(kind, {p: platform_stats(ds, p, subjects, d.get(p, "none")) for p in platforms}, denoised)
