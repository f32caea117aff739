"""Diffusion signal of the synthetic traveling heads: a multi-compartment tensor model.

Per fine voxel, with tissue fractions from the anatomy:

* white matter: an intra-axonal (restricted) and an extra-axonal (hindered) compartment for
  each of up to two fibre populations (the second only in the crossing region); axons are
  dispersed about their population's direction (to second order: the intra-axonal tensor of
  axial diffusivity D_a has eigenvalues D_a <cos^2> and D_a (1 - <cos^2>) / 2, plus the radial
  term);
* grey matter: a weakly anisotropic tensor, radial to the cortex;
* CSF: free water.

Each compartment is weighted by its proton density and its T2 decay at the platform's TE, so
that protocols with different TE see different compartment mixtures. The platform's gradient
strength sets the pulse timing of the shell (see :meth:`SimPlatform.pulse_timing`), which
changes the apparent diffusivities of the restricted compartment: the radial one through the
wide-pulse (Neuman) limit for axons of the subject's effective radius,
``D_perp = 7/48 a^4 / (D0 delta (Delta - delta/3))``, and the axial one through its
time dependence ``D(Delta) = D_inf + A / sqrt(Delta)``. The extra-axonal radial diffusivity
also depends on the diffusion time, as for packed axons with short-range disorder (Burcaw et al.,
NeuroImage 2015): ``D_perp(Delta) = D_perp,inf + B ln(Delta / t_c) / Delta``. With the three gradient
systems of MUSHAC (40, 80 and 300 mT/m: Delta of about 32, 24 and 16 ms at b = 1200) these terms
change FA as well as MD between platforms.

A subject's tissue diffusivities may all be scaled by one factor (``diffusivity_scale``: a cohort's
patients, whose MD is higher everywhere): the intra-axonal apparent diffusivities, the extra-axonal
ones (with their time dependence) and grey matter's; free water (CSF) keeps its diffusivity, which
the temperature sets. Scaling every diffusivity of a compartment scales its MD and keeps its FA;
a DTI fit of the voxel's signal at one shell sees MD rise a little less than the factor (diffusion
in tissue is not Gaussian) and FA change a little.

A platform's gradient coil may be non-linear: each gradient axis k delivers ``1 + c_k r^2 /
(100 mm)^2`` of its nominal strength at distance r from the isocentre, so that the effective b
and direction of every volume vary over the head (strong on the Connectom's short, powerful coil).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from mrharmony.simulate.params import SimPlatform

FREE_WATER = 3.0e-3  # mm^2/s at body temperature
D0_INTRA = 2.0e-3  # intrinsic diffusivity inside axons, mm^2/s (for the restricted radial term)
AXIAL_TIME_A = 2.8e-5  # mm^2 s^-1/2: axial excess of 0.2e-3 mm^2/s at Delta = 20 ms
EXTRA_RADIAL_TIME_B = 1.5e-6  # mm^2: extra-axonal radial excess B ln(Delta / t_c) / Delta
EXTRA_RADIAL_TIME_TC = 2e-3  # s: correlation time of the packing disorder
GRADIENT_RADIUS_MM = 100.0  # distance at which gradient_nonlinearity is stated


@dataclass
class TissueProperties:
    """Microstructure and relaxation of one subject (diffusivities in mm^2/s, times in ms)."""

    f_intra: float  # intra-axonal signal fraction of white matter
    dispersion: float  # <cos^2> of axons about their population's mean direction (1: none)
    d_axial: float  # long-time intra-axonal axial diffusivity
    axon_radius_um: float  # effective (MR-visible) axon radius
    d_extra_axial: float
    gm_d_par: float
    gm_d_perp: float
    t2_intra: float
    t2_extra: float
    t2_gm: float
    t2_csf: float
    pd_wm: float
    pd_gm: float
    pd_csf: float

    @classmethod
    def random(cls, rng: np.random.Generator) -> TissueProperties:
        n = rng.normal
        return cls(
            f_intra=float(np.clip(n(0.55, 0.04), 0.4, 0.75)),
            dispersion=float(np.clip(n(0.86, 0.02), 0.75, 0.95)),
            d_axial=float(n(2.1e-3, 0.1e-3)),
            axon_radius_um=float(rng.uniform(2.0, 3.2)),
            d_extra_axial=float(n(1.9e-3, 0.1e-3)),
            gm_d_par=float(n(1.0e-3, 0.05e-3)),
            gm_d_perp=float(n(0.78e-3, 0.04e-3)),
            t2_intra=float(n(90.0, 4.0)),
            t2_extra=float(n(65.0, 3.0)),
            t2_gm=float(n(95.0, 5.0)),
            t2_csf=float(n(1800.0, 100.0)),
            pd_wm=float(n(0.70, 0.015)),
            pd_gm=float(n(0.82, 0.015)),
            pd_csf=1.0,
        )

    def as_dict(self) -> dict:
        return asdict(self)


def restricted_diffusivities(
    tissue: TissueProperties, platform: SimPlatform, diffusivity_scale: float = 1.0
) -> tuple[float, float]:
    """Apparent axial and radial diffusivity (mm^2/s) of the intra-axonal compartment, times
    ``diffusivity_scale``."""
    delta, big_delta = platform.pulse_timing()
    a = tissue.axon_radius_um * 1e-6
    d0 = D0_INTRA * 1e-6
    radial = 7.0 / 48.0 * a**4 / (d0 * delta * (big_delta - delta / 3.0)) * 1e6
    radial = min(radial, 0.5e-3)
    axial = tissue.d_axial + AXIAL_TIME_A / np.sqrt(big_delta)
    return float(axial * diffusivity_scale), float(radial * diffusivity_scale)


def extra_radial_excess(platform: SimPlatform, diffusivity_scale: float = 1.0) -> float:
    """Excess extra-axonal radial diffusivity (mm^2/s) at the platform's diffusion time, times
    ``diffusivity_scale``."""
    _, big_delta = platform.pulse_timing()
    return float(EXTRA_RADIAL_TIME_B * np.log(big_delta / EXTRA_RADIAL_TIME_TC) / big_delta * diffusivity_scale)


def effective_gradients(
    platform: SimPlatform, b: np.ndarray, g: np.ndarray, positions_mm: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Effective b-values (N, M) and unit directions (N, M, 3) of M volumes at N positions (mm
    from the isocentre) under the platform's gradient non-linearity; without non-linearity (or
    positions), b (1, M) and g (1, M, 3) broadcast over the voxels."""
    c = np.asarray(platform.gradient_nonlinearity, np.float32)
    if positions_mm is None or not c.any():
        return b[None, :], g[None, :, :]
    r2 = np.sum(positions_mm.astype(np.float32) ** 2, axis=1, keepdims=True) / GRADIENT_RADIUS_MM**2
    scale = 1.0 + c[None, :] * r2  # (N, 3): each axis' share of its nominal strength
    gp = scale[:, None, :] * g[None, :, :]
    n2 = np.sum(gp * gp, axis=2)  # 0 on b=0 volumes
    unit = gp / np.sqrt(np.maximum(n2, 1e-12))[..., None]
    nominal = np.maximum(np.sum(g * g, axis=1), 1e-12)[None, :]
    return b[None, :] * np.where(nominal > 1e-6, n2 / nominal, 1.0), unit


