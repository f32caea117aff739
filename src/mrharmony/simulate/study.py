"""A simulated multi-site dMRI study: ``mrharmony simulate OUT --kind study``.

What most studies have instead of traveling heads: a cohort per site, different people at every
site, each scanned once on the site's scanner. The sites' platforms are drawn from a distribution
(``platform-distribution.yaml`` beside this module; :class:`PlatformDistribution`); each site's
people are controls and patients with an age and a sex (:class:`StudyDesign`), and the design can
confound site with diagnosis (more patients at one site) or with age (older people at one site),
as real studies are confounded.

What differs between people:

* patients: as in a cohort (:func:`mrharmony.simulate.generator.cohort_design`), a lower
  intra-axonal fraction in a named white-matter region and every tissue diffusivity higher;
* ageing: from 40 years on (white-matter FA peaks and MD is lowest between about 20 and 42 years,
  Lebel et al., NeuroImage 2012; in a longitudinal study decline was estimated to begin in the
  fifth decade, Sexton et al., J Neurosci 2014), every tissue diffusivity rises by
  ``diffusivity_per_decade`` and the intra-axonal fraction falls by ``f_intra_per_decade`` per
  decade: MD up and FA down by a few percent per decade, rates this project assumes within the
  range such lifespan studies report;
* each person's own tissue properties, anatomy and size, as for the traveling heads.

The study folder holds ``study.yaml`` (the sites' protocols, :mod:`mrharmony.data.study`),
``participants.tsv`` (``participant_id``, ``site``, ``age``, ``sex``, ``group``), each person's
scan ``<subject>/<site>/dwi.nii.gz`` (with ``.bval``, ``.bvec`` and ``mask.nii.gz``), the truth
``truth/<subject>/`` and ``simulation.yaml``, from which :func:`mrharmony.simulate.render_scan`
renders any person again on any platform of the study: on ``reference`` without noise (the truth
harmonized maps are scored against), or on the person's own site as a second session (a rescan).

Random draws come from generators seeded by the study's seed: the platforms from
``[seed, PLATFORM_STREAM]``, the design from ``[seed, DESIGN_STREAM]``, each person as the
simulator's cohorts draw theirs (index ``COHORT_INDEX_OFFSET + i``, other people than the
traveling heads of the same seed).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np
from pydantic import Field, model_validator

from mrharmony.config import StrictModel, load_yaml_model
from mrharmony.errors import InputError
from mrharmony.simulate.params import SimPlatform, SNRReference, with_snr

#: the streams of the study's seed that draw the platforms and the design
PLATFORM_STREAM, DESIGN_STREAM = 7001, 7002
#: the platform every person is rendered on without noise, for scoring
REFERENCE = "reference"
#: ageing (see the module docstring): from this age, per decade
AGEING = {"from_age": 40.0, "diffusivity_per_decade": 0.03, "f_intra_per_decade": -0.01}


class Draw(StrictModel):
    """One parameter's distribution: ``choice`` (with optional ``weights``), ``uniform`` [low, high]
    or ``normal`` [mean, sd]; ``size`` values each (1: a number)."""

    choice: list[float] | None = None
    weights: list[float] | None = None
    uniform: tuple[float, float] | None = None
    normal: tuple[float, float] | None = None
    size: int = Field(default=1, ge=1, le=3)

    @model_validator(mode="after")
    def _one(self) -> Draw:
        kinds = [k for k in ("choice", "uniform", "normal") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a draw needs exactly one of choice, uniform or normal")
        if self.weights is not None and (self.choice is None or len(self.weights) != len(self.choice)):
            raise ValueError("weights need a choice of as many values")
        if self.uniform is not None and self.uniform[0] > self.uniform[1]:
            raise ValueError("uniform needs [low, high] with low <= high")
        return self

    def sample(self, rng: np.random.Generator):
        if self.choice is not None:
            p = None if self.weights is None else np.asarray(self.weights, float) / np.sum(self.weights)
            v = rng.choice(np.asarray(self.choice, float), size=self.size, p=p)
        elif self.uniform is not None:
            v = rng.uniform(*self.uniform, size=self.size)
        else:
            assert self.normal is not None
            v = rng.normal(*self.normal, size=self.size)
        return float(v[0]) if self.size == 1 else [float(x) for x in v]


class PlatformDistribution(StrictModel):
    """The platforms of a simulated study (``platform-distribution.yaml``: see its header)."""

    snr_reference: SNRReference
    bvalues: list[float] = Field(min_length=2)
    reference: dict
    draws: dict[str, Draw]
    min_snr: float | None = Field(
        default=None,
        gt=0,
        description="the b=0 SNR each site designs its protocol for: a drawn platform below it repeats its "
        "acquisition (n_averages, at most max_averages) until it reaches it",
    )
    max_averages: int = Field(default=16, ge=1)

    @model_validator(mode="after")
    def _known(self) -> PlatformDistribution:
        known = set(SimPlatform.model_fields) - {"name", "role", "bvalues", "snr", "psf_fwhm_mm"} | {"psf_fwhm_voxels"}
        unknown = sorted(set(self.draws) - known)
        if unknown:
            raise ValueError(f"draws: {unknown[0]!r} is not a platform parameter")
        for need in ("voxel_size", "te_ms", "n_directions", "n_b0", "max_gradient_mt_m", "gap_ms", "receiver_gain"):
            if need not in self.draws:
                raise ValueError(f"draws: {need!r} is missing")
        self.reference_platform()  # a valid platform
        return self

    def reference_platform(self) -> SimPlatform:
        return SimPlatform(**with_snr(self.snr_reference, {**self.reference, "role": "site"}))

    def draw(self, n: int, seed: int) -> list[SimPlatform]:
        """``n`` sites' platforms, ``site-01`` ... (role ``site``), drawn with ``[seed, PLATFORM_STREAM]``."""
        rng = np.random.default_rng([int(seed), PLATFORM_STREAM])
        ints = {k for k, f in SimPlatform.model_fields.items() if f.annotation is int}
        out = []
        for i in range(n):
            p: dict = {"name": f"site-{i + 1:02d}", "role": "site", "bvalues": list(self.bvalues)}
            for key, draw in self.draws.items():  # 4 decimals: what a protocol states, not float noise
                v = draw.sample(rng)
                p[key] = [round(x, 4) for x in v] if isinstance(v, list) else round(v, 4)
            p["gradient_seed"] = int(rng.integers(1, 10**6))
            voxel = p["voxel_size"]
            p["psf_fwhm_mm"] = round(voxel * p.pop("psf_fwhm_voxels", 1.1), 3)
            for key in ints & set(p):
                p[key] = int(round(p[key]))
            snr = with_snr(self.snr_reference, p)["snr"]
            if self.min_snr is not None and snr < self.min_snr:  # averages, as a protocol would add them
                need = int(np.ceil((self.min_snr / snr) ** 2 * p.get("n_averages", 1) - 1e-9))
                p["n_averages"] = min(self.max_averages, need)
            out.append(SimPlatform(**with_snr(self.snr_reference, p)))
        return out


