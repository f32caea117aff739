"""Real symmetric spherical-harmonic (SH) features of diffusion shells, through dipy.

The signal of each voxel is divided by its mean b=0 signal and each shell is fitted with real
symmetric SH up to ``sh_order_max`` (6: 28 coefficients) with Laplace-Beltrami regularization
(Descoteaux et al. 2007; ``smooth``, 0.006 by default as in dipy's Q-ball model). The SH basis
matrices come from :func:`dipy.reconst.shm.sh_to_sf_matrix`: one pseudo-inverse per shell's
directions, applied to all voxels as one matrix product.

A multi-shell scan gives the coefficients of each shell in turn, lowest b-value first: channel
``k * n + i`` is coefficient ``i`` of shell ``k`` (``n`` coefficients per shell). Shells are
told apart by :data:`SHELL_TOLERANCE`.

Examples:
    >>> cfg = SHConfig()                                                  # doctest: +SKIP
    >>> coeffs = fit_sh(dwi, bvals, bvecs, mask, cfg)                     # (X, Y, Z, 28)
    >>> signal = sh_to_signal(coeffs, other_bvecs, cfg)                   # on another table
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from mrharmony.config import StrictModel
from mrharmony.data.gradients import SHELL_TOLERANCE, shells_of
from mrharmony.errors import InputError


class SHConfig(StrictModel):
    """How scans become SH features (recorded in every feature file's sidecar)."""

    sh_order_max: int = Field(default=6, ge=0, le=14)
    basis: Literal["descoteaux07", "tournier07"] = "descoteaux07"
    legacy: bool = False
    smooth: float = Field(default=0.006, ge=0)
    b0_threshold: float = Field(default=50.0, ge=0)
    shells: list[float] | None = Field(
        default=None, description="b-values of the shells to fit, in s/mm^2; None: every non-zero shell of the scan"
    )

    @model_validator(mode="before")
    @classmethod
    def _one_shell(cls, data: Any) -> Any:
        """Settings written before multi-shell features name one ``shell`` (None: the only one)."""
        if isinstance(data, dict) and "shell" in data:
            data = dict(data)
            shell = data.pop("shell")
            if shell is not None:
                data.setdefault("shells", [shell])
        return data

    @field_validator("shells")
    @classmethod
    def _distinct(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        if not v or min(v) <= 0:
            raise ValueError("shells must be a non-empty list of positive b-values")
        v = sorted(float(b) for b in v)
        if np.any(np.diff(v) <= SHELL_TOLERANCE):
            raise ValueError(f"shells must be more than {SHELL_TOLERANCE:g} s/mm^2 apart")
        return v

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


def shell_values(bvals: np.ndarray, b0_threshold: float = 50.0) -> list[float]:
    """The non-zero shells of a gradient table: the mean b-value of each, ascending."""
    return shells_of(bvals, b0_threshold)[0]


def select_shells(bvals: np.ndarray, cfg: SHConfig, *, source=None) -> list[tuple[float, np.ndarray]]:
    """The shells to fit, lowest b-value first: (mean b-value, boolean index of its volumes) each.

    ``cfg.shells`` names them (each within :data:`SHELL_TOLERANCE`); None takes every non-zero shell.

    Raises
    ------
    InputError
        A named shell the table does not have, or a shell with fewer directions than SH
        coefficients: one sentence naming ``source``.
    """
    bvals = np.asarray(bvals, float)
    dw = bvals > cfg.b0_threshold
    found, labels = shells_of(bvals, cfg.b0_threshold)
    wanted = cfg.shells if cfg.shells is not None else found
    if not wanted:
        raise InputError("has no diffusion-weighted volume (every b-value is at or below the b=0 threshold).", source)
    need = n_coefficients(cfg.sh_order_max)
    out = []
    for k, shell in enumerate(wanted):
        if cfg.shells is None:
            sel = labels == k
        else:  # a named shell holds the b-values within SHELL_TOLERANCE of it
            sel = dw & (np.abs(bvals - shell) <= SHELL_TOLERANCE)
        if not sel.any():
            have = ", ".join(f"{s:g}" for s in shell_values(bvals, cfg.b0_threshold))
            raise InputError(f"has no volume on the b={shell:g} s/mm^2 shell (its shells: {have}).", source)
        if sel.sum() < need:
            raise InputError(
                f"has {int(sel.sum())} directions on the b={shell:g} shell, too few for SH order "
                f"{cfg.sh_order_max} ({need} coefficients).",
                source,
            )
        out.append((float(np.round(bvals[sel].mean())), sel))
    return out


def b0_normalize(dwi: np.ndarray, bvals: np.ndarray, mask: np.ndarray, cfg: SHConfig, *, source=None):
    """Signal of the chosen shells divided by the mean b=0 signal of each voxel.

    Returns:
        (normalized signal (X, Y, Z, n) float32 of the shells' volumes in turn, zero outside the
        mask and where S0 <= 0; the shells (:func:`select_shells`); mean b=0 image).
    """
    b0 = bvals <= cfg.b0_threshold
    shells = select_shells(bvals, cfg, source=source)
    index = np.concatenate([np.flatnonzero(sel) for _, sel in shells])
    s0 = dwi[..., b0].mean(axis=-1, dtype=np.float64).astype(np.float32)
    ok = mask & (s0 > 0)
    out = np.zeros(dwi.shape[:3] + (len(index),), np.float32)
    out[ok] = dwi[ok][:, index] / s0[ok][:, None]
    return out, shells, s0


def fit_sh(
    dwi: np.ndarray, bvals: np.ndarray, bvecs: np.ndarray, mask: np.ndarray, cfg: SHConfig, *, source=None
) -> np.ndarray:
    """SH coefficients (X, Y, Z, n_shells * n_coef) float32 of the b0-normalized shells, one
    shell's coefficients after another (lowest b first); zero outside the mask."""
    norm, shells, _ = b0_normalize(dwi, bvals, mask, cfg, source=source)
    n = n_coefficients(cfg.sh_order_max)
    out = np.zeros(dwi.shape[:3] + (n * len(shells),), np.float32)
    start = 0
    for k, (_, sel) in enumerate(shells):
        _, inv_b = sh_matrices(bvecs[sel], cfg)
        count = int(sel.sum())
        out[mask, k * n : (k + 1) * n] = norm[mask][:, start : start + count] @ inv_b.astype(np.float32)
        start += count
    return out


def shell_count(n_channels: int, sh_order_max: int) -> int:
    """The number of shells of features with ``n_channels`` channels (see the module docstring)."""
    n = n_coefficients(sh_order_max)
    if n_channels < n or n_channels % n:
        raise ValueError(f"{n_channels} channels are not whole shells of SH order {sh_order_max} ({n} each)")
    return n_channels // n


def channel_orders(n_channels: int, sh_order_max: int) -> np.ndarray:
    """Order l of each feature channel, shell after shell (:func:`sh_orders` repeated per shell)."""
    return np.tile(sh_orders(sh_order_max), shell_count(n_channels, sh_order_max))


def channel_groups(n_channels: int, sh_order_max: int) -> np.ndarray:
    """Index of each channel's (shell, order) group, shell after shell: the channels whose energy
    is one rotation-invariant (RISH) feature."""
    orders = sh_orders(sh_order_max)
    n_orders = sh_order_max // 2 + 1
    k = shell_count(n_channels, sh_order_max)
    return (np.arange(k)[:, None] * n_orders + orders[None, :] // 2).ravel()


def order_and_shells(n_channels: int) -> tuple[int, int]:
    """(sh_order_max, number of shells) of ``n_channels`` feature channels, for a network that only
    knows its channel count: the highest even order whose coefficient count divides it (so 5
    shells of order 2 would read as 2 shells of order 4; features are order 4 or more in practice)."""
    for order in range(14, -1, -2):
        if n_channels % n_coefficients(order) == 0:
            return order, n_channels // n_coefficients(order)
    raise ValueError(f"{n_channels} channels are not whole shells of any SH order")


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
    """Signal (..., n_dirs) on the given unit directions from one shell's SH coefficients (..., n_coef)."""
    b, _ = sh_matrices(bvecs, cfg)
    return np.asarray(coeffs, np.float32) @ b.astype(np.float32)
