"""Group effects that harmonization must keep: trained harmonizers applied to a study cohort.

A cohort (``mrharmony simulate OUT --cohort N``) is N subjects other than the traveling heads,
controls and patients (``participants.tsv``), scanned on the input platform (what a study would
harmonize) and, for scoring, on the targets. Patients differ in two ways, as the effects studies
look for do: a lower intra-axonal fraction in one white-matter region
(``truth/<subject>/region.nii.gz``: lower FA there) and higher diffusivities everywhere (a
higher MD over the whole white matter).

:func:`regional_values` applies each harmonizer to every cohort subject's input scan and
measures, of the harmonized maps and of the target scan itself, the mean FA and MD inside the
region (its white matter) and over the white matter (voxels at least half white matter in
``truth/<subject>/tissue.nii.gz``; a fixed random sample of them, the same for every row, keeps
the DTI fits cheap), both inside the target scan's brain and where the method predicts. The
harmonized maps come through the harmonizer's one path from features to DTI
(:meth:`~mrharmony.dmri.harmonizer.Harmonizer.predict_dti`), the target's through the same
DTI fit of its own features (:class:`~mrharmony.dmri.evaluate.TargetReference`).

:func:`group_summary` turns those values into what a study reports, per target and row, each
``{"mean", "ci95"}`` with a 95% bootstrap interval over subjects (resampled within each group):

* ``fa_effect_d``, ``md_effect_d``: Cohen's d of the regional FA and MD, **controls minus
  patients**; ``fa_effect_ratio``, ``md_effect_ratio``: that d over the target scans' d;
  ``fa_bias``, ``md_bias``: the regional values minus the target scan's, per subject;
* for each effect of :data:`EFFECTS`, ``regional_fa`` (the region's FA) and ``global_md`` (the
  white matter's MD), all **patients minus controls**: ``<effect>_diff``, the raw difference of
  the group means in the measure's unit (FA: none; MD: mm^2/s); ``<effect>_sd``, the pooled
  within-group standard deviation; ``<effect>_d``, their quotient (Cohen's d); and
  ``<effect>_diff_ratio``, the row's raw difference over the target scans' of the same subjects,
  the quantity an "effect kept" goal judges (1: kept; the same resamples on both sides).

The row ``target_truth`` holds the same for the target platform's own scans (no ratio, no bias).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mrharmony.errors import InputError

#: The cohort's row for the effect measured on the target platform's own scans.
TARGET_ROW = "target_truth"
#: The effects :func:`group_summary` reports raw: name -> the value of :func:`regional_values`'
#: rows it compares between the groups.
EFFECTS = {"regional_fa": "fa", "global_md": "md_wm"}
#: White-matter voxels per subject and target whose mean FA and MD stand for the white matter's.
WM_SAMPLE_VOXELS = 4000


def cohort_groups(root: str | os.PathLike) -> dict[str, str]:
    """Each subject's group from the cohort's ``participants.tsv`` (columns participant_id, group)."""
    path = Path(root) / "participants.tsv"
    if not path.is_file():
        raise InputError("is missing; a cohort lists each subject's group (participant_id, group) there.", path)
    lines = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
    if not lines or lines[0][:2] != ["participant_id", "group"]:
        raise InputError("must start with the columns participant_id and group.", path)
    groups = {row[0]: row[1] for row in lines[1:] if len(row) >= 2}
    if set(groups.values()) != {"control", "patient"}:
        raise InputError("must list both controls and patients in its group column.", path)
    return groups


def region_mask(root: str | os.PathLike, subject: str, voxel_mm: float, shape) -> np.ndarray:
    """The cohort's region on a platform grid: voxels at least half in the region and half white
    matter (the truth on the 1.2 mm simulation grid, averaged over each platform voxel)."""
    from mrharmony.simulate.truth import truth_masks

    return truth_masks(root, subject, voxel_mm, shape)[0]


def white_matter_sample(candidates: np.ndarray, key: str, n: int | None = WM_SAMPLE_VOXELS) -> np.ndarray:
    """At most ``n`` voxels of ``candidates`` (all of them when ``n`` is None or not fewer): each
    voxel of the grid gets a random rank from a generator seeded with ``key`` (the subject and
    target), and the ``n`` best-ranked candidates are kept. The same candidates give the same
    voxels whatever the row; candidates that differ a little give samples that differ as little."""
    import zlib

    m = np.asarray(candidates, bool)
    idx = np.flatnonzero(m)
    if n is None or idx.size <= n:
        return m.copy()
    rank = np.random.default_rng(zlib.crc32(key.encode())).random(m.size)
    keep = np.zeros(m.size, bool)
    keep[idx[np.argsort(rank[idx], kind="stable")[:n]]] = True
    return keep.reshape(m.shape)


def regional_values(
    harmonizers: list[tuple[str, object]],
    root: str | os.PathLike,
    *,
    wm_voxels: int | None = WM_SAMPLE_VOXELS,
    quiet: bool = False,
) -> list[dict]:
    """Regional and white-matter mean FA and MD of every cohort subject, per (row, harmonizer)
    and target.

    Args:
        harmonizers: (row name, harmonizer) pairs; several harmonizers may share a row (one per
            target, or one per fold and seed).
        root: a prepared cohort dataset.
        wm_voxels: white-matter voxels sampled per subject and target
            (:func:`white_matter_sample`; None: all of them).

    Returns:
        One dict per (harmonizer, subject, target): ``method, model (index in harmonizers),
        subject, group, target``; ``fa, md``, the harmonized means in the region, and ``fa_wm,
        md_wm``, over the white-matter sample (``wm_voxels`` of them); ``fa_target, md_target,
        fa_wm_target, md_wm_target``: the target scan's own on the same voxels.
    """
    from mrharmony.data import load_dataset
    from mrharmony.dmri.evaluate import TargetReference
    from mrharmony.dmri.features.prepare import load_features
    from mrharmony.progress import Progress
    from mrharmony.simulate.truth import truth_masks

    groups = cohort_groups(root)
    ds = load_dataset(root, check_data=False)
    missing = [s for s in groups if s not in ds.subjects]
    if missing:
        raise InputError(
            f"lists subject {missing[0]!r}, which the dataset does not have.", Path(root) / "participants.tsv"
        )
    rows = []
    progress = Progress(total=len(groups) * len(harmonizers), unit="volumes", desc="cohort", quiet=quiet)
    for subject, group in groups.items():
        inputs = {"none": load_features(ds, subject, ds.input_platform.name)}  # per denoising of the input
        reference = TargetReference(ds, subject)
        truth = {}  # target -> (region, white matter) on its grid, read once per subject
        for i, (name, h) in enumerate(harmonizers):
            if h.denoise not in inputs:
                inputs[h.denoise] = h.input_features(ds, subject)
            scan = inputs[h.denoise]
            targets = [t for t in h.targets if t in ds.platforms]
            if not targets:  # none of its targets were scanned in this cohort
                progress.update(1)
                continue
            gradients = {t: reference.scan(t)[1] for t in targets}
            rois, wms = {}, {}
            for t in targets:
                tf, _ = reference.scan(t)
                if t not in truth:
                    truth[t] = truth_masks(root, subject, ds.platforms[t].voxel_size[0], tf.mask.shape)
                where = tf.mask & h.target_mask(scan.mask, t)
                rois[t] = truth[t][0] & where
                wms[t] = white_matter_sample(truth[t][1] & where, f"{subject}/{t}", wm_voxels)
                if not rois[t].any():
                    raise InputError(
                        f"subject {subject}: the region has no white matter inside the {t} scan's brain.", root
                    )
            fit = {t: rois[t] | wms[t] for t in targets}  # DTI fits in the region and the sample only
            pred = (
                {t: y for t, y in predict_where(h, scan, h.input_region(fit)).items() if t in targets}
                if h.predicts_sh
                else None
            )
            maps = h.predict_dti(scan, gradients=gradients, pred=pred, masks=fit)
            for t in targets:
                fa, md, _ = maps[t]
                fa_t, md_t = reference.dti(t, fit[t])
                roi, wm = rois[t], wms[t]
                rows.append(
                    {
                        "method": name,
                        "model": i,
                        "subject": subject,
                        "group": group,
                        "target": t,
                        "fa": float(fa[roi].mean()),
                        "md": float(md[roi].mean()),
                        "fa_target": float(fa_t[roi].mean()),
                        "md_target": float(md_t[roi].mean()),
                        "fa_wm": float(fa[wm].mean()),
                        "md_wm": float(md[wm].mean()),
                        "fa_wm_target": float(fa_t[wm].mean()),
                        "md_wm_target": float(md_t[wm].mean()),
                        "wm_voxels": int(wm.sum()),
                    }
                )
            progress.update(1)
    progress.close()
    return rows


def predict_where(h, scan, region):
    """``h.predict`` told where the prediction is read, if it takes a ``region`` (a harmonizer
    written before the argument existed predicts everywhere)."""
    import inspect

    takes = "region" in inspect.signature(h.predict).parameters
    return h.predict(scan, region=region) if takes else h.predict(scan)


def group_summary(rows: list[dict], *, seed: int = 0) -> dict:
    """Per target and row, the group effects of :func:`regional_values`' rows (the keys in the
    module docstring), each ``{"mean", "ci95"}`` over subjects (a subject's value is its mean over
    the row's harmonizers); and the row ``target_truth``: the effects in the target scans
    themselves. Rows without the white-matter values (made before they were measured) give the
    regional keys only."""
    from mrharmony.stats import effect_ci, effect_ratio_ci, group_difference, mean_ci

    out: dict = {}
    measures = ["fa", "md"] + (["fa_wm", "md_wm"] if rows and all("md_wm" in r for r in rows) else [])
    targets = list(dict.fromkeys(r["target"] for r in rows))
    for t in targets:
        mine = [r for r in rows if r["target"] == t]
        per: dict = {}
        for r in mine:
            for row, target_side in ((r["method"], False), (TARGET_ROW, True)):
                cell = per.setdefault(row, {}).setdefault(r["subject"], {"group": r["group"]})
                for k in measures:
                    value = r[f"{k}_target"] if target_side else r[k]
                    cell.setdefault(k, []).append(value)
                    if k in ("fa", "md"):
                        cell.setdefault(f"{k}_bias", []).append(value - r[f"{k}_target"])
        keys = measures + ["fa_bias", "md_bias"]
        means = {
            row: {k: {s: float(np.mean(v[k])) for s, v in subjects.items()} for k in keys}
            for row, subjects in per.items()
        }
        res = {}
        for row, subjects in per.items():
            mean, truth = means[row], means[TARGET_ROW]
            group = {s: v["group"] for s, v in subjects.items()}
            controls = [s for s in mean["fa"] if group[s] == "control"]
            patients = [s for s in mean["fa"] if group[s] == "patient"]
            entry = {}
            for k in ("fa", "md"):
                a, b = [mean[k][s] for s in controls], [mean[k][s] for s in patients]
                entry[f"{k}_effect_d"] = effect_ci(a, b, seed=seed)
                if row != TARGET_ROW:
                    entry[f"{k}_effect_ratio"] = effect_ratio_ci(
                        a, b, [truth[k][s] for s in controls], [truth[k][s] for s in patients], seed=seed
                    )
                    entry[f"{k}_bias"] = mean_ci(list(mean[f"{k}_bias"].values()), seed=seed)
            for effect, k in EFFECTS.items():
                if k not in measures:
                    continue
                ref = () if row == TARGET_ROW else ([truth[k][s] for s in controls], [truth[k][s] for s in patients])
                diff = group_difference([mean[k][s] for s in controls], [mean[k][s] for s in patients], *ref, seed=seed)
                entry.update({f"{effect}_{name}": v for name, v in diff.items()})
            res[row] = entry
        out[t] = res
    return out