def default_distribution_path() -> Path:
    return Path(str(resources.files("mrharmony.simulate") / "platform-distribution.yaml"))


class StudyDesign(StrictModel):
    """Who is scanned where: the sites, their people and how site is confounded with diagnosis or age."""

    sites: int = Field(default=6, ge=2, le=99, description="sites, each with its own platform")
    controls_per_site: int = Field(default=16, ge=1)
    patients_per_site: int = Field(default=8, ge=0)
    age_range: tuple[float, float] = Field(default=(20.0, 80.0), description="ages drawn uniformly in it")
    patients: dict[str, float] = Field(
        default_factory=dict,
        description="site -> the fraction of its people who are patients (confounds site with diagnosis); "
        "a site not named keeps patients_per_site of controls_per_site + patients_per_site",
    )
    ages: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="site -> its people's age range (confounds site with age)"
    )
    effect: float = Field(
        default=0.08, gt=0.0, lt=0.3, description="patients' lower intra-axonal fraction in the region"
    )
    global_md_effect: float = Field(
        default=0.10, ge=0.0, lt=0.5, description="patients' rise of every tissue diffusivity"
    )

    @model_validator(mode="after")
    def _sites(self) -> StudyDesign:
        names = {f"site-{i + 1:02d}" for i in range(self.sites)}
        for key in (*self.patients, *self.ages):
            if key not in names:
                raise ValueError(f"{key!r} is not one of the study's sites (site-01 ... site-{self.sites:02d})")
        if any(not 0.0 <= f <= 1.0 for f in self.patients.values()):
            raise ValueError("a site's fraction of patients must be in [0, 1]")
        for lo, hi in [self.age_range, *self.ages.values()]:
            if not 0 <= lo <= hi <= 110:
                raise ValueError("an age range needs 0 <= low <= high <= 110")
        return self

    def people(self, seed: int) -> list[dict]:
        """Every person: ``subject`` (``sub-001`` ...), ``site``, ``age``, ``sex``, ``group``, site by site."""
        rng = np.random.default_rng([int(seed), DESIGN_STREAM])
        n = self.controls_per_site + self.patients_per_site
        out: list[dict] = []
        for i in range(self.sites):
            site = f"site-{i + 1:02d}"
            n_patients = int(round(self.patients[site] * n)) if site in self.patients else self.patients_per_site
            groups = ["control"] * (n - n_patients) + ["patient"] * n_patients
            groups = [groups[k] for k in rng.permutation(n)]
            lo, hi = self.ages.get(site, self.age_range)
            for g in groups:
                out.append(
                    {
                        "subject": f"sub-{len(out) + 1:03d}",
                        "site": site,
                        "age": round(float(rng.uniform(lo, hi)), 1),
                        "sex": str(rng.choice(["F", "M"])),
                        "group": g,
                    }
                )
        return out


