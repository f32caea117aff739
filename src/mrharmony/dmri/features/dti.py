"""DTI and DKI maps (dipy) of measured or harmonized signals.

DTI (FA, MD, direction-encoded colour FA) is fitted to the lowest non-zero shell, as studies fit
it (the signal's kurtosis biases a tensor fitted to higher shells); DKI (mean, axial and radial
kurtosis) to every shell, where there are two or more.
"""

from __future__ import annotations

import numpy as np

from mrharmony.dmri.features.sh import SHConfig, n_coefficients, select_shells, sh_to_signal, shell_count


def signal_from_sh(coeffs: np.ndarray, bvals: np.ndarray, bvecs: np.ndarray, sh: SHConfig | dict):
    """The b0-normalized signal of SH coefficients on a gradient table's shells.

    ``coeffs`` holds the coefficients of each shell in turn (lowest b first, see
    :mod:`mrharmony.dmri.features.sh`); they are written on the table's own shells, as many as
    there are coefficient sets, lowest first.

    Returns (bvals, bvecs, signal): one b=0 volume of 1.0 followed by each shell's directions.
    """
    cfg = sh if isinstance(sh, SHConfig) else SHConfig(**sh)
    bvals = np.asarray(bvals, float)
    k = shell_count(coeffs.shape[-1], cfg.sh_order_max)
    shells = select_shells(bvals, cfg.model_copy(update={"shells": None}))
    if len(shells) != k:
        raise ValueError(f"{k} shells of coefficients for a gradient table with {len(shells)} shells")
    n = n_coefficients(cfg.sh_order_max)
    parts = [np.ones(coeffs.shape[:-1] + (1,), np.float32)]
    parts += [sh_to_signal(coeffs[..., i * n : (i + 1) * n], bvecs[sel], cfg) for i, (_, sel) in enumerate(shells)]
    index = np.concatenate([np.flatnonzero(sel) for _, sel in shells])
    return (np.r_[0.0, bvals[index]], np.r_[np.zeros((1, 3)), bvecs[index]], np.concatenate(parts, axis=-1))


def lowest_shell(bvals: np.ndarray, bvecs: np.ndarray, signal: np.ndarray, b0_threshold: float = 50.0):
    """The b=0 volumes and the lowest non-zero shell of a series: (bvals, bvecs, signal)."""
    from mrharmony.data.gradients import shells_of

    bvals = np.asarray(bvals, float)
    keep = np.isin(shells_of(bvals, b0_threshold)[1], (-1, 0))
    return bvals[keep], np.asarray(bvecs)[keep], signal[..., keep]


def dti_maps(signal: np.ndarray, bvals: np.ndarray, bvecs: np.ndarray, mask: np.ndarray):
    """FA, MD (mm^2/s) and direction-encoded colour FA (X, Y, Z, 3) from a DTI fit (dipy) of the
    lowest shell."""
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel, color_fa

    bvals, bvecs, signal = lowest_shell(bvals, bvecs, signal)
    gtab = gradient_table(np.asarray(bvals, float), bvecs=np.asarray(bvecs, float))
    fit = TensorModel(gtab).fit(np.clip(signal, 1e-6, None), mask=mask)
    fa = np.nan_to_num(fit.fa).astype(np.float32)
    md = np.nan_to_num(fit.md).astype(np.float32)
    dec = np.nan_to_num(color_fa(fa, fit.evecs)).astype(np.float32)
    return fa, md, dec


def fit_in_mask(coeffs: np.ndarray, bvals, bvecs, sh: SHConfig | dict, mask: np.ndarray, maps) -> list[np.ndarray]:
    """The maps ``maps(signal, bvals, bvecs, mask)`` gives (a sequence of arrays, each (X, Y, Z) or
    (X, Y, Z, k)) of the signal of SH coefficients on a gradient table, made and fitted inside
    ``mask`` only (each voxel's fit is independent, so the maps are those of a whole-volume fit, at
    the cost of the mask's voxels); 0 outside."""
    m = np.asarray(mask, bool)
    shape = coeffs.shape[:3]
    if m.shape != shape:
        raise ValueError(f"mask of shape {m.shape} for coefficients of shape {shape}")
    b, v, signal = signal_from_sh(np.asarray(coeffs)[m][:, None, None], np.asarray(bvals), np.asarray(bvecs), sh)
    out = []
    for values in maps(signal, b, v, np.ones(signal.shape[:3], bool)):
        full = np.zeros(shape + values.shape[3:], np.float32)
        full[m] = values[:, 0, 0]
        out.append(full)
    return out


def dti_from_sh(coeffs: np.ndarray, bvals: np.ndarray, bvecs: np.ndarray, sh: SHConfig | dict, mask: np.ndarray):
    """FA, MD and DEC FA of the signal of SH coefficients on a gradient table's lowest shell, inside
    ``mask`` (:func:`fit_in_mask`)."""
    fa, md, dec = fit_in_mask(coeffs, bvals, bvecs, sh, mask, dti_maps)
    return fa, md, dec


#: the DKI maps: name -> what it is
KURTOSIS_MAPS = {"mk": "mean kurtosis", "ak": "axial kurtosis", "rk": "radial kurtosis"}
#: the range the kurtosis maps are clipped to (values outside it are fit failures at the noise levels of
#: clinical scans; the range dipy's documentation uses for its maps)
KURTOSIS_RANGE = (0.0, 3.0)


def has_kurtosis(bvals: np.ndarray, b0_threshold: float = 50.0) -> bool:
    """Whether a gradient table has the two non-zero shells a DKI fit needs."""
    from mrharmony.data.gradients import shells_of

    return len(shells_of(bvals, b0_threshold)[0]) >= 2


def dki_maps(signal: np.ndarray, bvals: np.ndarray, bvecs: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Mean, axial and radial kurtosis (``mk``, ``ak``, ``rk``; float32, 0 outside ``mask``) of a DKI
    fit (dipy, weighted least squares) of every shell; needs two non-zero shells or more."""
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dki import DiffusionKurtosisModel

    if not has_kurtosis(bvals):
        raise ValueError("a DKI fit needs two non-zero shells or more")
    gtab = gradient_table(np.asarray(bvals, float), bvecs=np.asarray(bvecs, float))
    m = np.asarray(mask, bool)
    out = {k: np.zeros(m.shape, np.float32) for k in KURTOSIS_MAPS}
    if not m.any():
        return out
    fit = DiffusionKurtosisModel(gtab).fit(np.clip(signal[m], 1e-6, None))
    lo, hi = KURTOSIS_RANGE
    limits = {"min_kurtosis": lo, "max_kurtosis": hi}
    for k, values in (("mk", fit.mk(**limits)), ("ak", fit.ak(**limits)), ("rk", fit.rk(**limits))):
        out[k][m] = np.nan_to_num(values).astype(np.float32)
    return out


def dki_from_sh(coeffs: np.ndarray, bvals: np.ndarray, bvecs: np.ndarray, sh: SHConfig | dict, mask: np.ndarray):
    """:func:`dki_maps` of the signal of SH coefficients on a gradient table's shells, inside ``mask``
    (:func:`fit_in_mask`)."""
    values = fit_in_mask(coeffs, bvals, bvecs, sh, mask, lambda *a: list(dki_maps(*a).values()))
    return dict(zip(KURTOSIS_MAPS, values))
