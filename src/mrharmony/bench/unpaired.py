"""The unpaired dMRI benchmark's machinery (``benchmarks/unpaired.py`` declares its rows, goals and
budgets): a simulated multi-site study, the harmonizers fitted or trained on it, every person of
the other sites harmonized to each target site, and the scores against the raw truth.

For each target site T and each person p of another site:

* the truth: p rendered without noise on T's platform (:func:`mrharmony.simulate.render_scan`),
  its SH fit's signal on T's gradient table, DTI (dipy), the path every row takes;
* the rows: p's own scan without harmonization (``none``), and each harmonizer's output for p,
  FA and MD of its signal on T's gradient table (ComBat: its adjusted maps);
* the floor ``rescan``: p rendered with noise on T's platform (a second session), the error a
  perfect harmonizer, which gives what T's scanner would, still has against the noiseless truth.

Maps meet on the study's coarsest grid (finer maps averaged down), inside both brains. Where the
person's site and the target differ in voxel size, FA averaged from finer voxels is not the FA of
the coarser voxel: such pairs carry a difference no harmonizer on the input's grid removes (the
``rescan`` floor, on the target's own grid, does not have it). Per person:
the mean absolute FA and MD errors over the brain, the FA of the study's patient region in white
matter, the brain-mean MD and the FA and MD of the named white-matter regions. Pooled over every
person harmonized to T and T's own people (their own scans): the patients-minus-controls
differences of the region's FA and of the global MD and the slope of the global MD over age, each
over the truth's (1 when harmonization keeps the effect with site confounded), and how often a
nearest-centroid classifier tells the site from the regional FA and MD (leave one person out;
harmonized data should leave it at chance).

Everything the run makes lives under its folder and is reused when the run starts again (scores
per person and row as JSON, models as run directories), so a stopped run resumes where it stopped.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def grid_factor(voxel: float, grid: float) -> int:
    """Voxels of ``voxel`` mm per voxel of the study's ``grid`` along each axis."""
    return int(round(grid / voxel))


def dti_on(coeffs, mask, gradients, sh) -> tuple[np.ndarray, np.ndarray]:
    """FA and MD of SH coefficients' signal on a gradient table (``gradients``: bvals, bvecs)."""
    from mrharmony.dmri.features.dti import dti_from_sh

    bvals, bvecs = gradients
    fa, md, _ = dti_from_sh(coeffs, bvals, bvecs, sh, np.asarray(mask, bool))
    return fa, md


def fit_scan(dwi, bvals, bvecs, mask, sh):
    """SH coefficients of a scan with the settings ``sh``."""
    from mrharmony.dmri.features.sh import SHConfig, fit_sh

    return fit_sh(dwi, bvals, bvecs, np.asarray(mask, bool), SHConfig(**sh))


def measures(fa, md, brain, region, regions: dict) -> dict:
    """What a study reads from a person's maps (see the module docstring), on the study's grid."""
    out: dict = {
        "fa_region": float(fa[region].mean()) if region.any() else float("nan"),
        "md_global": float(md[brain].mean()),
        "regions": {},
    }
    for name, m in regions.items():
        m = m & brain
        if m.any():
            out["regions"][name] = [float(fa[m].mean()), float(md[m].mean())]
    return out


def errors(fa, md, truth_fa, truth_md, brain) -> dict:
    """Mean absolute FA and MD errors over ``brain``, and the mean signed ones (``*_bias``: what a
    scanner shifts in every voxel, apart from the noise that absolute errors also count)."""
    return {
        "fa_truth": float(np.abs(fa - truth_fa)[brain].mean()),
        "md_truth": float(np.abs(md - truth_md)[brain].mean()),
        "fa_bias": float((fa - truth_fa)[brain].mean()),
        "md_bias": float((md - truth_md)[brain].mean()),
    }