def compartment_signal(
    anat: dict[str, np.ndarray],
    f_intra_map: np.ndarray,
    tissue: TissueProperties,
    platform: SimPlatform,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    *,
    positions_mm: np.ndarray | None = None,
    diffusivity_scale: float = 1.0,
    chunk: int = 65536,
) -> np.ndarray:
    """Noiseless signal (N, M) of N voxels for M volumes, in units of the fully relaxed PD.

    Args:
        anat: per-voxel maps, flattened to (N,) and (N, 3): ``wm, gm, csf, crossing, fibre1,
            fibre2, radial``.
        f_intra_map: (N,) intra-axonal fraction of white matter.
        bvals, bvecs: the platform's nominal gradient table; the effective b is
            ``bvals * platform.b_scale``, varied over the head by the platform's gradient
            non-linearity at ``positions_mm`` (N, 3: mm from the isocentre).
        diffusivity_scale: the factor on every tissue diffusivity (not on free water's).
    """
    te = platform.te_ms
    d_ax, d_rad = restricted_diffusivities(tissue, platform, diffusivity_scale)
    # orientation dispersion of the axons, to second order (the dispersed compartment's tensor)
    c2 = tissue.dispersion
    i_par = d_rad + (d_ax - d_rad) * c2
    i_perp = d_rad + (d_ax - d_rad) * (1.0 - c2) / 2.0
    b_nominal = (np.asarray(bvals, np.float64) * platform.b_scale).astype(np.float32)
    g_nominal = np.asarray(bvecs, np.float32)
    de_excess = extra_radial_excess(platform, diffusivity_scale)
    d_extra_axial = tissue.d_extra_axial * diffusivity_scale
    gm_d_par, gm_d_perp = tissue.gm_d_par * diffusivity_scale, tissue.gm_d_perp * diffusivity_scale
    n = anat["wm"].shape[0]
    out = np.empty((n, b_nominal.size), np.float32)
    e_ic = np.exp(-te / tissue.t2_intra)
    e_ec = np.exp(-te / tissue.t2_extra)
    w_gm_c = tissue.pd_gm * np.exp(-te / tissue.t2_gm)
    w_csf_c = tissue.pd_csf * np.exp(-te / tissue.t2_csf)
    for s in range(0, n, chunk):
        sl = slice(s, min(n, s + chunk))
        b, g = effective_gradients(platform, b_nominal, g_nominal, None if positions_mm is None else positions_mm[sl])
        wm = anat["wm"][sl, None]
        fic = f_intra_map[sl, None]
        cross = anat["crossing"][sl, None]
        w_ic = wm * tissue.pd_wm * fic * e_ic
        w_ec = wm * tissue.pd_wm * (1.0 - fic) * e_ec
        de_perp = d_extra_axial * (1.0 - fic) + de_excess  # tortuosity, and the time dependence
        sig = anat["gm"][sl, None] * w_gm_c * _zeppelin(anat["radial"][sl], g, b, gm_d_par, gm_d_perp)
        sig += anat["csf"][sl, None] * w_csf_c * np.exp(-b * FREE_WATER)
        for fibre, weight in (("fibre1", 1.0 - cross), ("fibre2", cross)):
            cos2 = _cos2(anat[fibre][sl], g)
            intra = np.exp(-b * (i_perp + (i_par - i_perp) * cos2))
            extra = np.exp(-b * (de_perp + (d_extra_axial - de_perp) * cos2))
            sig += weight * (w_ic * intra + w_ec * extra)
        out[sl] = sig
    return out


