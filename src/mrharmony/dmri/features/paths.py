"""Where ``prepare`` writes the SH features of a scan (a BIDS-like derivative of the dataset)."""

from __future__ import annotations

from pathlib import Path

DERIVATIVE = "mrharmony-sh"


def feature_dir(root: Path) -> Path:
    return Path(root) / "derivatives" / DERIVATIVE


def feature_paths(root: Path, subject: str, platform: str, denoise: str = "none") -> tuple[Path, Path]:
    """The features of one scan and their sidecar; ``denoise``: those of the scan denoised first
    (``desc-b0norm<method>``, :mod:`mrharmony.dmri.features.denoise`)."""
    desc = "b0norm" if denoise == "none" else f"b0norm{denoise}"
    base = feature_dir(root) / subject / platform / f"{subject}_model-sh_desc-{desc}_dwimap"
    return base.with_name(base.name + ".nii.gz"), base.with_name(base.name + ".json")
