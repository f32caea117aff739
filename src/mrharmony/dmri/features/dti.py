"""DTI maps (dipy) of measured or harmonized signals: FA, MD and direction-encoded colour FA."""

from __future__ import annotations

import numpy as np

from mrharmony.dmri.features.sh import SHConfig, select_shell, sh_to_signal


def signal_from_sh(coeffs: np.ndarray, bvals: np.ndarray, bvecs: np.ndarray, sh: SHConfig | dict):
    """The b0-normalized signal of SH coefficients on a gradient table's shell.

    Returns (bvals, bvecs, signal): one b=0 volume of 1.0 followed by the shell's directions.
    """
    cfg = sh if isinstance(sh, SHConfig) else SHConfig(**sh)
    sel = select_shell(np.asarray(bvals), cfg)
    dw = sh_to_signal(coeffs, bvecs[sel], cfg)
    s0 = np.ones(coeffs.shape[:3] + (1,), np.float32)
    return (np.r_[0.0, bvals[sel]], np.r_[np.zeros((1, 3)), bvecs[sel]], np.concatenate([s0, dw], axis=-1))


def dti_maps(signal: np.ndarray, bvals: np.ndarray, bvecs: np.ndarray, mask: np.ndarray):
    """FA, MD (mm^2/s) and direction-encoded colour FA (X, Y, Z, 3) from a DTI fit (dipy)."""
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel, color_fa

    gtab = gradient_table(np.asarray(bvals, float), bvecs=np.asarray(bvecs, float))
    fit = TensorModel(gtab).fit(np.clip(signal, 1e-6, None), mask=mask)
    fa = np.nan_to_num(fit.fa).astype(np.float32)
    md = np.nan_to_num(fit.md).astype(np.float32)
    dec = np.nan_to_num(color_fa(fa, fit.evecs)).astype(np.float32)
    return fa, md, dec


def dti_from_sh(coeffs: np.ndarray, bvals: np.ndarray, bvecs: np.ndarray, sh: SHConfig | dict, mask: np.ndarray):
    """FA, MD and DEC FA of the signal of SH coefficients on a gradient table's shell.

    The signal is made and fitted inside ``mask`` only (each voxel's fit is independent, so the
    maps are those of a whole-volume fit, at the cost of the mask's voxels); 0 outside.
    """
    m = np.asarray(mask, bool)
    shape = coeffs.shape[:3]
    if m.shape != shape:
        raise ValueError(f"mask of shape {m.shape} for coefficients of shape {shape}")
    fa, md = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    dec = np.zeros((*shape, 3), np.float32)
    if not m.any():
        return fa, md, dec
    b, v, signal = signal_from_sh(np.asarray(coeffs)[m][:, None, None], np.asarray(bvals), np.asarray(bvecs), sh)
    fa_v, md_v, dec_v = dti_maps(signal, b, v, np.ones(signal.shape[:3], bool))
    fa[m], md[m], dec[m] = fa_v[:, 0, 0], md_v[:, 0, 0], dec_v[:, 0, 0]
    return fa, md, dec