def _cos2(direction: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Squared cosines (N, M) between N directions and the volumes' directions g ((1 or N), M, 3)."""
    if g.shape[0] == 1:
        return (direction @ g[0].T) ** 2
    return np.einsum("nk,nmk->nm", direction, g) ** 2


def _zeppelin(direction: np.ndarray, g: np.ndarray, b: np.ndarray, d_par: float, d_perp) -> np.ndarray:
    return np.exp(-b * (d_perp + (d_par - d_perp) * _cos2(direction, g)))


def bias_field(
    rng: np.random.Generator, platform: SimPlatform, coords_mm: np.ndarray, centre: np.ndarray
) -> np.ndarray:
    """Smooth receive field of one scan: the platform's pattern, each term jittered by 20%.

    ``coords_mm`` is (3, ...) scanner coordinates; returns a positive multiplicative field.
    """
    lin = np.asarray(platform.bias_linear) * (1.0 + 0.2 * rng.standard_normal(3))
    rad = platform.bias_radial * (1.0 + 0.2 * rng.standard_normal())
    rel = coords_mm - centre.reshape((3,) + (1,) * (coords_mm.ndim - 1))
    expo = np.tensordot(lin, rel, axes=1) / 100.0 + rad * (np.sum(rel**2, axis=0) / 80.0**2 - 0.5)
    return np.exp(expo).astype(np.float32)


def magnitude_noise(rng: np.random.Generator, signal: np.ndarray, sigma: float, coils: int = 1) -> np.ndarray:
    """The signal as a magnitude image with complex Gaussian noise of std ``sigma`` per channel:
    Rician for one channel (or an adaptive coil combination); for ``coils`` channels combined by
    root sum of squares, non-central chi with 2 ``coils`` degrees of freedom (the signal in one
    channel's real part, the other channels pure noise: the same distribution as any split of
    the signal over the coils)."""
    re = signal + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    power = re * re
    for _ in range(2 * coils - 1):
        n = sigma * rng.standard_normal(signal.shape, dtype=np.float32)
        power += n * n
    return np.sqrt(power)


def gradient_directions(n: int, seed: int) -> np.ndarray:
    """``n`` well-spread unit directions on the hemisphere (electrostatic repulsion, dipy)."""
    from dipy.core.sphere import HemiSphere, disperse_charges

    rng = np.random.default_rng(seed)
    xyz = rng.standard_normal((n, 3))
    xyz /= np.linalg.norm(xyz, axis=1, keepdims=True)
    hemi, _ = disperse_charges(HemiSphere(xyz=xyz), 500)
    v = hemi.vertices
    # flip a random half: real tables are not all on one hemisphere; the signal is symmetric
    flip = rng.random(n) < 0.5
    v[flip] *= -1
    return v


def gradient_table(platform: SimPlatform) -> tuple[np.ndarray, np.ndarray]:
    """bvals (N,) and bvecs (N, 3) of a platform: each shell's directions in turn (lowest b first;
    shell k's directions from seed ``gradient_seed + k``, so the first shell's are those of a
    one-shell protocol of the same seed), b0 volumes spread through the series."""
    shells = platform.shells
    dirs = np.concatenate(
        [gradient_directions(platform.n_directions, platform.gradient_seed + k) for k in range(len(shells))]
    )
    dw_b = np.repeat(shells, platform.n_directions)
    n = len(dw_b) + platform.n_b0
    b0_pos = set(np.round(np.linspace(0, n - 1, platform.n_b0, endpoint=False)).astype(int).tolist())
    bvals = np.zeros(n)
    bvecs = np.zeros((n, 3))
    k = 0
    for i in range(n):
        if i not in b0_pos:
            bvals[i] = dw_b[k]
            bvecs[i] = dirs[k]
            k += 1
    return bvals, bvecs
