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

In a multi-site study (a run config whose data names a ``study``, :mod:`mrharmony.dmri.study_fit`)
the sites' people differ, and ComBat is fitted with covariates, as practice fits it: ``age``,
``sex`` and ``group`` (diagnosis, with ``people: everyone``; fitted on the controls alone, the
diagnosis cannot be a covariate and need not be) from ``participants.tsv``, so that an age or
disease difference between the sites is not taken for the scanner. ``age_term: spline`` models age
by a cubic regression spline (:func:`age_basis`) instead of a straight line. It is not
neuroHarmonize's GAM option (``smooth_terms``), which fits and tunes one penalized GAM per feature,
a cost made for regional volumes rather than the voxels of a brain; the spline enters ComBat's linear model as covariates, as
the GAM's basis does, without the penalty.

With covariates ComBat's offset depends on the person: the adjustment of a voxel is
``slope * value + offset(covariates)``, with the offset affine in the covariates' columns (age, or
its spline basis; sex M; group patient). The model stores the offset of a female control of the
youngest age fitted and, per voxel, the change of the offset per unit of each column (probed from
neuroHarmonize the same way); ``apply`` takes the person's covariates (``--age``, ``--sex``,
``--group``) and adds the changes (:meth:`ComBatHarmonizer.for_person`): exactly neuroHarmonize's
adjustment of that person.

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
import copy
import io
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

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


#: the covariates ComBat may adjust for in a study (columns of participants.tsv)
COVARIATES = ("age", "sex", "group")
#: how a probe of the model encodes each covariate that is not age (the other value: 0)
CODED = {"sex": "M", "group": "patient"}


class ComBatConfig(CommonSpaceConfig):
    method: Literal["combat"]
    covariates: list[Literal["age", "sex", "group"]] = Field(
        default_factory=list,
        description="what ComBat protects in a study (participants.tsv columns): age, sex, group (diagnosis; needs "
        "data.people: everyone); a person harmonized with the model gives them to apply",
    )
    age_term: Literal["linear", "spline"] = Field(
        default="linear", description="age as a straight line, or a cubic regression spline (two interior knots)"
    )
    scale: bool = Field(
        default=True,
        description="ComBat's location and scale adjustment (true, as practice runs it), or its location alone "
        "(false: the site's shrunk mean taken away, each person's difference from it kept as it is)",
    )

    @model_validator(mode="after")
    def _covariates(self) -> ComBatConfig:
        if len(set(self.covariates)) != len(self.covariates):
            raise ValueError("a covariate is named twice")
        if self.age_term == "spline" and "age" not in self.covariates:
            raise ValueError("age_term: spline needs age among the covariates")
        return self

    @classmethod
    def harmonizer(cls):
        return ComBatHarmonizer


