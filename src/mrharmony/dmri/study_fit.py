"""Harmonizers learned from a multi-site study, as practice learns them without traveling heads.

A run config whose ``data`` section names a ``study`` (:class:`StudyDataConfig`, a folder of
:mod:`mrharmony.data.study`) harmonizes the people of one site (``source``) to another
(``target``), each site's controls standing in for traveling heads:

* ``rish`` (linear RISH with site templates, as the RISH harmonization pipeline runs it, Mirzaalian
  et al. 2016, Cetin Karayumak et al. 2019): a template of the two sites' controls (their l=0 maps;
  ``registration: syn`` builds it with dipy's SyN, :mod:`mrharmony.template`), the mean over each
  site's controls of every rotation-invariant feature (the energy of each SH order and shell) in the
  template, and per order the scale map sqrt(E_target / E_source), smoothed; applied to every person
  of the source site, patients included, as for traveling heads (:class:`~mrharmony.dmri.statistical.
  LinearRISH`).
* ``combat`` (ComBat on FA and MD, and MK for two shells, through neuroHarmonize, with the
  covariates of ``participants.tsv``: ``covariates: [age, sex]``, ``age_term: spline`` for a
  non-linear age, ``group`` with ``people: everyone``; :mod:`mrharmony.dmri.combat`): fitted on the
  two sites' people in their common space, the target site the reference; applying it needs the
  person's covariates (``mrharmony dmri apply ... --age 63 --sex F``).

``controls`` sets how many controls of each site the maps learn from: the first in
``participants.tsv`` (a study orders them as it matched them); ``people: everyone`` learns from
every person of the two sites instead. The fitted model is a run directory like any other:
``mrharmony dmri apply`` harmonizes a scan of the source site with it.

Examples
--------
.. code-block:: yaml

    data:
      study: study            # a prepared multi-site study
      source: site-01
      target: site-04
      controls: 16
    model:
      method: rish
      registration: syn
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, field_validator

from mrharmony.config import StrictModel
from mrharmony.dmri.config import StudyDataConfig
from mrharmony.errors import InputError

#: the methods that learn from a study's site cohorts
STUDY_METHODS = ("rish", "combat")
#: the intended use of a harmonizer learned from a study (its model card's)
STUDY_USE = (
    "harmonizing diffusion MRI of the source site's protocol to the target site's (SH coefficients, the signal on "
    "the target's gradient table, FA and MD), so that a multi-site study can pool its sites"
)


class StudyRunConfig(StrictModel):
    """A run config that learns from a multi-site study (see the module docstring)."""

    label: str | None = Field(default=None, min_length=1, description="the run's row in tables (default: its method)")
    data: StudyDataConfig
    model: dict

    @field_validator("model")
    @classmethod
    def _method(cls, v: dict) -> dict:
        if v.get("method") not in STUDY_METHODS:
            raise ValueError(
                f"method {v.get('method')!r} learns from traveling heads; from a study's site cohorts: "
                f"{', '.join(STUDY_METHODS)}"
            )
        from mrharmony.dmri.run_config import model_config

        model_config(v)  # the method's own settings, checked
        return v


def is_study_config(raw: dict) -> bool:
    """Whether a run config (as read) learns from a study: its data section names one."""
    return isinstance(raw.get("data"), dict) and "study" in raw["data"]


def load_study_config(path: str | os.PathLike) -> StudyRunConfig:
    """Read a study run config; the study's path is taken from the config's folder."""
    from mrharmony.config import model_from_dict, read_yaml, resolve_paths

    raw = read_yaml(path)
    if isinstance(raw, dict) and isinstance(raw.get("data"), dict):
        raw["data"] = resolve_paths(raw["data"], StudyDataConfig, Path(path).resolve().parent)
    return model_from_dict(StudyRunConfig, raw, source=path)


def site_controls(study, site: str, n: int | None, *, source=None) -> list[str]:
    """The first ``n`` controls of a site (all: None); one sentence naming participants.tsv when it
    has fewer, or people without a group."""
    from mrharmony.data.study import PARTICIPANTS_FILE

    people = study.at(site)
    study.require(("group",), [p.subject for p in people])
    controls = [p.subject for p in people if p.group == "control"]
    if n is not None and len(controls) < n:
        raise InputError(
            f"lists {len(controls)} controls at {site}, fewer than the {n} the run's maps learn from (data.controls).",
            study.root / PARTICIPANTS_FILE,
        )
    if len(controls) < 2:
        raise InputError(f"lists fewer than 2 controls at {site}; site maps need more.", study.root / PARTICIPANTS_FILE)
    return controls if n is None else controls[:n]


def site_people(study, site: str, data: StudyDataConfig) -> list[str]:
    """Whom a study's harmonizer learns from at a site (``data.people``): its first ``data.controls``
    controls, or everyone (at least two)."""
    from mrharmony.data.study import PARTICIPANTS_FILE

    if data.people == "controls":
        return site_controls(study, site, data.controls)
    people = [p.subject for p in study.at(site)]
    if len(people) < 2:
        raise InputError(f"lists fewer than 2 people at {site}; site maps need more.", study.root / PARTICIPANTS_FILE)
    return people


def study_reference(study, data: StudyDataConfig, source_subjects: list[str], target_subjects: list[str]) -> dict:
    """What applying a study's harmonizer to a new scan needs (as
    :func:`~mrharmony.dmri.harmonizer.platform_reference` for traveling heads): the two sites' fixed
    scales (the means of their controls' per-scan statistics), the target site's gradient table, the
    SH settings on the source's shells, and the source site's protocol, which ``apply`` checks."""
    import json

    from mrharmony.dmri.features.normalization import ChannelStats, scan_stats
    from mrharmony.dmri.features.prepare import feature_paths

    src, tgt = study.site(data.source), study.site(data.target)
    side = json.loads(feature_paths(study.root, source_subjects[0], src.name)[1].read_text())
    theirs = json.loads(feature_paths(study.root, target_subjects[0], tgt.name)[1].read_text())
    shells = side.get("shells") or [float(max(src.bvalues))]
    if len(theirs.get("shells") or [0]) != len(shells):
        raise InputError(
            f"gives {data.target} {len(theirs.get('shells') or [0])} shells and {data.source} {len(shells)}; "
            "RISH maps each shell to the target's shell of the same rank.",
            study.root / "study.yaml",
        )
    bvals, bvecs = study.scan(target_subjects[0]).gradients()

    def scale(site: str, subjects: list[str], denoise: str) -> dict:
        return ChannelStats.average([scan_stats(study, s, site, denoise) for s in subjects]).to_dict()

    return {
        "normalization": "platform",
        "denoise": data.denoise,
        "input_stats": scale(src.name, source_subjects, data.denoise),
        "target_stats": {tgt.name: scale(tgt.name, target_subjects, "none")},
        "target_gradients": {tgt.name: {"bvals": bvals.tolist(), "bvecs": bvecs.tolist()}},
        "sh": {**side["sh"], "shells": shells},
        "voxel_sizes": {tgt.name: list(tgt.voxel_size)},
        "input_protocol": {
            "platform": src.name,
            "shells": shells,
            "voxel_size": list(src.voxel_size),
            "n_directions": src.n_directions,
            "te_ms": src.te_ms,
        },
    }


def fit_study(cfg: StudyRunConfig, out: str | os.PathLike, *, force: bool = False, quiet: bool = False) -> Path:
    """Fit the harmonizer of a study run config into the run directory ``out`` (see the module docstring).

    Raises
    ------
    InputError
        A study that does not load or is not prepared, an unknown site, a source that is the target,
        too few controls, or an existing ``out`` without ``force``: one sentence naming the file.
    """
    from mrharmony import __version__
    from mrharmony.config import dump_yaml, relative_paths
    from mrharmony.data.study import STUDY_FILE, load_study
    from mrharmony.dmri.run_config import model_config
    from mrharmony.engine.card import make_card, protocol
    from mrharmony.io import staged_output_dir, write_text
    from mrharmony.progress import Progress

    data = cfg.data
    study = load_study(data.study)
    for site in (data.source, data.target):
        if site not in study.sites:
            raise InputError(f"has no site {site!r} (its sites: {', '.join(study.sites)}).", study.root / STUDY_FILE)
    if data.source == data.target:
        raise InputError(f"names {data.source} as both source and target.", study.root / STUDY_FILE)
    model = model_config(cfg.model)
    cls = model.harmonizer()
    cls.check_requirements()
    source_subjects = site_people(study, data.source, data)
    target_subjects = site_people(study, data.target, data)
    reference = study_reference(study, data, source_subjects, target_subjects)
    h = cls(targets=[data.target], ratios={data.target: 1}, reference=reference, settings=model.settings())
    steps = len(source_subjects) + len(target_subjects)
    if h.settings["registration"] == "syn":
        steps *= 2 + int(h.settings.get("template_rounds", 2))
    progress = Progress(total=steps, unit="steps", desc=f"fit {h.method} ({data.source} -> {data.target})", quiet=quiet)
    h.learn_study(study, data, source_subjects, target_subjects, progress)
    progress.close()
    synthetic = bool(study.spec.generated_by)
    limits = [
        f"learned from the {data.people} of two sites of one study: scans of the source site's protocol ({data.source}) only; "
        "another protocol is refused by apply unless the mismatch is allowed and recorded",
        "a site's people stand in for its scanner: people who differ from them in age or disease beyond what the "
        "maps (and covariates) model are adjusted as they were",
        "research use: not validated for clinical decisions",
    ]
    if synthetic:
        limits.insert(0, "trained on synthetic data (mrharmony simulate --kind study): a demonstration")
    card = make_card(
        wing="dmri",
        method=model.method,
        variant=cfg.label or model.method,
        training_data={
            "dataset": study.spec.name,
            "synthetic": synthetic,
            "platforms": [protocol(study.site(data.source)), protocol(study.site(data.target))],
            "subjects_fitted_on": source_subjects + target_subjects,
            "subjects_held_out": [],
            "denoise": data.denoise,
        },
        budget=None,
        seed=None,
        intended_use=STUDY_USE,
        limits="; ".join(limits),
    )
    out = Path(out)
    with staged_output_dir(out, force=force) as tmp:
        recorded = relative_paths(data.model_dump(mode="json"), StudyDataConfig, out)
        h.meta = {
            "mrharmony_version": __version__,
            "model": model.model_dump(mode="json", exclude_unset=True),
            "data": recorded,
            "targets": [data.target],
            "ratios": {data.target: 1},
            "input_platform": data.source,
            "fit_subjects": source_subjects + target_subjects,
            **({"label": cfg.label} if cfg.label else {}),
            "card": card,
        }
        h.save(tmp)
        write_text(tmp / "config.yaml", dump_yaml({**cfg.model_dump(mode="json"), "data": recorded}))
    return out
