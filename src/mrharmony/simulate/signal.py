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
time dependence ``D(Delta) = D_inf + A / sqrt(Delta)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from mrharmony.simulate.params import SimPlatform

FREE_WATER = 3.0e-3  # mm^2/s at body temperature
D0_INTRA = 2.0e-3  # intrinsic diffusivity inside axons, mm^2/s (for the restricted radial term)
AXIAL_TIME_A = 2.8e-5  # mm^2 s^-1/2: axial excess of 0.2e-3 mm^2/s at Delta = 20 ms


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
    def random(cls, rng: np.random.Generator) -> "TissueProperties":
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


def restricted_diffusivities(tissue: TissueProperties, platform: SimPlatform) -> tuple[float, float]:
    """Apparent axial and radial diffusivity (mm^2/s) of the intra-axonal compartment."""
    delta, big_delta = platform.pulse_timing()
    a = tissue.axon_radius_um * 1e-6
    d0 = D0_INTRA * 1e-6
    radial = 7.0 / 48.0 * a**4 / (d0 * delta * (big_delta - delta / 3.0)) * 1e6
    radial = min(radial, 0.5e-3)
    axial = tissue.d_axial + AXIAL_TIME_A / np.sqrt(big_delta)
    return float(axial), float(radial)


def compartment_signal(anat: dict[str, np.ndarray], f_intra_map: np.ndarray, tissue: TissueProperties,
                       platform: SimPlatform, bvals: np.ndarray, bvecs: np.ndarray,
                       *, chunk: int = 65536) -> np.ndarray:
    """Noiseless signal (N, M) of N voxels for M volumes, in units of the fully relaxed PD.

    Args:
        anat: per-voxel maps, flattened to (N,) and (N, 3): ``wm, gm, csf, crossing, fibre1,
            fibre2, radial``.
        f_intra_map: (N,) intra-axonal fraction of white matter.
        bvals, bvecs: the platform's nominal gradient table; the effective b is
            ``bvals * platform.b_scale``.
    """
    te = platform.te_ms
    d_ax, d_rad = restricted_diffusivities(tissue, platform)
    # orientation dispersion of the axons, to second order (the dispersed compartment's tensor)
    c2 = tissue.dispersion
    i_par = d_rad + (d_ax - d_rad) * c2
    i_perp = d_rad + (d_ax - d_rad) * (1.0 - c2) / 2.0
    b = (np.asarray(bvals, np.float64) * platform.b_scale).astype(np.float32)
    g = np.asarray(bvecs, np.float32)
    n = anat["wm"].shape[0]
    out = np.empty((n, b.size), np.float32)
    e_ic = np.exp(-te / tissue.t2_intra)
    e_ec = np.exp(-te / tissue.t2_extra)
    w_gm_c = tissue.pd_gm * np.exp(-te / tissue.t2_gm)
    w_csf_c = tissue.pd_csf * np.exp(-te / tissue.t2_csf)
    csf_att = np.exp(-b * FREE_WATER)[None, :]
    for s in range(0, n, chunk):
        sl = slice(s, min(n, s + chunk))
        wm = anat["wm"][sl, None]
        fic = f_intra_map[sl, None]
        cross = anat["crossing"][sl, None]
        w_ic = wm * tissue.pd_wm * fic * e_ic
        w_ec = wm * tissue.pd_wm * (1.0 - fic) * e_ec
        de_perp = tissue.d_extra_axial * (1.0 - fic)  # tortuosity
        sig = anat["gm"][sl, None] * w_gm_c * _zeppelin(anat["radial"][sl], g, b, tissue.gm_d_par, tissue.gm_d_perp)
        sig += anat["csf"][sl, None] * w_csf_c * csf_att
        for fibre, weight in (("fibre1", 1.0 - cross), ("fibre2", cross)):
            cos2 = (anat[fibre][sl] @ g.T) ** 2
            intra = np.exp(-b * (i_perp + (i_par - i_perp) * cos2))
            extra = np.exp(-b * (de_perp + (tissue.d_extra_axial - de_perp) * cos2))
            sig += weight * (w_ic * intra + w_ec * extra)
        out[sl] = sig
    return out


def _zeppelin(direction: np.ndarray, g: np.ndarray, b: np.ndarray, d_par: float, d_perp) -> np.ndarray:
    cos2 = (direction @ g.T) ** 2
    return np.exp(-b * (d_perp + (d_par - d_perp) * cos2))


def bias_field(rng: np.random.Generator, platform: SimPlatform, coords_mm: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Smooth receive field of one scan: the platform's pattern, each term jittered by 20%.

    ``coords_mm`` is (3, ...) scanner coordinates; returns a positive multiplicative field.
    """
    lin = np.asarray(platform.bias_linear) * (1.0 + 0.2 * rng.standard_normal(3))
    rad = platform.bias_radial * (1.0 + 0.2 * rng.standard_normal())
    rel = coords_mm - centre.reshape((3,) + (1,) * (coords_mm.ndim - 1))
    expo = np.tensordot(lin, rel, axes=1) / 100.0 + rad * (np.sum(rel**2, axis=0) / 80.0**2 - 0.5)
    return np.exp(expo).astype(np.float32)


def rician(rng: np.random.Generator, signal: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of the signal plus complex Gaussian noise of std ``sigma`` per channel."""
    re = signal + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    im = sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    return np.sqrt(re * re + im * im)


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
    """bvals (N,) and bvecs (N, 3) of a platform: b0 volumes spread through the series."""
    dirs = gradient_directions(platform.n_directions, platform.gradient_seed)
    n = platform.n_directions + platform.n_b0
    b0_pos = set(np.round(np.linspace(0, n - 1, platform.n_b0, endpoint=False)).astype(int).tolist())
    bvals = np.zeros(n)
    bvecs = np.zeros((n, 3))
    k = 0
    for i in range(n):
        if i not in b0_pos:
            bvals[i] = platform.shell
            bvecs[i] = dirs[k]
            k += 1
    return bvals, bvecs
