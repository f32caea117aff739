"""The synthetic traveling-heads generator: ``mrharmony simulate OUT --preset NAME --seed N``.

Every subject is rendered on a fine grid (1.2 mm) and, for each platform, sampled down to the
platform's voxel size after the platform's point-spread function (partial volume from averaging
fine voxels), multiplied by its receive field, corrupted by Rician noise at its SNR and stored
as int16, as a scanner does. The result follows the MUSHAC layout that
:func:`mrharmony.data.load_dataset` reads, plus:

* ``simulation.yaml``: the preset, seed and every platform parameter used;
* ``truth/<subject>/``: the ground-truth microstructure on the fine grid (tissue fractions,
  intra-axonal fraction, crossing fraction, fibre directions) and the subject's parameters.

With ``cohort=N`` the dataset is a study cohort instead: N other people (not the traveling heads
of the same seed), alternately controls and patients. A patient differs in two ways:

* regionally: the intra-axonal fraction is lower by ``effect`` in a named white-matter region
  (:data:`~mrharmony.simulate.params.COHORT_REGION`, which moves with the anatomy);
* globally: every tissue diffusivity (white matter's intra- and extra-axonal compartments, grey
  matter's) is higher by the fraction ``global_md_effect``, so that MD rises about that much
  everywhere in the brain and FA stays about the same (free water, CSF, is set by the
  temperature and does not change); a single-shell DTI fit sees a little less than the fraction,
  as diffusion in tissue is not Gaussian.

Every subject is scanned on every platform: the input scans are what a study would harmonize,
the target scans say what the group effect looks like on the target platform.
``participants.tsv`` lists each subject's group; ``truth/<subject>/region.nii.gz`` is the region
on the fine grid; ``simulation.yaml``'s ``cohort`` records the design (:func:`cohort_design`).

Random draws come from generators seeded by ``(seed, subject index, stream)`` (:func:`scan_seed`),
so a subject's data does not depend on how many subjects are generated, and the same seed gives
the same files. A cohort's subject i draws everything, anatomy as well as each scan's noise, bias
field and misregistration, as index ``COHORT_INDEX_OFFSET + i``: independently of the traveling
head i of the same seed. ``simulation.yaml`` records :data:`SIMULATOR_VERSION` (and a cohort its
:data:`COHORT_VERSION`); a dataset of another version is refused by :func:`render_scan` (its
scans could not be rendered again the same way).
"""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from mrharmony import __version__
from mrharmony.config import dump_yaml
from mrharmony.data.dataset import DatasetSpec, write_dataset_spec
from mrharmony.data.gradients import write_gradients
from mrharmony.errors import InputError
from mrharmony.io import save_nifti, staged_output_dir, write_text
from mrharmony.progress import Progress
from mrharmony.simulate.anatomy import (
    SubjectWarp,
    rigid,
    sample_anatomy,
    template_fields,
)
from mrharmony.simulate.params import (
    COHORT_REGION,
    FINE_VOXEL_MM,
    PRESETS,
    WM_REGIONS,
    Preset,
    SimPlatform,
    fov_grid,
    load_platforms,
    pick_preset,
)
from mrharmony.simulate.signal import (
    TissueProperties,
    bias_field,
    compartment_signal,
    extra_radial_excess,
    gradient_table,
    magnitude_noise,
    restricted_diffusivities,
)

WM_SNR_THRESHOLD = 0.7  # white-matter fraction of the voxels over which SNR is defined
#: Version of the signal and noise models; 2: SNR derived from one reference, non-central chi noise
#: of several coils, diffusion-time dependent extra-axonal diffusivity, gradient non-linearity,
#: study cohorts.
SIMULATOR_VERSION = 2
COHORT_INDEX_OFFSET = 1000  # a cohort's subject i draws as index 1000 + i: other people than the heads
#: Version of a cohort's design, in ``simulation.yaml``'s ``cohort``; 2: the scans' noise, bias field
#: and misregistration drawn with the cohort's index (version 1 reused the traveling heads'), and
#: the patients' global rise of the tissue diffusivities.
COHORT_VERSION = 2
#: The patients' default global rise of the tissue diffusivities (a fraction).
DEFAULT_GLOBAL_MD_EFFECT = 0.10


