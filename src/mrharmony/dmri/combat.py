"""ComBat harmonization of DTI maps (FA, MD), through the neuroHarmonize package.

ComBat (Johnson et al. 2007; Fortin et al. 2017 for DTI) models each voxel's value as a
site-specific location and scale around a common mean; the site effects are shrunk towards
their brain-wide distribution by empirical Bayes. Here the sites are the input platform and one
target platform, the target is the reference batch (its data are left as they are, the input is
mapped onto it), and the voxels are those of a common space: the training subjects' maps are
brought into the reference subject's space, or into their template (``registration: syn``), as
for the voxelwise statistical harmonizers (:class:`~mrharmony.dmri.statistical.CommonSpace`).

FA and MD are those of a DTI fit (dipy) of the signal of each scan's SH coefficients on the
target platform's gradient table, for the input as for the target scans (target maps averaged
down to the input grid), so that both sites are measured alike.

Learning needs neuroHarmonize (``pip install 'mrharmony[combat]'``; it pins numpy<2 and so lives
in an extra). Without covariates (none are modelled here; the traveling heads make site the
only difference between a subject's scans) ComBat's adjustment of a voxel is affine in its
value, so the learned model is stored as per-voxel maps of slope and offset, read by probing
the neuroHarmonize model with the values 0 and 1; applying a saved model therefore needs
neither neuroHarmonize nor pandas. A new scan is registered to the common space, the maps are
brought to its grid, and its FA / MD are adjusted voxel by voxel (voxels outside the maps'
support are left as they are).

ComBat harmonizes the maps, not the diffusion signal: it has rows in the whole-volume FA / MD
table of the evaluation and none in the patch table.
"""

from __future__ import annotations

import contextlib
import io
from typing import Literal

import numpy as np

from mrharmony.dmri.statistical import (
    CommonSpaceConfig,
    VoxelwiseHarmonizer,
    subjects_in_reference,
)
from mrharmony.errors import InputError


def require_neuroharmonize() -> None:
    """Fail with a clear message, before any work, where neuroHarmonize is not installed."""
    try:
        import neuroHarmonize  # noqa: F401
        import pandas  # noqa: F401
    except ImportError:
        raise InputError(
            "ComBat needs the neuroHarmonize package: pip install 'mrharmony[combat]' (in an environment with numpy<2)."
        ) from None


class ComBatConfig(CommonSpaceConfig):
    method: Literal["combat"]

    @classmethod
    def harmonizer(cls):
        return ComBatHarmonizer


class ComBatHarmonizer(VoxelwiseHarmonizer):
    method = "combat"
    predicts_sh = False

    @classmethod
    def check_requirements(cls) -> None:
        require_neuroharmonize()

    def learn(self, ds, subjects: list[str], progress) -> None:
        fit_combat(self, ds, subjects, progress)

    def predict(self, scan, *, region=None):
        raise InputError("ComBat harmonizes FA and MD maps, not SH features; use its DTI maps (predict_dti).")

    def predict_dti(
        self, scan, *, gradients: dict | None = None, pred: dict | None = None, masks: dict | None = None
    ) -> dict[str, tuple]:
        from mrharmony.dmri.features.dti import dti_from_sh
        from mrharmony.registration import upsample_masked

        mask = np.asarray(scan.mask, bool)
        raw = scan.raw()
        maps = self.scan_maps(raw, mask, scan)
        out = {}
        for t in self.targets:
            bvals, bvecs = (gradients or {}).get(t) or self.target_gradients(t)
            # DTI where the maps asked for read it (the interpolation onto a finer grid reads neighbours)
            fit = mask if masks is None or t not in masks else mask & self.input_region({t: masks[t]})
            fa, md, dec = dti_from_sh(raw, bvals, bvecs, self.reference["sh"], fit)
            v = maps[t]
            fa_h = np.clip(v[..., 0] * fa + v[..., 1], 0.0, 1.0)
            md_h = np.maximum(v[..., 2] * md + v[..., 3], 0.0)
            fa_h[~fit], md_h[~fit] = 0.0, 0.0  # not fitted there: no maps rather than the offsets alone
            gain = np.where(fa > 1e-6, fa_h / np.maximum(fa, 1e-6), 0.0)
            dec_h = dec * gain[..., None]
            r = self.ratios[t]
            stacked = upsample_masked(np.concatenate([fa_h[..., None], md_h[..., None], dec_h], -1), mask, r)
            out[t] = (stacked[..., 0], stacked[..., 1], stacked[..., 2:])
        return out


def fit_combat(h: ComBatHarmonizer, ds, subjects: list[str], progress) -> None:
    """Learn ComBat's adjustment maps of FA and MD for each target from the training subjects."""
    import pandas as pd
    from neuroHarmonize import harmonizationApply, harmonizationLearn

    from mrharmony.dmri.features.dti import dti_from_sh
    from mrharmony.dmri.features.prepare import load_features
    from mrharmony.registration import block_mean, scaled_affine

    maps: dict[str, dict[str, list]] = {t: {"in": [], "t": [], "w": []} for t in h.targets}
    sh = h.reference["sh"]
    for s, f, m, w_in in subjects_in_reference(h, ds, subjects, progress):
        for t in h.targets:
            bvals, bvecs = h.target_gradients(t)
            fa, md, _ = dti_from_sh(f.data, bvals, bvecs, sh, f.mask)
            ft = load_features(ds, s, t, normalized=False)
            r = h.ratios[t]
            fa_t, md_t, _ = dti_from_sh(ft.data, bvals, bvecs, sh, ft.mask)
            aff = scaled_affine(ft.affine, r)
            tmask = h.space.to_reference(block_mean(ft.mask.astype(np.float32), r), aff, m) > 0.5
            maps[t]["in"].append(h.space.to_reference(np.stack([fa, md], -1), f.affine, m))
            maps[t]["t"].append(h.space.to_reference(block_mean(np.stack([fa_t, md_t], -1), r), aff, m))
            maps[t]["w"].append(w_in & tmask)
    n = len(subjects)
    for t, d in maps.items():
        support = np.logical_and.reduce(d["w"]) & h.space.mask
        adjust = np.zeros((*support.shape, 4), np.float32)
        adjust[..., 0] = adjust[..., 2] = 1.0  # identity outside the support
        covars = pd.DataFrame({"SITE": ["input"] * n + ["target"] * n})
        for k in range(2):  # FA, MD
            data = np.concatenate(
                [np.stack([x[..., k][support] for x in d["in"]]), np.stack([x[..., k][support] for x in d["t"]])]
            ).astype(np.float64)
            with contextlib.redirect_stdout(io.StringIO()):  # neuroHarmonize reports its steps on stdout
                model, _ = harmonizationLearn(data, covars, ref_batch="target", seed=0)
                # a target row rides along: neuroHarmonize needs the reference site among the rows it adjusts
                probe = harmonizationApply(
                    np.stack([np.zeros(data.shape[1]), np.ones(data.shape[1]), data[-1]]),
                    pd.DataFrame({"SITE": ["input", "input", "target"]}),
                    model,
                )
            adjust[..., 2 * k][support] = probe[1] - probe[0]
            adjust[..., 2 * k + 1][support] = probe[0]
        h.maps[t] = adjust
    h.fallback = {t: np.array([1.0, 0.0, 1.0, 0.0], np.float32) for t in h.targets}
    h.settings["fallback"] = {t: v.tolist() for t, v in h.fallback.items()}