def simulate_study(
    out: str | os.PathLike,
    *,
    preset: str = "demo",
    seed: int = 0,
    design: StudyDesign | str | os.PathLike | None = None,
    distribution: str | os.PathLike | None = None,
    force: bool = False,
    quiet: bool = False,
    jobs: int | None = None,
) -> Path:
    """Generate a simulated multi-site study (see the module docstring).

    Parameters
    ----------
    out
        The output folder; it must not exist or be empty, unless ``force`` (built under a temporary
        name and moved into place at the end).
    preset
        The field of view (:data:`mrharmony.simulate.params.PRESETS`; its number of subjects does not apply).
    seed
        The seed of every random draw.
    design
        A :class:`StudyDesign` or a YAML file of one (default: its defaults).
    distribution
        A platform distribution YAML (default: the packaged ``platform-distribution.yaml``).
    force, quiet, jobs
        As for :func:`mrharmony.simulate.simulate`.

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    InputError
        A bad design or distribution file, an unknown preset, or an existing non-empty ``out``
        without ``force``: one sentence naming the file.
    """
    from mrharmony import __version__
    from mrharmony.config import dump_yaml
    from mrharmony.data.study import StudySpec, write_participants
    from mrharmony.io import staged_output_dir, write_text
    from mrharmony.simulate.generator import (
        COHORT_VERSION,
        SIMULATOR_VERSION,
        make_geometry,
        run_subjects,
    )
    from mrharmony.simulate.params import COHORT_REGION, FINE_VOXEL_MM, PRESETS, pick_preset

    if not isinstance(design, StudyDesign):
        design = StudyDesign() if design is None else load_yaml_model(StudyDesign, design)
    dist = load_yaml_model(PlatformDistribution, distribution or default_distribution_path())
    pre = pick_preset(PRESETS, preset)
    sites = dist.draw(design.sites, seed)
    plats = [*sites, dist.reference_platform()]
    grid = max(p.voxel_size[0] for p in plats)
    if any(abs(grid / p.voxel_size[0] - round(grid / p.voxel_size[0])) > 1e-6 for p in plats):
        raise InputError(
            "draws voxel sizes that do not divide the largest one; use whole multiples of it.", distribution
        )
    people = design.people(seed)
    record = {
        "groups": {p["subject"]: p["group"] for p in people},
        "region": dict(COHORT_REGION),
        "f_intra_change": -float(design.effect),
        "global_md_change": float(design.global_md_effect),
        "cohort_version": COHORT_VERSION,
        "sites": {p["subject"]: p["site"] for p in people},
        "ages": {p["subject"]: p["age"] for p in people},
        "sexes": {p["subject"]: p["sex"] for p in people},
        "ageing": dict(AGEING),
        "design": design.model_dump(mode="json"),
    }
    geom = make_geometry(pre, plats, grid)
    out = Path(out)
    with staged_output_dir(out, force=force) as tmp:
        subjects = [p["subject"] for p in people]
        run_subjects(
            tmp,
            subjects,
            seed,
            geom,
            plats,
            record,
            render={p["subject"]: [p["site"]] for p in people},
            jobs=jobs,
            quiet=quiet,
            desc=f"simulate study ({preset})",
        )
        spec = StudySpec(
            name=f"mrharmony-synthetic-study-{preset}",
            description=f"a simulated multi-site study: {design.sites} sites, {len(people)} people, on the "
            f"{preset} preset's field of view",
            sites=[p.spec() for p in sites],
            generated_by={"name": "mrharmony simulate --kind study", "version": __version__, "seed": seed},
        )
        write_text(tmp / "study.yaml", dump_yaml(spec.model_dump(mode="json", exclude_none=True)))
        write_participants(tmp / "participants.tsv", people)
        sim = {
            "mrharmony_version": __version__,
            "simulator_version": SIMULATOR_VERSION,
            "preset": pre.model_dump(mode="json"),
            "seed": seed,
            "fine_voxel_mm": FINE_VOXEL_MM,
            "grid_voxel_mm": grid,
            "platforms": [p.model_dump(mode="json") for p in plats],
            "cohort": record,
        }
        write_text(tmp / "simulation.yaml", dump_yaml(sim))
    return out
