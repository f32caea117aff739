"""Features of diffusion scans: spherical-harmonic fits, their normalization, and ``prepare``."""

from mrharmony.dmri.features.normalization import ChannelStats
from mrharmony.dmri.features.sh import (
    SHConfig,
    b0_normalize,
    fit_sh,
    n_coefficients,
    sh_to_signal,
)

__all__ = ["ChannelStats", "SHConfig", "b0_normalize", "fit_sh", "n_coefficients", "sh_to_signal"]