class ComBatHarmonizer(VoxelwiseHarmonizer):
    method = "combat"
    predicts_sh = False

    @classmethod
    def check_requirements(cls) -> None:
        require_neuroharmonize()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.covariate_maps: dict[str, np.ndarray] = {}
        self.base: ComBatHarmonizer | None = None  # the model for anyone, of a model made for a person

    def learn(self, ds, subjects: list[str], progress) -> None:
        if self.settings.get("covariates"):
            raise InputError(
                "ComBat's covariates come from a study's participants.tsv (data.study); traveling heads "
                "differ by site only.",
                getattr(ds, "root", None),
            )
        fit_combat(self, ds, subjects, progress)

    def learn_study(self, study, data, source_subjects: list[str], target_subjects: list[str], progress) -> None:
        fit_combat_study(self, study, data, source_subjects, target_subjects, progress)

    @property
    def covariates(self) -> list[str]:
        """The covariates a person harmonized with the model must give (none without a study, and none
        for the location adjustment alone, which is the same for everyone)."""
        if not self.settings.get("scale", True):
            return []
        return list((self.settings.get("covariate_model") or {}).get("covariates", []))

    def for_person(self, covariates: dict | None, *, source=None) -> ComBatHarmonizer:
        """The model with the adjustment maps of a person with ``covariates`` (``age``, ``sex``,
        ``group``; see the module docstring); itself for a model without covariates.

        Raises
        ------
        InputError
            A covariate the model needs that is not given or not valid, or (``age_term: spline``) an
            age outside the ages the model was fitted on, naming ``source``.
        """
        if not self.covariates or (covariates is None and self.person is not None):
            return self
        base_model = self.base if self.person is not None else self  # never the offsets of two people
        from mrharmony.data.study import GROUPS, SEXES

        given = covariates or {}
        model = self.settings["covariate_model"]
        for c in self.covariates:
            if given.get(c) is None:
                raise InputError(
                    f"needs the person's {c}: the model adjusts for {', '.join(self.covariates)} (--{c}).", source
                )
        if "sex" in self.covariates and given["sex"] not in SEXES:
            raise InputError(f"gives sex {given['sex']!r}; the model knows {' and '.join(SEXES)}.", source)
        if "group" in self.covariates and given["group"] not in GROUPS:
            raise InputError(f"gives group {given['group']!r}; the model knows {' and '.join(GROUPS)}.", source)
        if model["age_term"] == "spline":
            lo, hi = model["age_knots"]["bounds"]
            if not lo <= float(given["age"]) <= hi:
                raise InputError(
                    f"gives age {float(given['age']):g}, outside the ages {lo:g} to {hi:g} the model's age spline was "
                    "fitted on.",
                    source,
                )
        weights = list(person_columns(given, model))  # of the stored terms, in their order
        person = copy.copy(base_model)
        person.person = {c: given[c] for c in self.covariates}
        person.base = base_model
        person.maps = {}
        for t, base in base_model.maps.items():
            adjust = base.copy()
            terms = self.covariate_maps[t].reshape(*base.shape[:-1], base.shape[-1] // 2, len(weights))
            adjust[..., 1::2] += terms @ np.asarray(weights, np.float32)
            person.maps[t] = adjust
        return person

    def _arrays(self):
        arrays = super()._arrays()
        for t, v in self.covariate_maps.items():
            arrays[f"covariates-{t}"] = (v, self.space.affine)
        return arrays

    def _restore(self, arrays):
        super()._restore(arrays)
        self.covariate_maps = {t: arrays[f"covariates-{t}"][0] for t in self.targets if f"covariates-{t}" in arrays}

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


def learned_adjustment(data: np.ndarray, people, probes, *, scale: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """ComBat (neuroHarmonize) learned from ``data`` (people x features; the input site's people, then
    the target's, the reference batch) with the table ``people`` (``SITE`` and the covariate
    columns), read as plain values: the slope per feature, and the offset per feature for each row
    of ``probes`` (covariate values of a person of the input site; its first row gives the slope).

    ``scale=False`` keeps ComBat's location adjustment alone: the input site's shrunk site mean
    (``gamma_star``, in the units of the data) is taken away, the slope is one and the offset is the
    same for every person."""
    import pandas as pd
    from neuroHarmonize import harmonizationApply, harmonizationLearn

    n = data.shape[1]
    rows = pd.concat([probes, probes.iloc[:1]], ignore_index=True).assign(SITE="input")
    # a target row rides along: neuroHarmonize needs the reference site among the rows it adjusts
    rows = pd.concat([rows, people.iloc[[-1]]], ignore_index=True)[list(people.columns)]
    values = np.concatenate([np.zeros((len(probes), n)), np.ones((1, n)), data[-1:]])
    with contextlib.redirect_stdout(io.StringIO()):  # neuroHarmonize reports its steps on stdout
        model, _ = harmonizationLearn(data, people, ref_batch="target", seed=0)
        out = harmonizationApply(values, rows, model)
    if not scale:
        site = list(model["SITE_labels"]).index("input")
        shift = np.asarray(model["gamma_star"])[site] * np.sqrt(np.asarray(model["var_pooled"])[:, 0])
        return np.ones(n), np.tile(-shift, (len(probes), 1))
    offsets = out[: len(probes)]
    return out[len(probes)] - offsets[0], offsets


def _support_maps(support: np.ndarray, k_maps: int, n_terms: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Adjustment maps that are the identity (slope 1, offset 0) and covariate maps of zeros."""
    adjust = np.zeros((*support.shape, 2 * k_maps), np.float32)
    adjust[..., 0::2] = 1.0
    return adjust, np.zeros((*support.shape, k_maps * n_terms), np.float32)


def _set_fallback(h: ComBatHarmonizer) -> None:
    h.fallback = {t: np.tile(np.array([1.0, 0.0], np.float32), h.maps[t].shape[-1] // 2) for t in h.targets}
    h.settings["fallback"] = {t: v.tolist() for t, v in h.fallback.items()}


def fit_combat(h: ComBatHarmonizer, ds, subjects: list[str], progress) -> None:
    """Learn ComBat's adjustment maps of FA and MD (and MK, :data:`MEASURES`) for each target from
    the training subjects (traveling heads: site the only covariate)."""
    import pandas as pd

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
    people = pd.DataFrame({"SITE": ["input"] * n + ["target"] * n})
    for t, d in maps.items():
        support = np.logical_and.reduce(d["w"]) & h.space.mask
        k_maps = d["in"][0].shape[-1]
        adjust, _ = _support_maps(support, k_maps)
        for k in range(k_maps):  # FA, MD (, MK)
            data = np.concatenate([np.stack([x[..., k][support] for x in d[side]]) for side in ("in", "t")])
            slope, offsets = learned_adjustment(
                data.astype(np.float64),
                people,
                people.iloc[:1].drop(columns="SITE"),
                scale=h.settings.get("scale", True),
            )
            adjust[..., 2 * k][support] = slope
            adjust[..., 2 * k + 1][support] = offsets[0]
        h.maps[t] = adjust
    _set_fallback(h)


#: interior knots of the age spline, at these quantiles of the fitted people's ages
SPLINE_QUANTILES = (1 / 3, 2 / 3)


def age_basis(ages, knots: dict) -> np.ndarray:
    """The cubic B-spline basis of ``ages`` on ``knots`` (``{"bounds": [low, high], "interior": [...]}``),
    its first function left out (the basis sums to one, which the intercept already is): one column
    per function after the first."""
    from scipy.interpolate import BSpline

    lo, hi = knots["bounds"]
    t = np.r_[[lo] * 4, knots["interior"], [hi] * 4]
    x = np.clip(np.asarray(ages, float), lo, hi)
    return BSpline.design_matrix(x, t, 3).toarray()[:, 1:]


def age_columns(age: float, model: dict) -> np.ndarray:
    """The columns of ``age`` in ComBat's model (``model``: a model's ``covariate_model``): the age
    itself, or its spline basis (:func:`age_basis`)."""
    if model["age_term"] == "spline":
        return age_basis([age], model["age_knots"])[0]
    return np.array([float(age)])


def probe_table(model: dict):
    """The covariate rows whose offsets the model stores (``model``: a ``covariate_model``): a female
    control of the base age; per age column, the same person with that column one higher; per other
    covariate, the same person with its :data:`CODED` value."""
    from types import SimpleNamespace

    covariates = model["covariates"]
    base = {"age": model.get("age_base"), "sex": "F", "group": "control"}
    n_age = len(age_columns(base["age"], model)) if "age" in covariates else 0
    rows = [SimpleNamespace(**base)] * (1 + n_age) + [SimpleNamespace(**{**base, c: CODED[c]}) for c in model["terms"]]
    table = covariate_table(rows, covariates, ["input"] * len(rows), model.get("age_knots")).drop(columns="SITE")
    for j, col in enumerate(c for c in table.columns if c.startswith("AGE")):
        table.loc[1 + j, col] += 1.0
    return table


def person_columns(given: dict, model: dict) -> np.ndarray:
    """A person's change of each stored term from the base person (the rows of :func:`probe_table`
    after the first): their age columns minus the base age's, then 1 for each :data:`CODED` value."""
    out = []
    if "age" in model["covariates"]:
        out += list(age_columns(float(given["age"]), model) - age_columns(model["age_base"], model))
    out += [float(given[c] == CODED[c]) for c in model["terms"]]
    return np.asarray(out, np.float64)


def covariate_table(people: list, covariates: list[str], sites: list[str], knots: dict | None):
    """The table ComBat fits (``SITE``: ``input`` or ``target``, then one column per covariate, age as
    a line or its spline basis, sex and group coded 1 for :data:`CODED`) of people with covariates
    (objects with ``age``, ``sex``, ``group``) at the given sites."""
    import pandas as pd

    table = {"SITE": sites}
    for c in covariates:
        if c == "age" and knots is not None:
            for j, col in enumerate(age_basis([p.age for p in people], knots).T):
                table[f"AGE_{j}"] = col
        elif c == "age":
            table["AGE"] = [float(p.age) for p in people]
        else:
            table[c.upper()] = [float(getattr(p, c) == CODED[c]) for p in people]
    return pd.DataFrame(table)


def fit_combat_study(
    h: ComBatHarmonizer, study, data, source_subjects: list[str], target_subjects: list[str], progress
):
    """ComBat's adjustment maps (and covariate maps) of FA, MD (and MK) from two sites' people in their
    common space, with the covariates of ``participants.tsv`` (see the module docstring).

    Raises
    ------
    InputError
        People without a covariate the model needs, a covariate that does not vary among them, or
        fewer people than ComBat's model has columns, naming participants.tsv.
    """

    from mrharmony.data.study import PARTICIPANTS_FILE
    from mrharmony.dmri.statistical import people_in_space, site_groups

    covariates = list(h.settings.get("covariates") or [])
    subjects = source_subjects + target_subjects
    study.require(tuple(covariates), subjects)
    people = [study.participant(s) for s in subjects]
    tsv = study.root / PARTICIPANTS_FILE
    for c in covariates:
        if len({getattr(p, c) for p in people}) < 2:
            raise InputError(
                f"gives every person ComBat learns from (data.people: {data.people}) the same {c}; it cannot be a "
                "covariate.",
                tsv,
            )
    ages = np.array([p.age for p in people], float) if "age" in covariates else None
    knots = None
    if ages is not None and h.settings.get("age_term") == "spline":
        knots = {
            "bounds": [float(ages.min()), float(ages.max())],
            "interior": np.quantile(ages, SPLINE_QUANTILES).tolist(),
        }
    sites = ["input"] * len(source_subjects) + ["target"] * len(target_subjects)
    table = covariate_table(people, covariates, sites, knots)
    design = np.column_stack(
        [np.asarray(sites) == "target", np.ones(len(sites)), table.drop(columns="SITE").to_numpy(float)]
    )
    if np.linalg.matrix_rank(design) < design.shape[1]:
        raise InputError(
            f"gives the people of {data.source} and {data.target} covariates ({', '.join(covariates)}) that site "
            "determines (e.g. every patient at one site); ComBat cannot tell them from the scanner.",
            tsv,
        )
    if len(people) <= table.shape[1] + 1:
        raise InputError(
            f"lists {len(people)} people at {data.source} and {data.target} for ComBat to learn from, too few for its "
            f"{table.shape[1] + 1} columns (two sites and the covariates {', '.join(covariates) or 'none'}).",
            tsv,
        )
    model = {
        "covariates": covariates,
        "age_term": h.settings.get("age_term", "linear"),
        "age_base": float(ages.min()) if ages is not None else None,
        "terms": [c for c in covariates if c != "age"],
        **({"age_knots": knots} if knots else {}),
    }
    probes = probe_table(model)

    bvals, bvecs = h.target_gradients(data.target)
    sh = h.reference["sh"]
    measures, support = [], None
    for f, w, brain in people_in_space(h, study, site_groups(data, source_subjects, target_subjects), progress):
        measures.append(h.space.to_reference(_measures(sh, f.data, bvals, bvecs, f.mask), f.affine, w))
        support = brain if support is None else support & brain
    support &= h.space.mask
    k_maps = measures[0].shape[-1]
    n_terms = len(probes) - 1
    adjust, terms_maps = _support_maps(support, k_maps, n_terms)
    for k in range(k_maps):
        values = np.stack([x[..., k][support] for x in measures]).astype(np.float64)
        slope, offsets = learned_adjustment(values, table, probes, scale=h.settings.get("scale", True))
        adjust[..., 2 * k][support] = slope
        adjust[..., 2 * k + 1][support] = offsets[0]
        for j in range(n_terms):
            terms_maps[..., k * n_terms + j][support] = offsets[j + 1] - offsets[0]
    t = data.target
    h.maps[t] = adjust
    h.settings["covariate_model"] = model
    if h.covariates:
        h.covariate_maps[t] = terms_maps
    _set_fallback(h)
