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

For a target of two shells or more, mean kurtosis (MK, of a DKI fit of every shell) is harmonized
the same way, as a third map (:meth:`ComBatHarmonizer.predict_kurtosis`).

ComBat harmonizes the maps, not the diffusion signal: it has rows in the whole-volume FA / MD (and
MK) table of the evaluation and none in the patch table.
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

    def has_kurtosis(self, target: str) -> bool:
        """Whether the model harmonizes mean kurtosis for ``target`` (a target of two shells or more)."""
        return self.maps[target].shape[-1] == 2 * len(MEASURES)

    def predict_kurtosis(
        self, scan, *, gradients: dict | None = None, masks: dict | None = None
    ) -> dict[str, np.ndarray]:
        """Harmonized MK per target that has it (:meth:`has_kurtosis`), on the target's grid; as
        :meth:`predict_dti` for FA and MD."""
        from mrharmony.dmri.features.dti import dki_from_sh
        from mrharmony.registration import upsample_masked

        out = {}
        targets = [t for t in self.targets if self.has_kurtosis(t)]
        for t, raw, mask, fit, (bvals, bvecs), v in self._fitted(scan, targets, gradients, masks):
            mk = dki_from_sh(raw, bvals, bvecs, self.reference["sh"], fit)["mk"]
            mk_h = np.maximum(v[..., 4] * mk + v[..., 5], 0.0)
            mk_h[~fit] = 0.0
            out[t] = upsample_masked(mk_h[..., None], mask, self.ratios[t])[..., 0]
        return out

    def _fitted(self, scan, targets: list[str], gradients: dict | None, masks: dict | None):
        """Per target: (target, the scan's raw coefficients, its mask, the voxels to fit, the
        target's gradient table, the adjustment maps on the scan's grid). The maps are fitted where
        the maps asked for read them (the interpolation onto a finer grid reads neighbours)."""
        mask = np.asarray(scan.mask, bool)
        raw = scan.raw()
        maps = self.scan_maps(raw, mask, scan)
        for t in targets:
            grads = (gradients or {}).get(t) or self.target_gradients(t)
            fit = mask if masks is None or t not in masks else mask & self.input_region({t: masks[t]})
            yield t, raw, mask, fit, grads, maps[t]

    def predict_dti(
        self, scan, *, gradients: dict | None = None, pred: dict | None = None, masks: dict | None = None
    ) -> dict[str, tuple]:
        from mrharmony.dmri.features.dti import dti_from_sh
        from mrharmony.registration import upsample_masked

        out = {}
        for t, raw, mask, fit, (bvals, bvecs), v in self._fitted(scan, self.targets, gradients, masks):
            fa, md, dec = dti_from_sh(raw, bvals, bvecs, self.reference["sh"], fit)
            fa_h = np.clip(v[..., 0] * fa + v[..., 1], 0.0, 1.0)
            md_h = np.maximum(v[..., 2] * md + v[..., 3], 0.0)
            fa_h[~fit], md_h[~fit] = 0.0, 0.0  # not fitted there: no maps rather than the offsets alone
            gain = np.where(fa > 1e-6, fa_h / np.maximum(fa, 1e-6), 0.0)
            dec_h = dec * gain[..., None]
            r = self.ratios[t]
            stacked = upsample_masked(np.concatenate([fa_h[..., None], md_h[..., None], dec_h], -1), mask, r)
            out[t] = (stacked[..., 0], stacked[..., 1], stacked[..., 2:])
        return out


#: the maps ComBat harmonizes, in the order of its adjustment maps (slope, offset each); MK only for
#: targets of two shells or more
MEASURES = ("fa", "md", "mk")


def _measures(sh, coeffs: np.ndarray, bvals, bvecs, mask: np.ndarray) -> np.ndarray:
    """FA, MD and, on a gradient table of two shells or more, MK of SH coefficients, stacked last."""
    from mrharmony.dmri.features.dti import dki_from_sh, dti_from_sh, has_kurtosis

    fa, md, _ = dti_from_sh(coeffs, bvals, bvecs, sh, mask)
    maps = [fa, md] + ([dki_from_sh(coeffs, bvals, bvecs, sh, mask)["mk"]] if has_kurtosis(bvals) else [])
    return np.stack(maps, -1)


def fit_combat(h: ComBatHarmonizer, ds, subjects: list[str], progress) -> None:
    """Learn ComBat's adjustment maps of FA and MD (and MK, :data:`MEASURES`) for each target from
    the training subjects."""
    import pandas as pd
    from neuroHarmonize import harmonizationApply, harmonizationLearn

    from mrharmony.dmri.features.prepare import load_features
    from mrharmony.registration import block_mean, scaled_affine

    maps: dict[str, dict[str, list]] = {t: {"in": [], "t": [], "w": []} for t in h.targets}
    sh = h.reference["sh"]
    for s, f, m, w_in in subjects_in_reference(h, ds, subjects, progress):
        for t in h.targets:
            bvals, bvecs = h.target_gradients(t)
            ft = load_features(ds, s, t, normalized=False)
            r = h.ratios[t]
            aff = scaled_affine(ft.affine, r)
            tmask = h.space.to_reference(block_mean(ft.mask.astype(np.float32), r), aff, m) > 0.5
            maps[t]["in"].append(h.space.to_reference(_measures(sh, f.data, bvals, bvecs, f.mask), f.affine, m))
            theirs = _measures(sh, ft.data, bvals, bvecs, ft.mask)
            maps[t]["t"].append(h.space.to_reference(block_mean(theirs, r), aff, m))
            maps[t]["w"].append(w_in & tmask)
    n = len(subjects)
    for t, d in maps.items():
        support = np.logical_and.reduce(d["w"]) & h.space.mask
        k_maps = d["in"][0].shape[-1]
        adjust = np.zeros((*support.shape, 2 * k_maps), np.float32)
        adjust[..., 0::2] = 1.0  # identity outside the support
        covars = pd.DataFrame({"SITE": ["input"] * n + ["target"] * n})
        for k in range(k_maps):  # FA, MD (, MK)
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
    h.fallback = {t: np.tile(np.array([1.0, 0.0], np.float32), h.maps[t].shape[-1] // 2) for t in h.targets}
    h.settings["fallback"] = {t: v.tolist() for t, v in h.fallback.items()}
