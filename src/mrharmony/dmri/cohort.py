"""A group effect that harmonization must keep: trained harmonizers applied to a study cohort.

A cohort (``mrharmony simulate OUT --cohort N``) is N subjects other than the traveling heads,
controls and patients (``participants.tsv``), scanned on the input platform (what a study would
harmonize) and, for scoring, on the targets. Patients have a lower intra-axonal fraction in one
white-matter region (``truth/<subject>/region.nii.gz``).

:func:`regional_values` applies each harmonizer to every cohort subject's input scan and
measures the mean FA and MD inside the region (its white matter, inside the target scan's brain
and where the method predicts), of the harmonized maps and of the target scan itself, both
through the harmonizer's one path from features to DTI
(:meth:`~mrharmony.dmri.harmonizer.Harmonizer.dti_of`, as the evaluation does).
:func:`group_summary` turns those values into what a study cares about: the patients-vs-controls
effect (Cohen's d) after harmonization beside the same effect measured on the target platform
(``target_truth``), and the platform bias left in the regional values, with 95% bootstrap
intervals over subjects.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mrharmony.errors import InputError

#: The cohort's row for the effect measured on the target platform's own scans.
TARGET_ROW = "target_truth"


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
    import nibabel as nib

    from mrharmony.registration import block_mean
    from mrharmony.simulate.params import FINE_VOXEL_MM

    truth = Path(root) / "truth" / subject
    region = np.asanyarray(nib.load(truth / "region.nii.gz").dataobj).astype(np.float32)
    wm = np.asanyarray(nib.load(truth / "tissue.nii.gz").dataobj)[..., 0].astype(np.float32)
    k = int(round(voxel_mm / FINE_VOXEL_MM))
    inside = (block_mean(region, k) >= 0.5) & (block_mean(wm, k) >= 0.5)
    if inside.shape != tuple(shape):
        raise InputError(f"subject {subject}: the truth's grid does not match the {voxel_mm:g} mm scans.", truth)
    return inside


def regional_values(harmonizers: list[tuple[str, object]], root: str | os.PathLike, *,
                    quiet: bool = False) -> list[dict]:
    """Regional mean FA and MD of every cohort subject, per (row, harmonizer) and target.

    Args:
        harmonizers: (row name, harmonizer) pairs; several harmonizers may share a row (one per
            target, or one per fold and seed).
        root: a prepared cohort dataset.

    Returns:
        One dict per (harmonizer, subject, target): ``method, model (index in harmonizers),
        subject, group, target, fa, md`` (the harmonized regional means) and ``fa_target,
        md_target`` (the target scan's, through the same harmonizer's path).
    """
    from mrharmony.data import load_dataset
    from mrharmony.dmri.evaluate import TargetReference
    from mrharmony.dmri.features.prepare import load_features
    from mrharmony.progress import Progress

    groups = cohort_groups(root)
    ds = load_dataset(root, check_data=False)
    missing = [s for s in groups if s not in ds.subjects]
    if missing:
        raise InputError(f"lists subject {missing[0]!r}, which the dataset does not have.",
                         Path(root) / "participants.tsv")
    rows = []
    progress = Progress(total=len(groups) * len(harmonizers), unit="volumes", desc="cohort", quiet=quiet)
    for subject, group in groups.items():
        scan = load_features(ds, subject, ds.input_platform.name)
        reference = TargetReference(ds, subject)
        for i, (name, h) in enumerate(harmonizers):
            targets = [t for t in h.targets if t in ds.platforms]
            if not targets:  # none of its targets were scanned in this cohort
                progress.update(1)
                continue
            gradients = {t: reference.scan(t)[1] for t in targets}
            rois = {}
            for t in targets:
                tf, _ = reference.scan(t)
                roi = region_mask(root, subject, ds.platforms[t].voxel_size[0], tf.mask.shape)
                rois[t] = roi & tf.mask & h.target_mask(scan.mask, t)
                if not rois[t].any():
                    raise InputError(f"subject {subject}: the region has no white matter inside the {t} "
                                     "scan's brain.", root)
            pred = ({t: y for t, y in predict_where(h, scan, h.input_region(rois)).items() if t in targets}
                    if h.predicts_sh else None)
            maps = h.predict_dti(scan, gradients=gradients, pred=pred, masks=rois)  # DTI fits in the region only
            for t in targets:
                fa, md, _ = maps[t]
                roi = rois[t]
                fa_t, md_t = reference.dti(h, t, roi)
                rows.append({"method": name, "model": i, "subject": subject, "group": group, "target": t,
                             "fa": float(fa[roi].mean()), "md": float(md[roi].mean()),
                             "fa_target": float(fa_t[roi].mean()), "md_target": float(md_t[roi].mean())})
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
    """Per target and row: ``fa_effect_d``, ``md_effect_d`` (Cohen's d, controls minus patients),
    ``fa_effect_ratio``, ``md_effect_ratio`` (that effect over the same effect in the target
    scans, the same subjects resampled on both sides) and ``fa_bias``, ``md_bias`` (harmonized
    minus target scan, per subject), each ``{"mean", "ci95"}`` over subjects (a subject's value is
    its mean over the row's harmonizers); and the row ``target_truth``: the effect in the target
    scans themselves."""
    from mrharmony.stats import effect_ci, effect_ratio_ci, mean_ci

    out: dict = {}
    targets = list(dict.fromkeys(r["target"] for r in rows))
    for t in targets:
        mine = [r for r in rows if r["target"] == t]
        per: dict = {}
        for r in mine:
            for row, fa, md in ((r["method"], r["fa"], r["md"]), (TARGET_ROW, r["fa_target"], r["md_target"])):
                per.setdefault(row, {}).setdefault(r["subject"], {"group": r["group"], "fa": [], "md": [],
                                                                  "fa_bias": [], "md_bias": []})
                cell = per[row][r["subject"]]
                cell["fa"].append(fa)
                cell["md"].append(md)
                cell["fa_bias"].append(fa - r["fa_target"])
                cell["md_bias"].append(md - r["md_target"])
        means = {row: {k: {s: float(np.mean(v[k])) for s, v in subjects.items()}
                       for k in ("fa", "md", "fa_bias", "md_bias")} for row, subjects in per.items()}
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
                    entry[f"{k}_effect_ratio"] = effect_ratio_ci(a, b, [truth[k][s] for s in controls],
                                                                 [truth[k][s] for s in patients], seed=seed)
                    entry[f"{k}_bias"] = mean_ci(list(mean[f"{k}_bias"].values()), seed=seed)
            res[row] = entry
        out[t] = res
    return out