class Scorer:
    """Scores of harmonized maps against the truth of the people of a study (cached under ``cache``)."""

    def __init__(self, study_root: Path, cache: Path, sh: dict):
        from mrharmony.config import read_yaml
        from mrharmony.data.study import load_study

        self.root = Path(study_root)
        self.study = load_study(self.root)
        self.grid = float(read_yaml(self.root / "simulation.yaml")["grid_voxel_mm"])
        self.cache = Path(cache)
        self.sh = sh
        self._truth: dict = {}

    def factor(self, site: str) -> int:
        return grid_factor(self.study.site(site).voxel_size[0], self.grid)

    def truth(self, subject: str, target: str) -> dict:
        """FA, MD, brain and the anatomy's masks of a person's noiseless render on ``target``'s
        platform, on the study grid (kept in memory and on disk)."""
        from mrharmony.registration import block_mean
        from mrharmony.simulate.generator import render_scan
        from mrharmony.simulate.truth import truth_masks, white_matter_regions

        key = (subject, target)
        if key in self._truth:
            return self._truth[key]
        file = self.cache / "truth" / target / f"{subject}.npz"
        if file.is_file():
            with np.load(file) as z:
                fa, md, brain = z["fa"], z["md"], z["brain"]
        else:
            scan = render_scan(self.root, subject, target, noise=False)
            coeffs = fit_scan(scan.dwi, scan.bvals, scan.bvecs, scan.mask, self.sh)
            fa, md = dti_on(coeffs, scan.mask, (scan.bvals, scan.bvecs), self.sh)
            k = self.factor(target)
            fa, md = block_mean(fa, k), block_mean(md, k)
            brain = block_mean(scan.mask.astype(np.float32), k) >= 0.5
            file.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(file, fa=fa, md=md, brain=brain)
        region, _ = truth_masks(self.root, subject, self.grid, brain.shape)
        regions = white_matter_regions(self.root, subject, self.grid, brain.shape)
        t = {"fa": fa, "md": md, "brain": brain, "region": region, "regions": regions}
        t["measures"] = measures(fa, md, brain, region, regions)
        self._truth[key] = t
        return t

    def score(self, subject: str, target: str, fa, md, mask, site: str) -> dict:
        """Errors and measures of harmonized FA and MD (on the grid of ``site``'s scans) of a person."""
        from mrharmony.registration import block_mean

        t = self.truth(subject, target)
        k = self.factor(site)
        fa, md = block_mean(fa, k), block_mean(md, k)
        brain = (block_mean(np.asarray(mask, np.float32), k) >= 0.5) & t["brain"]
        return {
            **errors(fa, md, t["fa"], t["md"], brain),
            **measures(fa, md, brain, t["region"] & brain, t["regions"]),
            # the truth's measures on the same voxels: the reference of this row's pooled effects
            "truth": measures(t["fa"], t["md"], brain, t["region"] & brain, t["regions"]),
        }


def cached(file: Path, compute) -> dict:
    """The JSON in ``file``, or ``compute()`` written there first (a resumable run's unit of work)."""
    from mrharmony.io import write_text

    if file.is_file():
        return json.loads(file.read_text())
    value = compute()
    write_text(file, json.dumps(value))
    return value


def scan_features(scan: tuple, sh: dict):
    """The :class:`~mrharmony.dmri.features.prepare.ScanFeatures` of a scan ((dwi, bvals, bvecs, mask,
    affine)) with the SH settings ``sh``, at their own scale."""
    from mrharmony.dmri.features.prepare import ScanFeatures
    from mrharmony.dmri.features.sh import SHConfig

    dwi, bvals, bvecs, mask, affine = scan
    mask = np.asarray(mask, bool)
    return ScanFeatures.own_scale(fit_scan(dwi, bvals, bvecs, mask, sh), mask, affine, SHConfig(**sh))


def person_scan(study, subject: str):
    """A person's stored scan: (dwi, bvals, bvecs, mask, affine)."""
    scan = study.scan(subject)
    dwi, affine = scan.load_dwi()
    bvals, bvecs = scan.gradients()
    return dwi, bvals, bvecs, scan.load_mask(), affine


def harmonized_maps(h, scan: tuple, target_name: str, covariates: dict | None = None):
    """FA, MD and mask of a person's scan harmonized by ``h`` to ``target_name``, on the person's grid."""
    from mrharmony.dmri.apply import harmonize_arrays

    dwi, bvals, bvecs, mask, affine = scan
    res = harmonize_arrays(h, dwi, bvals, bvecs, mask, affine, targets=[target_name], covariates=covariates)
    r = res[target_name]
    if "dti" in r:
        fa, md, _ = r["dti"]
        return fa, md, r["mask"]
    fa, md = dti_on(r["sh"], r["mask"], h.target_gradients(target_name), h.reference["sh"])
    return fa, md, r["mask"]


# -- pooled effects and the site classifier ------------------------------------------------------


def age_slope(ages, values, groups) -> float:
    """The slope of ``values`` over age (per decade), with diagnosis as a covariate (least squares)."""
    ages, values = np.asarray(ages, float), np.asarray(values, float)
    design = np.column_stack([np.ones_like(ages), ages / 10.0, np.asarray(groups, float)])
    return float(np.linalg.lstsq(design, values, rcond=None)[0][1])


def slope_ratio_ci(ages, values, truth, groups, *, n_boot: int = 2000, seed: int = 0) -> dict:
    """The age slope of harmonized values over the truth's, with a 95% bootstrap interval over people."""
    ages, values, truth, groups = (np.asarray(x, float) for x in (ages, values, truth, groups))
    point = age_slope(ages, values, groups) / age_slope(ages, truth, groups)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):
        i = rng.integers(0, len(ages), len(ages))
        ref = age_slope(ages[i], truth[i], groups[i])
        if np.ptp(ages[i]) > 0 and ref != 0:
            boot.append(age_slope(ages[i], values[i], groups[i]) / ref)
    lo, hi = np.percentile(boot, [2.5, 97.5]) if boot else (point, point)
    return {"mean": float(point), "ci95": [float(lo), float(hi)]}


