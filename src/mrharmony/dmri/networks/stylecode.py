"""The networks of ``stylecode`` (:mod:`mrharmony.dmri.stylecode`): a scanner code from a scan, and
a generator that moves a scan's SH features from one code to another.

* :class:`ScannerEncoder`: three valid 3x3x3 convolutions give local features of the SH channels
  (each from the 7^3 voxels around it); their mean over the brain, through a linear head, is the
  scan's code, a unit vector of ``code_dim`` values. A patch gives the features of its voxels at
  least :data:`ENCODER_MARGIN` from its faces, each computed from real neighbours as in the whole
  scan (which is padded by the margin with zeros, as outside the brain), so the mean over patches
  (:meth:`ScannerEncoder.pooled`) and the mean over a whole scan read the same statistic.
* :class:`CodeGenerator`: the input plus a residual of 3x3x3 convolutions whose features are
  modulated (FiLM: a scale and shift per channel) by the codes of the input and of the target. The
  residual's last layer starts at zero, so an untrained generator is the identity.
* :class:`PersonChange`: what differs between people, applied to SH features as a person would
  change them (the changes of :mod:`mrharmony.simulate.person` with random strengths): every
  diffusivity scaled (the signal raised to a power), part of the signal made isotropic, a free-water
  fraction added. The encoder is trained not to see them; the generator to pass them through.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

#: the free-water diffusivity (mm^2/s) of the free-water change, as :mod:`mrharmony.simulate.person`
FREE_WATER_D = 3.0e-3
#: voxels an input loses on each side through the encoder's valid convolutions
ENCODER_MARGIN = 3


def _conv(cin: int, cout: int) -> nn.Conv3d:
    return nn.Conv3d(cin, cout, 3, padding=1)


class ScannerEncoder(nn.Module):
    """Local features of the SH channels, pooled over the brain into a code (see the module docstring)."""

    def __init__(self, channels: int, width: int, code_dim: int):
        super().__init__()
        self.local = nn.Sequential(
            nn.Conv3d(channels, width, 3),
            nn.SiLU(),
            nn.Conv3d(width, width, 3),
            nn.SiLU(),
            nn.Conv3d(width, width, 3),
            nn.SiLU(),
        )
        self.head = nn.Linear(width, code_dim)

    def features(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sums of the local features over the brain voxels of each item (B, width) at least
        :data:`ENCODER_MARGIN` from its faces, and their counts (B,)."""
        m = ENCODER_MARGIN
        f = self.local(x * mask)
        inner = mask[..., m:-m, m:-m, m:-m]
        return (f * inner).sum(dim=(2, 3, 4)), inner.sum(dim=(1, 2, 3, 4))

    def of_volume(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The code of whole scans (B, C, X, Y, Z): padded by the margin with zeros (outside the brain)."""
        pad = (ENCODER_MARGIN,) * 6
        return self(nn.functional.pad(x, pad), nn.functional.pad(mask, pad))

    def pooled(self, sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """The code of pooled sums (..., width) over counts (...): unit vectors (..., code_dim)."""
        z = self.head(sums / counts.clamp(min=1.0)[..., None])
        return nn.functional.normalize(z, dim=-1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The code of each item (B, C, X, Y, Z) over its brain voxels (``mask`` (B, 1, X, Y, Z))."""
        return self.pooled(*self.features(x, mask))


class FiLMBlock(nn.Module):
    """A 3x3x3 convolution whose features are scaled and shifted per channel by a condition."""

    def __init__(self, width: int, cond: int):
        super().__init__()
        self.conv = _conv(width, width)
        self.film = nn.Linear(cond, 2 * width)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(cond).chunk(2, dim=-1)
        y = self.conv(h) * (1 + scale[..., None, None, None]) + shift[..., None, None, None]
        return h + nn.functional.silu(y)


class CodeGenerator(nn.Module):
    """The input plus a residual conditioned on the input's and the target's codes."""

    def __init__(self, channels: int, width: int, code_dim: int, blocks: int):
        super().__init__()
        self.inp = _conv(channels, width)
        self.blocks = nn.ModuleList(FiLMBlock(width, 2 * code_dim) for _ in range(blocks))
        self.out = nn.Conv3d(width, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor, mask: torch.Tensor, code_in: torch.Tensor, code_target: torch.Tensor):
        """``x`` (B, C, X, Y, Z) moved from ``code_in`` to ``code_target`` (B, code_dim each),
        zero outside ``mask``."""
        cond = torch.cat([code_in, code_target], dim=-1)
        h = nn.functional.silu(self.inp(x * mask))
        for block in self.blocks:
            h = block(h, cond)
        return (x + self.out(h)) * mask


class StyleCodeNet(nn.Module):
    """The encoder and the generator, trained and saved together."""

    def __init__(self, channels: int, width: int, code_dim: int, blocks: int):
        super().__init__()
        self.encoder = ScannerEncoder(channels, width, code_dim)
        self.generator = CodeGenerator(channels, width, code_dim, blocks)


class PersonChange:
    """Changes of the person applied to SH features at their own scale (see the module docstring).

    Each shell's coefficients are written as the signal on ``directions`` (unit vectors), changed
    there and fitted again without regularization (the features were regularized once, by their
    own fit; a second regularized fit would damp the higher orders of every changed feature, and
    without a change the round trip is the identity).
    """

    def __init__(self, sh: dict, shells: list[float], directions: np.ndarray):
        from mrharmony.dmri.features.sh import SHConfig, n_coefficients, sh_matrices

        cfg = SHConfig(**{**sh, "shells": shells, "smooth": 0.0})
        b, inv_b = sh_matrices(directions, cfg)
        self.to_signal = torch.as_tensor(b, dtype=torch.float32)  # (n_coef, n_dirs)
        self.to_coeffs = torch.as_tensor(inv_b, dtype=torch.float32)  # (n_dirs, n_coef)
        self.n = n_coefficients(cfg.sh_order_max)
        self.shells = [float(s) for s in shells]

    def __call__(self, coeffs: torch.Tensor, power, isotropic, free_water) -> torch.Tensor:
        """``coeffs`` (B, C, X, Y, Z) at their own scale, each item changed by its ``power`` (of the
        normalized signal: every diffusivity times it), ``isotropic`` (the fraction of the signal
        replaced by its mean over directions) and ``free_water`` (the fraction replaced by free
        water), tensors (B,)."""
        out = []
        view = (-1, 1, 1, 1, 1)
        for k, b in enumerate(self.shells):
            c = coeffs[:, k * self.n : (k + 1) * self.n].movedim(1, -1)
            s = (c @ self.to_signal).clamp(min=1e-4)
            s = s ** power.view(view)
            s = (1 - isotropic.view(view)) * s + isotropic.view(view) * s.mean(-1, keepdim=True)
            s = (1 - free_water.view(view)) * s + free_water.view(view) * float(np.exp(-b * FREE_WATER_D))
            out.append((s @ self.to_coeffs).movedim(-1, 1))
        return torch.cat(out, dim=1)


def sphere_directions(n: int = 64, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors spread over the sphere (a Fibonacci lattice, turned by a seeded rotation)."""
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = np.pi * (1 + 5**0.5) * i
    v = np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], -1)
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((3, 3)))
    return v @ q.T
