"""How much of a change of the person a harmonizer keeps (:mod:`mrharmony.simulate.person`).

:func:`kept_changes` harmonizes a scan and copies of it with the person changed, as ``apply``
does (:func:`~mrharmony.dmri.apply.harmonize_arrays`, then the DTI maps of the harmonized signal
on the target's gradient table), and compares the relative change of each change's measure
(brain mean) with the input's own (its SH fit and DTI on its gradient table). A method that keeps
what differs between people returns the input's change; per-scan standardization returns none.
"""

from __future__ import annotations

import numpy as np


def brain_mean(coeffs: np.ndarray, bvals, bvecs, sh, mask: np.ndarray, measure: str) -> float:
    """The brain mean of FA or MD (``measure``) of SH coefficients' signal on a gradient table."""
    from mrharmony.dmri.features.dti import dti_from_sh

    fa, md, _ = dti_from_sh(coeffs, bvals, bvecs, sh, mask)
    return float({"fa": fa, "md": md}[measure][mask].mean())


def kept_changes(
    h,
    dwi: np.ndarray,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    mask: np.ndarray,
    affine: np.ndarray,
    target: str,
    *,
    kinds=None,
) -> dict[str, dict]:
    """Per change: ``given`` (the input's relative change of the measure), ``kept`` (the
    harmonized relative change on ``target``) and ``fraction`` (kept / given)."""
    from mrharmony.dmri.apply import harmonize_arrays
    from mrharmony.dmri.features.sh import SHConfig, fit_sh
    from mrharmony.simulate.person import CHANGES, change_scan

    cfg = SHConfig(**h.reference["sh"])
    mask = np.asarray(mask, bool)
    gradients = h.target_gradients(target)
    kinds = list(kinds or CHANGES)

    def measures(d):
        sh_in = fit_sh(d, bvals, bvecs, mask, cfg)
        res = harmonize_arrays(h, d, bvals, bvecs, mask, affine, targets=[target])[target]
        out = {}
        for m in {CHANGES[k] for k in kinds}:
            given = brain_mean(sh_in, bvals, bvecs, cfg, mask, m)
            if "dti" in res:  # a method of DTI maps
                fa, md, _ = res["dti"]
                kept = float({"fa": fa, "md": md}[m][res["mask"]].mean())
            else:
                kept = brain_mean(res["sh"], *gradients, cfg, res["mask"], m)
            out[m] = (given, kept)
        return out

    before = measures(dwi)
    out = {}
    for kind in kinds:
        after = measures(change_scan(dwi, bvals, mask, kind, b0_threshold=cfg.b0_threshold))
        m = CHANGES[kind]
        given = after[m][0] / before[m][0] - 1
        kept = after[m][1] / before[m][1] - 1
        out[kind] = {"measure": m, "given": given, "kept": kept, "fraction": kept / given if given else float("nan")}
    return out