def site_accuracy(features: np.ndarray, sites: list[str]) -> float:
    """Leave-one-out accuracy of a nearest-centroid classifier of site from features standardized
    on the people it learns from (the one left out is not among them)."""
    x0 = np.asarray(features, float)
    labels = np.asarray(sites)
    right = 0
    for i in range(len(x0)):
        keep = np.arange(len(x0)) != i
        mu, sd = x0[keep].mean(0), x0[keep].std(0)
        x = (x0 - mu) / np.where(sd > 0, sd, 1.0)
        names = sorted(set(labels[keep]))
        centroids = np.stack([x[keep][labels[keep] == n].mean(0) for n in names])
        right += names[int(np.argmin(((centroids - x[i]) ** 2).sum(1)))] == labels[i]
    return right / len(x0)


def pooled_effects(people: list, rows: dict, truths: dict, region_names: list[str], *, seed: int = 0) -> dict:
    """Per row: the patients-minus-controls differences (region FA, global MD) and the age slope of
    the global MD over the truth's, and the site classifier's accuracy; ``people`` (with ``subject``,
    ``site``, ``age``, ``group``) pooled from every site, ``rows`` row -> subject -> measures, and
    ``truths`` row -> subject -> the truth's measures on the row's voxels."""
    from mrharmony.stats import group_difference

    ctrl = [p for p in people if p.group == "control"]
    pat = [p for p in people if p.group == "patient"]
    out = {}
    for row, by in rows.items():
        truth = truths[row]
        if any(p.subject not in by or p.subject not in truth for p in people):
            continue

        def values(src, key, group):
            return [src[p.subject][key] for p in group]

        r: dict = {}
        for key, name in (("fa_region", "regional_fa"), ("md_global", "global_md")):
            if len(ctrl) >= 2 and len(pat) >= 2:
                d = group_difference(
                    values(by, key, ctrl),
                    values(by, key, pat),
                    values(truth, key, ctrl),
                    values(truth, key, pat),
                    seed=seed,
                )
                r[name] = d["diff_ratio"]
        r["age_md"] = slope_ratio_ci(
            [p.age for p in people],
            [by[p.subject]["md_global"] for p in people],
            [truth[p.subject]["md_global"] for p in people],
            [p.group == "patient" for p in people],
            seed=seed,
        )
        table = np.asarray(
            [[v for n in region_names for v in by[p.subject]["regions"].get(n, [np.nan, np.nan])] for p in people],
            float,
        )
        feats = table[:, np.all(np.isfinite(table), axis=0)]
        r["site_accuracy"] = site_accuracy(feats, [p.site for p in people]) if feats.size else float("nan")
        out[row] = r
    return out


def environment_has_combat() -> bool:
    """Whether neuroHarmonize is installed (the ComBat row runs in the ``combat`` extra's environment)."""
    try:
        import neuroHarmonize  # noqa: F401
    except ImportError:
        return False
    return True


def code_separation(h, study, people_per_site: int) -> dict:
    """How well a stylecode model's scanner code tells the study's sites apart, seen and unseen in
    training: the whole-scan codes of up to ``people_per_site`` people of each site (the last of
    ``participants.tsv``, controls and patients alike), their leave-one-out nearest-centroid site
    accuracy (cosine; chance is one over the number of sites), and per site the mean cosine
    distance between its people's codes and from them to the nearest other site's centroid."""
    from mrharmony.dmri.features.prepare import load_features

    codes, sites = [], []
    for site in study.sites:
        for p in study.at(site)[-people_per_site:]:
            codes.append(h.code_of([load_features(study, p.subject, site, normalized=False)]))
            sites.append(site)
    c, s = np.asarray(codes, np.float64), np.asarray(sites)

    def centroid(rows) -> np.ndarray:
        m = c[rows].mean(0)
        return m / max(float(np.linalg.norm(m)), 1e-12)

    hits = 0
    for i in range(len(c)):
        others = np.arange(len(c)) != i
        best = max(study.sites, key=lambda site: float(c[i] @ centroid((s == site) & others)))
        hits += best == s[i]
    per_site = {}
    for site in study.sites:
        mine = s == site
        within = 1 - c[mine] @ c[mine].T
        n = int(mine.sum())
        per_site[site] = {
            "within": float(within[~np.eye(n, dtype=bool)].mean()) if n > 1 else float("nan"),
            "to_nearest_site": min(float(np.mean(1 - c[mine] @ centroid(s == o))) for o in study.sites if o != site),
            "people": n,
        }
    return {"loo_accuracy": hits / len(c), "chance": 1.0 / len(study.sites), "sites": per_site}