@dataclass
class Geometry:
    """The shared field of view: corner (mm), its extent in fine voxels, and grids per voxel size."""

    corner: np.ndarray
    fine_shape: tuple[int, int, int]

    def grid(self, voxel: float) -> tuple[np.ndarray, tuple[int, int, int]]:
        k = int(round(voxel / FINE_VOXEL_MM))
        shape = tuple(s // k for s in self.fine_shape)
        affine = np.diag([voxel, voxel, voxel, 1.0])
        affine[:3, 3] = self.corner + voxel / 2.0
        return affine, shape

    @property
    def centre(self) -> np.ndarray:
        return self.corner + 0.5 * np.asarray(self.fine_shape) * FINE_VOXEL_MM


def make_geometry(preset: Preset, platforms: list[SimPlatform], grid_voxel_mm: float | None = None) -> Geometry:
    """The field of view of a preset on a grid of ``grid_voxel_mm`` voxels (default: the input
    platform's), a whole number of every platform's voxels."""
    vin = grid_voxel_mm or next(p for p in platforms if p.role == "input").voxel_size[0]
    corner, shape = fov_grid(preset, vin)
    k = int(round(vin / FINE_VOXEL_MM))
    return Geometry(corner=corner, fine_shape=tuple(int(s * k) for s in shape))


def simulate(
    out: str | os.PathLike,
    *,
    preset: str = "demo",
    seed: int = 0,
    platforms_file=None,
    n_subjects: int | None = None,
    force: bool = False,
    quiet: bool = False,
    jobs: int | None = None,
    cohort: int | None = None,
    effect: float = 0.08,
    global_md_effect: float = DEFAULT_GLOBAL_MD_EFFECT,
) -> Path:
    """Generate a synthetic traveling-heads dataset (see the module docstring).

    Parameters
    ----------
    out
        The output folder; it must not exist or be empty, unless ``force``. It is built under a
        temporary name and moved into place at the end.
    preset
        ``tiny``, ``demo`` or ``mushac`` (:data:`mrharmony.simulate.params.PRESETS`).
    seed
        The seed of every random draw.
    platforms_file
        A platforms YAML (default: the packaged ``platforms.yaml``).
    n_subjects
        Override the preset's number of subjects.
    force
        Replace an existing non-empty ``out``.
    quiet
        No progress output.
    jobs
        Subjects rendered in parallel (default: the number of CPU cores, at most 4); the result
        does not depend on it.
    cohort
        Make a study cohort of this many subjects (at least 4, half of them patients) instead of
        the traveling heads; ``n_subjects`` does not apply.
    effect
        The patients' reduction of the intra-axonal fraction in the cohort's region, in (0, 0.3).
    global_md_effect
        The patients' rise of every tissue diffusivity, a fraction in [0, 0.5) (0: none).

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    InputError
        An unknown preset, a bad platforms file, settings out of range, or an existing non-empty
        ``out`` without ``force``: one sentence.
    """
    if cohort is not None:
        if n_subjects is not None:
            raise InputError("--subjects does not apply to a cohort; its size is --cohort.")
        if cohort < 4:
            raise InputError(f"a cohort needs at least 4 subjects (2 controls and 2 patients), not {cohort}.")
        if not 0.0 < effect < 0.3:
            raise InputError(f"the patients' effect on the intra-axonal fraction must be in (0, 0.3), not {effect}.")
        if not 0.0 <= global_md_effect < 0.5:
            raise InputError(
                "the patients' global rise of the diffusivities (--global-md-effect) must be in "
                f"[0, 0.5), not {global_md_effect}."
            )
        n_subjects = cohort
    if jobs is not None and jobs < 1:
        raise InputError(f"the number of processes (--jobs) must be at least 1, not {jobs}.")
    pre = pick_preset(PRESETS, preset, n_subjects)
    plats = load_platforms(platforms_file)
    geom = make_geometry(pre, plats)
    subjects = subject_names(pre.n_subjects)
    out = Path(out)
    with staged_output_dir(out, force=force) as tmp:
        design = None if cohort is None else cohort_design(subjects, effect, global_md_effect)
        run_subjects(tmp, subjects, seed, geom, plats, design, jobs=jobs, quiet=quiet, desc=f"simulate {preset}")
        spec = DatasetSpec(
            name=f"mrharmony-synthetic-{preset}" + ("-cohort" if design else ""),
            description=pre.description
            if not design
            else f"a study cohort of {len(subjects)} subjects (controls and patients) on the {preset} preset's field of view",
            platforms=[p.spec() for p in plats],
            subjects=subjects,
            generated_by={
                "name": "mrharmony simulate",
                "version": __version__,
                "preset": preset,
                "seed": seed,
                "simulator_version": SIMULATOR_VERSION,
            },
        )
        write_dataset_spec(tmp, spec)
        sim = {
            "mrharmony_version": __version__,
            "simulator_version": SIMULATOR_VERSION,
            "preset": pre.model_dump(mode="json"),
            "seed": seed,
            "fine_voxel_mm": FINE_VOXEL_MM,
            "platforms": [p.model_dump(mode="json") for p in plats],
        }
        if design:
            sim["cohort"] = design
            write_text(
                tmp / "participants.tsv",
                "participant_id\tgroup\n" + "".join(f"{s}\t{g}\n" for s, g in design["groups"].items()),
            )
        write_text(tmp / "simulation.yaml", dump_yaml(sim))
    return out


def run_subjects(
    root: Path,
    subjects: list[str],
    seed: int,
    geom: Geometry,
    plats: list[SimPlatform],
    design: dict | None,
    *,
    render: dict[str, list[str]] | None = None,
    jobs: int | None = None,
    quiet: bool = False,
    desc: str = "simulate",
) -> None:
    """Write every subject's truth and scans under ``root``, in parallel (``jobs`` processes, default
    the CPU cores, at most 4; the result does not depend on it). ``render``: per subject, the
    platforms it is scanned on (default: every one)."""
    fields = template_fields(geom.corner, geom.corner + np.asarray(geom.fine_shape) * FINE_VOXEL_MM)
    tasks = [
        (root, subject, i, seed, fields, geom, plats, design, None if render is None else render[subject])
        for i, subject in enumerate(subjects)
    ]
    total = sum(1 + (len(plats) if t[-1] is None else len(t[-1])) for t in tasks)
    progress = Progress(total=total, unit="scans", desc=desc, quiet=quiet)
    jobs = min(jobs or min(os.cpu_count() or 1, 4), len(tasks))
    if jobs > 1 and "fork" in multiprocessing.get_all_start_methods():
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            for n_done in pool.imap_unordered(_subject_task_single_thread, tasks):
                progress.update(n_done)
    else:
        for task in tasks:
            progress.update(_subject_task(task))
    progress.close()


def _subject_task(task) -> int:
    _simulate_subject(*task)
    return 1 + (len(task[6]) if task[-1] is None else len(task[-1]))


def _subject_task_single_thread(task) -> int:
    # one BLAS thread per worker process: the workers already use every core
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _subject_task(task)


def subject_names(n: int) -> list[str]:
    """The names :func:`simulate` gives its subjects.

    Parameters
    ----------
    n
        The number of subjects.

    Returns
    -------
    list of str
        ``sub-01``, ``sub-02``, ..., in the dataset's order.

    Examples
    --------
    >>> subject_names(3)
    ['sub-01', 'sub-02', 'sub-03']
    """
    return [f"sub-{i + 1:02d}" for i in range(n)]


def cohort_design(subjects: list[str], effect: float, global_md_effect: float = DEFAULT_GLOBAL_MD_EFFECT) -> dict:
    """The cohort's record in ``simulation.yaml``: groups (alternately control and patient), the
    region and the patients' change of the intra-axonal fraction there (``f_intra_change``), the
    patients' relative change of every tissue diffusivity (``global_md_change``: each is
    multiplied by ``1 + global_md_change``) and :data:`COHORT_VERSION`."""
    return {
        "groups": {s: ("control" if i % 2 == 0 else "patient") for i, s in enumerate(subjects)},
        "region": dict(COHORT_REGION),
        "f_intra_change": -float(effect),
        "global_md_change": float(global_md_effect),
        "cohort_version": COHORT_VERSION,
    }


def ageing(design: dict, subject: str) -> tuple[float, float]:
    """The ageing of a study's subject (``design["ageing"]`` and ``design["ages"]``): the factor on every
    tissue diffusivity and the change of the intra-axonal fraction, each linear in the decades past
    ``from_age``; (1, 0) for a subject without an age or a design without ageing."""
    rule, age = design.get("ageing"), (design.get("ages") or {}).get(subject)
    if not rule or age is None:
        return 1.0, 0.0
    decades = max(0.0, (float(age) - float(rule["from_age"])) / 10.0)
    return 1.0 + float(rule["diffusivity_per_decade"]) * decades, float(rule["f_intra_per_decade"]) * decades


def draw_index(index: int, design: dict | None = None) -> int:
    """The index that keys the random draws of the dataset's subject ``index`` (0-based): the
    index itself for the traveling heads, ``COHORT_INDEX_OFFSET + index`` in a cohort (``design``)."""
    return index + (COHORT_INDEX_OFFSET if design else 0)


def scan_seed(seed: int, index: int, platform_index: int, design: dict | None = None, session: int = 1) -> list[int]:
    """The seed of the generator that draws one scan's misregistration, bias field and noise: the
    dataset's seed, the subject's :func:`draw_index`, ``1 +`` the platform's index, and the
    session when it is a later one (stream 0 is the subject's anatomy and tissue)."""
    return [int(seed), draw_index(index, design), 1 + platform_index] + ([session] if session > 1 else [])


@dataclass
class _Subject:
    """What every scan of one subject shares: deformation, tissue properties, f_intra field, and
    for a cohort's patient the change of f_intra in the cohort's region and the factor on every
    tissue diffusivity."""

    warp: SubjectWarp
    tissue: TissueProperties
    fic_field: SubjectWarp
    change: float = 0.0
    region: dict | None = None
    diffusivity_scale: float = 1.0

    @classmethod
    def draw(cls, seed: int, index: int, geom: Geometry, design: dict | None = None, subject: str = "") -> _Subject:
        rng = np.random.default_rng([seed, draw_index(index, design), 0])
        lo = geom.corner
        hi = geom.corner + np.asarray(geom.fine_shape) * FINE_VOXEL_MM
        warp = SubjectWarp.random(rng, lo, hi)
        tissue = TissueProperties.random(rng)
        # spatially smooth variation of the intra-axonal fraction, +-0.06, moving with the anatomy
        fic_field = SubjectWarp.random(rng, lo, hi, amplitude_mm=1.0, spacing_mm=12.0)
        if design is None:
            return cls(warp, tissue, fic_field)
        scale, offset = ageing(design, subject)  # a study's people age (1, 0 in a cohort without ages)
        if offset:
            tissue = TissueProperties(**{**tissue.as_dict(), "f_intra": tissue.f_intra + offset})
        if design["groups"][subject] != "patient":
            return cls(warp, tissue, fic_field, 0.0, design["region"], scale)
        return cls(
            warp,
            tissue,
            fic_field,
            design["f_intra_change"],
            design["region"],
            scale * (1.0 + float(design.get("global_md_change", 0.0))),
        )

    def in_region(self, points: np.ndarray) -> np.ndarray:
        """Whether each point (3, N; scanner mm) lies in the cohort's region (template space)."""
        q = self.warp(points)
        centre = np.asarray(self.region["centre_mm"], float)[:, None]
        return np.sum((q - centre) ** 2, axis=0) <= float(self.region["radius_mm"]) ** 2

    def f_intra(self, points: np.ndarray) -> np.ndarray:
        f = self.fic_field
        grid = (points - f.disp_origin[:, None]) / f.disp_spacing
        mod = ndimage.map_coordinates(f.disp[0], grid, order=1, mode="nearest")
        fic = self.tissue.f_intra + 0.06 * mod
        if self.change:
            fic = fic + self.change * self.in_region(points)
        return np.clip(fic, 0.3, 0.8).astype(np.float32)


def _simulate_subject(
    root: Path,
    subject: str,
    index: int,
    seed: int,
    fields,
    geom: Geometry,
    plats: list[SimPlatform],
    design: dict | None,
    render: list[str] | None = None,
) -> None:
    """Write one subject's truth and its scans on ``plats`` (``render``: on the platforms of these
    names only; a study's subject is scanned at its own site)."""
    subj = _Subject.draw(seed, index, geom, design, subject)
    fine_affine, fine_shape = geom.grid(FINE_VOXEL_MM)
    # ground truth on the fine grid, without scan misregistration
    anat, pts = sample_anatomy(fields, subj.warp, fine_affine, fine_shape)
    truth_dir = root / "truth" / subject
    fic = subj.f_intra(pts).reshape(fine_shape) * (anat["wm"] > 0)
    tissue_maps = np.stack([anat["wm"], anat["gm"], anat["csf"], fic, anat["crossing"]], axis=-1)
    save_nifti(truth_dir / "tissue.nii.gz", tissue_maps, fine_affine)
    save_nifti(truth_dir / "fibres.nii.gz", np.concatenate([anat["fibre1"], anat["fibre2"]], axis=-1), fine_affine)
    if design:
        save_nifti(
            truth_dir / "region.nii.gz",
            subj.in_region(pts).reshape(fine_shape).astype(np.uint8),
            fine_affine,
            dtype=np.uint8,
        )
    info = {
        "subject": subject,
        "tissue_volumes": ["wm", "gm", "csf", "f_intra", "crossing"],
        "fibre_volumes": ["fibre1_x", "fibre1_y", "fibre1_z", "fibre2_x", "fibre2_y", "fibre2_z"],
        "tissue": subj.tissue.as_dict(),
        "size_scale": subj.warp.scale.tolist(),
        "restricted_diffusivities": {
            p.name: dict(zip(("axial", "radial"), restricted_diffusivities(subj.tissue, p, subj.diffusivity_scale)))
            for p in plats
        },
        "extra_axonal_radial_excess": {p.name: extra_radial_excess(p, subj.diffusivity_scale) for p in plats},
    }
    if design:
        info["group"] = design["groups"][subject]
        info["f_intra_change_in_region"] = subj.change
        info["diffusivity_scale"] = subj.diffusivity_scale
    write_text(truth_dir / "subject.yaml", dump_yaml(info))
    del anat, tissue_maps
    for j, plat in enumerate(plats):
        if render is None or plat.name in render:
            scan = _render_scan(np.random.default_rng(scan_seed(seed, index, j, design)), plat, fields, subj, geom)
            _write_scan(root / subject / plat.name, scan)


@dataclass
class RenderedScan:
    """One rendered scan: the DWI series (int16 scanner units, or float32 without noise), its
    brain mask, grid and gradient table."""

    dwi: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    bvals: np.ndarray
    bvecs: np.ndarray


def _simulation(dataset, subject: str):
    """What renders a subject of a simulated dataset again: (the simulation record, its file, the
    dataset's subjects in order, the platforms, the geometry, the cohort's or study's design or
    None); errors name the file."""
    from mrharmony.config import read_yaml
    from mrharmony.data.dataset import read_dataset_spec

    root = Path(dataset)
    sim_file = root / "simulation.yaml"
    if not sim_file.is_file():
        raise InputError("is missing; only datasets made by 'mrharmony simulate' can be rendered again.", sim_file)
    sim = read_yaml(sim_file)
    version = sim.get("simulator_version", 1)
    if version != SIMULATOR_VERSION:
        raise InputError(
            f"was made by simulator version {version}; this mrharmony renders version "
            f"{SIMULATOR_VERSION} only: simulate the dataset again.",
            sim_file,
        )
    design = sim.get("cohort")
    if design and design.get("cohort_version", 1) != COHORT_VERSION:
        raise InputError(
            f"describes a cohort of version {design.get('cohort_version', 1)}, whose scans this "
            f"mrharmony cannot render again (it renders version {COHORT_VERSION}): simulate the "
            "cohort again.",
            sim_file,
        )
    # a site study lists its people in the design; traveling heads and cohorts in dataset.yaml
    subjects = list(design["sites"]) if design and "sites" in design else read_dataset_spec(root).subjects
    if subject not in subjects:
        raise InputError(f"has no subject {subject!r}.", root)
    plats = [SimPlatform(**p) for p in sim["platforms"]]
    return (
        sim,
        sim_file,
        subjects,
        plats,
        make_geometry(Preset(**sim["preset"]), plats, sim.get("grid_voxel_mm")),
        design,
    )


def white_matter_regions(dataset: str | os.PathLike, subject: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The named white-matter regions (:data:`~mrharmony.simulate.params.WM_REGIONS`) of a simulated
    subject on the 1.2 mm simulation grid: (labels (0: none, i + 1: region i), the grid's affine,
    the regions' names). Each region is a sphere in template space carried by the subject's warp,
    as atlas regions are carried to a subject by registration."""
    sim, _, subjects, _, geom, design = _simulation(dataset, subject)
    subj = _Subject.draw(int(sim["seed"]), subjects.index(subject), geom, design, subject)
    affine, shape = geom.grid(FINE_VOXEL_MM)
    idx = np.indices(shape, dtype=np.float32).reshape(3, -1)
    points = affine[:3, :3] @ idx + affine[:3, 3:4]
    q = subj.warp(points)
    labels = np.zeros(q.shape[1], np.uint8)
    for i, r in enumerate(WM_REGIONS):
        inside = np.sum((q - np.asarray(r["centre_mm"], float)[:, None]) ** 2, axis=0) <= float(r["radius_mm"]) ** 2
        labels[inside & (labels == 0)] = i + 1
    return labels.reshape(shape), affine, [r["name"] for r in WM_REGIONS]


def render_scan(
    dataset: str | os.PathLike, subject: str, platform: str, *, noise: bool = True, session: int = 1
) -> RenderedScan:
    """Render one scan of a simulated dataset again from its ``simulation.yaml``.

    Parameters
    ----------
    dataset
        A dataset written by :func:`simulate` (of this simulator version).
    subject, platform
        The scan's subject and platform.
    noise
        True: the stored scan, reproduced exactly; False: the same scan without the noise (and
        without int16 rounding), the noiseless truth the harmonized prediction of a noisy target
        can be compared with.
    session
        2 (or more): another session of the same subject on the same platform, as a rescan: the
        same anatomy and tissue, a new draw of the head's small misregistration (the platform's),
        of the bias field and of the noise.

    Returns
    -------
    RenderedScan
        The DWI series (int16 scanner units, or float32 without noise), its brain mask, affine
        and gradient table.

    Raises
    ------
    InputError
        A dataset that is not simulated or of another simulator version, an unknown subject or
        platform, or a session below 1: one sentence naming the file.
    """
    sim, sim_file, subjects, plats, geom, design = _simulation(dataset, subject)
    names = [p.name for p in plats]
    if platform not in names:
        raise InputError(f"has no platform {platform!r}.", sim_file)
    fields = template_fields(geom.corner, geom.corner + np.asarray(geom.fine_shape) * FINE_VOXEL_MM)
    if not isinstance(session, int) or session < 1:
        raise InputError(f"has no session {session!r}; sessions are numbered from 1.", sim_file)
    index, j = subjects.index(subject), names.index(platform)
    subj = _Subject.draw(int(sim["seed"]), index, geom, design, subject)
    # session 1 is the stored scan (its generator's seed unchanged); a later session draws anew
    key = scan_seed(int(sim["seed"]), index, j, design, session)
    return _render_scan(np.random.default_rng(key), plats[j], fields, subj, geom, noise=noise)


def _render_scan(
    rng: np.random.Generator, plat: SimPlatform, fields, subj: _Subject, geom: Geometry, *, noise: bool = True
) -> RenderedScan:
    fine_affine, fine_shape = geom.grid(FINE_VOXEL_MM)
    affine, shape = geom.grid(plat.voxel_size[0])
    k = plat.fine_factor
    misreg = rigid(rng, plat.misregistration_mm, plat.misregistration_deg)
    tissue = subj.tissue
    anat, pts = sample_anatomy(fields, subj.warp, fine_affine, fine_shape, scan_rigid=misreg)
    inside = np.flatnonzero(anat["brain"].ravel() > 1e-3)
    flat = {
        key: anat[key].reshape(-1, *anat[key].shape[3:])[inside]
        for key in ("wm", "gm", "csf", "crossing", "fibre1", "fibre2", "radial")
    }
    bvals, bvecs = gradient_table(plat)
    # positions in the scanner frame (mm from the isocentre), where the gradient coil's non-linearity acts
    fine_pts = _world_coords_flat(fine_affine, fine_shape, inside) - geom.centre[None, :]
    sig = compartment_signal(
        flat,
        subj.f_intra(pts[:, inside]),
        tissue,
        plat,
        bvals,
        bvecs,
        positions_mm=fine_pts,
        diffusivity_scale=subj.diffusivity_scale,
    )
    del fine_pts
    brain_in = anat["brain"].ravel()[inside]
    wm_in = flat["wm"]
    del anat, pts, flat
    # scanner units: a white-matter b0 voxel (all white matter, mean properties) reads receiver_gain
    s0_wm = tissue.pd_wm * (
        tissue.f_intra * np.exp(-plat.te_ms / tissue.t2_intra)
        + (1 - tissue.f_intra) * np.exp(-plat.te_ms / tissue.t2_extra)
    )
    sig *= plat.receiver_gain / s0_wm
    sigma_psf = plat.psf_fwhm_mm / 2.3548 / FINE_VOXEL_MM

    def to_platform(values: np.ndarray) -> np.ndarray:
        fine = np.zeros(int(np.prod(fine_shape)), np.float32)
        fine[inside] = values
        fine = fine.reshape(fine_shape)
        if sigma_psf > 0:
            fine = ndimage.gaussian_filter(fine, sigma_psf, mode="constant")
        return fine.reshape(shape[0], k, shape[1], k, shape[2], k).mean(axis=(1, 3, 5))

    coords = np.indices(shape, dtype=np.float32)
    coords = np.tensordot(affine[:3, :3], coords, axes=1) + affine[:3, 3].reshape(3, 1, 1, 1)
    bias = bias_field(rng, plat, coords, geom.centre)
    del coords
    wm = to_platform(wm_in)
    brain = to_platform(brain_in)
    is_b0 = bvals <= 50
    clean_b0 = {v: to_platform(sig[:, v]) * bias for v in np.flatnonzero(is_b0)}
    b0 = np.mean(list(clean_b0.values()), axis=0)
    wm_vox = wm > WM_SNR_THRESHOLD
    ref = float(b0[wm_vox].mean()) if wm_vox.any() else float(b0[brain > 0.5].mean())
    sigma = ref / plat.snr
    # one volume at a time: memory stays at the size of the int16 series
    dwi = np.empty((*shape, len(bvals)), np.int16 if noise else np.float32)
    top = np.iinfo(np.int16).max
    for v in range(len(bvals)):
        clean = clean_b0.pop(v) if is_b0[v] else to_platform(sig[:, v]) * bias
        dwi[..., v] = np.clip(np.rint(magnitude_noise(rng, clean, sigma, plat.noise_coils)), 0, top) if noise else clean
    del sig
    mask = (brain >= 0.5).astype(np.uint8)
    return RenderedScan(dwi=dwi, mask=mask, affine=affine, bvals=bvals, bvecs=bvecs)


def _world_coords_flat(affine: np.ndarray, shape, flat_index: np.ndarray) -> np.ndarray:
    """Scanner coordinates (N, 3; mm) of the grid voxels with the given flat indices."""
    ijk = np.stack(np.unravel_index(flat_index, shape), axis=1).astype(np.float64)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def _write_scan(folder: Path, scan: RenderedScan) -> None:
    save_nifti(folder / "dwi.nii.gz", scan.dwi, scan.affine, dtype=np.int16)
    save_nifti(folder / "mask.nii.gz", scan.mask, scan.affine, dtype=np.uint8)
    write_gradients(folder / "dwi.bval", folder / "dwi.bvec", scan.bvals, scan.bvecs)
