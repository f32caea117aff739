"""Real symmetric spherical-harmonic (SH) features of a diffusion shell, through dipy.

The signal of each voxel is divided by its mean b=0 signal and fitted with real symmetric SH up
to ``sh_order_max`` (6: 28 coefficients) with Laplace-Beltrami regularization (Descoteaux et
al. 2007; ``smooth``, 0.006 by default as in dipy's Q-ball model). The SH basis matrices come
from :func:`dipy.reconst.shm.sh_to_sf_matrix`: one pseudo-inverse per gradient table, applied
to all voxels as one matrix product.

Examples:
    >>> cfg = SHConfig()                                                  # doctest: +SKIP
    >>> coeffs = fit_sh(dwi, bvals, bvecs, mask, cfg)                     # (X, Y, Z, 28)
    >>> signal = sh_to_signal(coeffs, other_bvecs, cfg)                   # on another table
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from mrharmony.config import StrictModel
from mrharmony.errors import InputError

SHELL_TOLERANCE = 100.0  # s/mm^2: b-values within this of a shell belong to it


class SHConfig(StrictModel):
    """How scans become SH features (recorded in every feature file's sidecar)."""

    sh_order_max: int = Field(default=6, ge=0, le=14)
    basis: Literal["descoteaux07", "tournier07"] = "descoteaux07"
    legacy: bool = False
    smooth: float = Field(default=0.006, ge=0)
    b0_threshold: float = Field(default=50.0, ge=0)
    shell: float | None = Field(default=None, description="b-value of the shell to fit; None: the only one")

    @field_validator("sh_order_max")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError("sh_order_max must be even for a symmetric basis")
        return v


def n_coefficients(sh_order_max: int) -> int:
    """Number of real symmetric SH coefficients up to ``sh_order_max`` (28 for order 6)."""
    return (sh_order_max + 1) * (sh_order_max + 2) // 2


def sh_orders(sh_order_max: int) -> np.ndarray:
    """Order l of each coefficient, in dipy's ordering (0, 2, 2, 2, 2, 2, 4, ...)."""
    from dipy.reconst.shm import sph_harm_ind_list

    _, l_values = sph_harm_ind_list(sh_order_max)
    return np.asarray(l_values)


def sh_matrices(bvecs: np.ndarray, cfg: SHConfig) -> tuple[np.ndarray, np.ndarray]:
    """SH-to-signal matrix B (n_coef, n_dirs) and the regularized fit matrix (n_dirs, n_coef)."""
    from dipy.core.sphere import Sphere
    from dipy.reconst.shm import sh_to_sf_matrix

    sphere = Sphere(xyz=np.asarray(bvecs, dtype=np.float64))
    b, inv_b = sh_to_sf_matrix(
        sphere,
        sh_order_max=cfg.sh_order_max,
        basis_type=cfg.basis,
        legacy=cfg.legacy,
        smooth=cfg.smooth,
        return_inv=True,
    )
    return b, inv_b


def select_shell(bvals: np.ndarray, cfg: SHConfig, *, source=None) -> np.ndarray:
    """Boolean index of the volumes of the shell to fit."""
    dw = bvals > cfg.b0_threshold
    shells = _shells(bvals[dw])
    if cfg.shell is None:
        if len(shells) != 1:
            listed = ", ".join(f"{s:g}" for s in shells)
            raise InputError(f"has several shells ({listed} s/mm^2); choose one with the 'shell' setting.", source)
        shell = shells[0]
    else:
        shell = cfg.shell
    sel = dw & (np.abs(bvals - shell) <= SHELL_TOLERANCE)
    if not sel.any():
        raise InputError(f"has no volume on the b={shell:g} s/mm^2 shell.", source)
    need = n_coefficients(cfg.sh_order_max)
    if sel.sum() < need:
        raise InputError(
            f"has {int(sel.sum())} directions on the b={shell:g} shell, too few for SH order "
            f"{cfg.sh_order_max} ({need} coefficients).",
            source,
        )
    return sel


def _shells(bvals: np.ndarray) -> list[float]:
    shells: list[float] = []
    for b in np.sort(bvals):
        if not shells or b - shells[-1] > SHELL_TOLERANCE:
            shells.append(float(b))
    return [float(np.round(np.mean(bvals[np.abs(bvals - s) <= SHELL_TOLERANCE]))) for s in shells]


def b0_normalize(dwi: np.ndarray, bvals: np.ndarray, mask: np.ndarray, cfg: SHConfig, *, source=None):
    """Signal of the chosen shell divided by the mean b=0 signal of each voxel.

    Returns:
        (normalized signal (X, Y, Z, n) float32, zero outside the mask and where S0 <= 0;
        index of the shell's volumes; mean b=0 image).
    """
    b0 = bvals <= cfg.b0_threshold
    sel = select_shell(bvals, cfg, source=source)
    s0 = dwi[..., b0].mean(axis=-1, dtype=np.float64).astype(np.float32)
    ok = mask & (s0 > 0)
    out = np.zeros(dwi.shape[:3] + (int(sel.sum()),), np.float32)
    out[ok] = dwi[ok][:, sel] / s0[ok][:, None]
    return out, sel, s0


def fit_sh(
    dwi: np.ndarray, bvals: np.ndarray, bvecs: np.ndarray, mask: np.ndarray, cfg: SHConfig, *, source=None
) -> np.ndarray:
    """SH coefficients (X, Y, Z, n_coef) float32 of the b0-normalized shell; zero outside the mask."""
    norm, sel, _ = b0_normalize(dwi, bvals, mask, cfg, source=source)
    _, inv_b = sh_matrices(bvecs[sel], cfg)
    out = np.zeros(dwi.shape[:3] + (inv_b.shape[1],), np.float32)
    out[mask] = norm[mask] @ inv_b.astype(np.float32)
    return out


def reflection_signs(cfg: SHConfig, axis: int) -> np.ndarray:
    """Signs (n_coef,) that reflect SH coefficients across the plane normal to ``axis``.

    Every real SH basis function of dipy's bases is even or odd under a reflection of one
    coordinate (x -> -x turns phi into pi - phi, y -> -y phi into -phi, z -> -z cos theta into
    -cos theta), so a reflected signal has the coefficients ``signs * c``. The signs are read off
    the basis itself, and checked, rather than written out per basis.
    """
    from dipy.core.sphere import Sphere
    from dipy.reconst.shm import real_sh_descoteaux, real_sh_tournier

    rng = np.random.default_rng(0)
    v = rng.standard_normal((64, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    w = v.copy()
    w[:, axis] *= -1
    fn = real_sh_descoteaux if cfg.basis == "descoteaux07" else real_sh_tournier

    def basis(x):
        sph = Sphere(xyz=x)
        return fn(cfg.sh_order_max, sph.theta, sph.phi, legacy=cfg.legacy)[0]

    a, b = basis(v), basis(w)
    signs = np.sign(np.sum(a * b, axis=0))
    if not np.allclose(b, a * signs, atol=1e-8):
        raise ValueError(f"the {cfg.basis} basis is not even or odd under a reflection of axis {axis}")
    return signs.astype(np.float32)


def sh_to_signal(coeffs: np.ndarray, bvecs: np.ndarray, cfg: SHConfig) -> np.ndarray:
    """Signal (..., n_dirs) on the given unit directions from SH coefficients (..., n_coef)."""
    b, _ = sh_matrices(bvecs, cfg)
    return np.asarray(coeffs, np.float32) @ b.astype(np.float32)
