"""Synthetic multi-site structural MRI: ``mrharmony simulate OUT --kind structural``.

Each subject is the MNI152 2009 anatomy (nilearn's GM, WM and brain maps; CSF the rest of the
brain) under its own smooth deformation and size, as in the dMRI generator, rendered on every
site (``sites.yaml``) on one common grid, so that the truth of a harmonization (the same
subject seen by the target site) is known. A site differs as scanners and sequences do: its
field strength and the pulse sequence of each modality (T1w: MPRAGE or spoiled gradient echo,
T2w: turbo spin echo, FLAIR: inversion recovery), whose signal equations
(:mod:`mrharmony.simulate.sequences`) give each tissue's signed signal from its T1, T2 and proton
density, which vary smoothly within each tissue and person (:func:`tissue_variation`), mixed over
each voxel's tissue fractions before the magnitude is taken (a site may instead give three
relative intensities, mixed linearly); a smooth receive bias field, Rician noise at its SNR,
its resolution (an anisotropic point-spread function), truncation ringing (k-space cut to a
fraction along each axis), an N/2 ghost along the phase-encoding axis, and the scale of the
stored values. Some sites have role ``unseen``: held out of training entirely.

Layout::

    ROOT/structural.yaml                  subjects, modalities, sites and their roles (mrharmony.data.structural)
    ROOT/simulation.yaml                  the preset, the seed and every site's parameters
    ROOT/<subject>/<site>/<modality>.nii.gz   T1w, T2w, FLAIR as the site stores them (float32)
    ROOT/<subject>/<site>/rescan/<modality>.nii.gz   a second session on the same site: new noise
                                          and receive field, the head moved a little (a floor)
    ROOT/<subject>/rescan_mask.nii.gz     the brain mask of the second session (the head moved)
    ROOT/<subject>/mask.nii.gz            the subject's brain mask (the same anatomy on every site)
    ROOT/truth/<subject>/tissue.nii.gz    CSF, GM, WM fractions on the common grid

``only_effect`` renders sites that differ in one effect alone (:data:`EFFECTS`; every other
parameter is the first site's), to measure what each harmonizer fixes of each effect.
:func:`atrophy` makes a subject's tissue maps more atrophied (less GM, larger ventricles), for
tests that a harmonizer keeps what differs between people.

Random draws come from generators seeded by ``(seed, subject index, stream)``: the same seed
gives the same files, whatever the number of subjects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from mrharmony.config import StrictModel, dump_yaml, load_yaml_model
from mrharmony.errors import InputError
from mrharmony.simulate.params import pick_preset
from mrharmony.simulate.sequences import RELAXATION, Sequence, tissue_signals
from mrharmony.simulate.sequences import contrast as sequence_contrast

TISSUES = ("csf", "gm", "wm")
MODALITIES = ("T1w", "T2w", "FLAIR")
#: the ways a site differs, and the site parameters each one is (``only_effect``)
EFFECTS: dict[str, tuple[str, ...]] = {
    "contrast": ("field_t", "t1w", "t2w", "flair", "scale"),
    "blur": ("blur_fwhm_mm",),
    "noise": ("snr",),
    "bias": ("bias",),
    "ringing": ("ringing",),
    "ghosting": ("ghosting",),
}
#: the head's movement between the two sessions of a rescan (standard deviations)
RESCAN_TRANSLATION_SD_MM = 0.5
RESCAN_ROTATION_SD_DEG = 0.5


#: a modality's contrast: a pulse sequence (its signal equation at the site's field strength), or
#: three relative intensities of CSF, GM and WM (the brightest 1)
Contrast = Sequence | tuple[float, float, float]


class StructuralSite(StrictModel):
    """One site's appearance of a brain (see ``sites.yaml``)."""

    name: str = Field(pattern=r"^[A-Za-z0-9]+$")
    role: Literal["train", "unseen"]
    field_t: float | None = Field(
        default=None, description="field strength in tesla (1.5 or 3): the tissues' relaxation times"
    )
    t1w: Contrast = Field(description="the T1w sequence, or relative intensities of CSF, GM, WM")
    t2w: Contrast | None = Field(default=None, description="the T2w sequence, or relative intensities")
    flair: Contrast | None = Field(default=None, description="the FLAIR sequence, or relative intensities")

    def contrast(self, modality: str) -> Contrast | None:
        """The modality's contrast as the site describes it (None: the site lacks the modality)."""
        return getattr(self, modality.lower())

    def intensities(self, modality: str) -> tuple[float, float, float] | None:
        """The relative magnitudes of pure CSF, GM and WM in a modality, the brightest 1."""
        c = self.contrast(modality)
        if isinstance(c, Sequence):
            return sequence_contrast(c, self.field_t or 0.0)
        return c

    @model_validator(mode="after")
    def _field_for_sequences(self) -> StructuralSite:
        if any(isinstance(self.contrast(m), Sequence) for m in MODALITIES):
            if self.field_t is None:
                raise ValueError("a contrast given as a sequence needs the site's field_t (1.5 or 3)")
            if float(self.field_t) not in RELAXATION:
                raise ValueError(f"field_t must be one of {', '.join(f'{b:g}' for b in RELAXATION)}")
        return self

    scale: float = Field(gt=0)
    snr: float = Field(gt=0)
    blur_fwhm_mm: tuple[float, float, float]
    bias: float = Field(ge=0)
    ringing: float = Field(gt=0, le=1, description="fraction of k-space kept along each axis")
    ghosting: float = Field(ge=0, lt=1)


class SitesFile(StrictModel):
    sites: list[StructuralSite] = Field(min_length=2)


class StructuralPreset(StrictModel):
    name: str
    n_subjects: int = Field(ge=1)
    voxel_mm: float = Field(gt=0)
    fov_min_mm: tuple[float, float, float]
    fov_max_mm: tuple[float, float, float]
    description: str = ""


STRUCTURAL_PRESETS: dict[str, StructuralPreset] = {
    "tiny": StructuralPreset(
        name="tiny",
        n_subjects=4,
        voxel_mm=2.0,
        fov_min_mm=(-40.0, -50.0, -10.0),
        fov_max_mm=(40.0, 30.0, 30.0),
        description="4 subjects, an 80 x 80 x 40 mm block at 2 mm: seconds, for tests",
    ),
    "small": StructuralPreset(
        name="small",
        n_subjects=4,
        voxel_mm=3.0,
        fov_min_mm=(-72.0, -108.0, -40.0),
        fov_max_mm=(72.0, 76.0, 60.0),
        description="4 subjects, the demo's field of view at 3 mm: a whole brain's outline in seconds, for tests",
    ),
    "demo": StructuralPreset(
        name="demo",
        n_subjects=8,
        voxel_mm=2.0,
        fov_min_mm=(-72.0, -108.0, -40.0),
        fov_max_mm=(72.0, 76.0, 60.0),
        description="8 subjects, the brain from the ventricles up at 2 mm",
    ),
    "1mm": StructuralPreset(
        name="1mm",
        n_subjects=8,
        voxel_mm=1.0,
        fov_min_mm=(-78.0, -112.0, -70.0),
        fov_max_mm=(78.0, 80.0, 90.0),
        description="8 subjects, whole brain at 1 mm (156 x 192 x 160), the resolution studies scan T1w at",
    ),
    "full": StructuralPreset(
        name="full",
        n_subjects=16,
        voxel_mm=1.5,
        fov_min_mm=(-72.0, -108.0, -62.0),
        fov_max_mm=(72.0, 76.0, 84.0),
        description="16 subjects, whole brain at 1.5 mm",
    ),
}


def default_sites_path() -> Path:
    return Path(__file__).with_name("sites.yaml")


def load_sites(path: str | os.PathLike | None = None) -> list[StructuralSite]:
    sites = load_yaml_model(SitesFile, path or default_sites_path()).sites
    names = [s.name for s in sites]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"names site {dup[0]!r} twice.", path or default_sites_path())
    return sites


def isolate_effect(sites: list[StructuralSite], effect: str) -> list[StructuralSite]:
    """Sites that differ from each other in one effect alone.

    Parameters
    ----------
    sites
        The sites (``sites.yaml``).
    effect
        One of :data:`EFFECTS`.

    Returns
    -------
    list of StructuralSite
        Each site with the first site's parameters except those of ``effect``, which stay its own.

    Raises
    ------
    InputError
        An unknown effect.
    """
    if effect not in EFFECTS:
        raise InputError(f"there is no site effect {effect!r}; the effects are {', '.join(EFFECTS)}.")
    first = sites[0].model_dump()
    own = EFFECTS[effect]
    return [
        StructuralSite(**{k: (v if k in own or k in ("name", "role") else first[k]) for k, v in s.model_dump().items()})
        for s in sites
    ]


def atrophy(
    tissue: np.ndarray, brain: np.ndarray, *, gm_loss: float = 0.1, ventricle_growth: float = 0.5
) -> np.ndarray:
    """A subject's tissue fractions with more atrophy: thinner cortex and larger ventricles.

    The cortex thins where it meets CSF: GM becomes CSF in proportion to the CSF around each
    voxel (a 1-voxel Gaussian neighbourhood), scaled so that ``gm_loss`` of all GM is lost; GM
    away from CSF keeps its fraction. The ventricles grow into the WM around them.

    Parameters
    ----------
    tissue
        CSF, GM and WM fractions (X, Y, Z, 3), as ``truth/<subject>/tissue.nii.gz`` holds them.
    brain
        The brain mask.
    gm_loss
        The share of the brain's GM that becomes CSF.
    ventricle_growth
        The share of the WM next to the ventricles (the CSF away from the brain's surface, one
        voxel around) that becomes CSF.

    Returns
    -------
    numpy.ndarray
        The new fractions; each voxel's sum is kept, and so is the brain.
    """
    from scipy import ndimage

    out = np.array(tissue, np.float32, copy=True)
    gm = out[..., 1]
    near_csf = ndimage.gaussian_filter(out[..., 0], 1.0) * gm
    scale = gm_loss * gm.sum() / max(float(near_csf.sum()), 1e-12)
    for _ in range(5):  # where a voxel would lose more than its GM, the rest is taken elsewhere
        moved = np.minimum(scale * near_csf, gm)
        scale *= gm_loss * gm.sum() / max(float(moved.sum()), 1e-12)
    out[..., 1] -= moved
    out[..., 0] += moved
    inner = ndimage.binary_erosion(np.asarray(brain, bool), iterations=3)
    ventricles = inner & (tissue[..., 0] > 0.5)
    rim = ndimage.binary_dilation(ventricles) & ~ventricles & inner
    grown = ventricle_growth * out[..., 2] * rim
    out[..., 2] -= grown
    out[..., 0] += grown
    return out


#: the spread (standard deviation of the log) of each tissue's T1 and proton density within one
#: person, and the length scale over which they vary
T1_SPREAD = 0.08
PD_SPREAD = 0.04
VARIATION_SCALE_MM = 20.0


def tissue_variation(rng: np.random.Generator, shape, voxel_mm: float) -> dict[str, dict[str, np.ndarray]]:
    """A person's smooth variation of each tissue's T1 and proton density within the tissue (deep
    grey matter and cortex, tracts and the rest of the white matter differ in myelin and water):
    ``{"t1": {tissue: factor}, "pd": {tissue: factor}}``, per voxel, each the exponential of an
    independent Gaussian field of standard deviation :data:`T1_SPREAD` (:data:`PD_SPREAD`) smoothed
    over :data:`VARIATION_SCALE_MM`. Sequences weigh T1 and proton density differently, so that two
    sites' intensities are not one function of each other."""
    from scipy import ndimage

    out: dict[str, dict[str, np.ndarray]] = {"t1": {}, "pd": {}}
    for what, spread in (("t1", T1_SPREAD), ("pd", PD_SPREAD)):
        for tissue in TISSUES:
            field = ndimage.gaussian_filter(
                rng.standard_normal(shape), VARIATION_SCALE_MM / voxel_mm / 2.0, mode="nearest"
            )
            out[what][tissue] = np.exp(spread * field / max(float(field.std()), 1e-12)).astype(np.float32)
    return out


def atrophy_pair(
    dataset,
    subject: str,
    site: str,
    *,
    modality: str = "T1w",
    gm_loss: float = 0.1,
    ventricle_growth: float = 0.5,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A simulated subject on one of its dataset's sites, and the same subject more atrophied.

    Both are rendered as the simulator renders the site (its parameters read from the dataset's
    ``simulation.yaml``), with the same noise, receive field and within-tissue variation, so that
    they differ in the atrophy (:func:`atrophy`) alone.

    Parameters
    ----------
    dataset
        A simulated structural dataset (folder or loaded).
    subject, site, modality
        What to render.
    gm_loss, ventricle_growth
        The atrophy (:func:`atrophy`).
    seed
        The seed of the noise, field and variation the two share.

    Returns
    -------
    tuple of numpy.ndarray
        The image before and after, the subject's brain mask and the images' affine.
    """
    from mrharmony.data.structural import load_structural, read_tissue

    ds = dataset if hasattr(dataset, "root") else load_structural(dataset)
    record = load_yaml_model(SimulationRecord, ds.root / "simulation.yaml")
    spec = next((s for s in record.sites if s.name == site), None)
    if spec is None:
        raise InputError(f"has no site {site!r}.", ds.root / "simulation.yaml")
    _, affine = ds.load_image(subject, site, modality)
    mask = ds.load_mask(subject)
    tissue = read_tissue(ds.truth_path(subject), mask.shape)
    voxel = float(np.cbrt(abs(np.linalg.det(affine[:3, :3]))))
    variation = tissue_variation(np.random.default_rng([seed, 1]), mask.shape, voxel)
    brain = mask.astype(np.float32)
    before, after = (
        render_site(np.random.default_rng([seed, 0]), spec, t, brain, voxel, modality, variation)
        for t in (tissue, atrophy(tissue, mask, gm_loss=gm_loss, ventricle_growth=ventricle_growth))
    )
    return before, after, mask, affine


class SimulationRecord(StrictModel, extra="ignore"):
    """What ``simulation.yaml`` records of the sites (the rest is read elsewhere)."""

    sites: list[StructuralSite]


def render_site(
    rng: np.random.Generator,
    site: StructuralSite,
    tissue: np.ndarray,
    brain: np.ndarray,
    voxel_mm: float,
    modality: str = "T1w",
    variation: dict[str, dict[str, np.ndarray]] | None = None,
) -> np.ndarray:
    """One site's image (``modality``) of a subject's tissue fractions (X, Y, Z, 3: CSF, GM, WM)
    inside ``brain``.

    A contrast given as a sequence sums each tissue's signed signal (at the site's field strength,
    each tissue's T1 and proton density varied as ``variation`` says: :func:`tissue_variation`) over the voxel's
    fractions, so that a voxel mixing a tissue before its inversion null with one after it is
    darker than either; the brightest pure tissue is 1. The point-spread function, truncation,
    ghost and receive field act on that signed signal, and the stored magnitude carries Rician
    noise. A contrast given as three intensities mixes them linearly.
    """
    from scipy import ndimage

    spec = site.contrast(modality)
    if isinstance(spec, Sequence):
        field_t = float(site.field_t or 0.0)
        pure = tissue_signals(spec, field_t)
        top = max(abs(float(pure[t])) for t in TISSUES)
        variation = variation or {}
        signals = tissue_signals(spec, field_t, t1_scale=variation.get("t1"))
        pd = variation.get("pd", {})
        img = (
            sum(
                tissue[..., k] * np.asarray(signals[t], np.float32) * pd.get(t, np.float32(1.0))
                for k, t in enumerate(TISSUES)
            )
            / top
        )
        img = np.asarray(img, np.float32)
    else:
        img = np.tensordot(tissue, np.asarray(spec, np.float32), axes=([-1], [0])).astype(np.float32)
    img *= brain
    sigma = np.asarray(site.blur_fwhm_mm) / 2.3548 / voxel_mm
    img = ndimage.gaussian_filter(img, sigma, mode="constant")
    if site.ringing < 1:  # truncation of k-space along each axis: Gibbs ringing at edges
        k = np.fft.fftn(img)
        for axis, n in enumerate(img.shape):
            f = np.abs(np.fft.fftfreq(n))
            keep = (f <= 0.5 * site.ringing).astype(np.float32)
            k *= keep.reshape([-1 if a == axis else 1 for a in range(3)])
        img = np.real(np.fft.ifftn(k)).astype(np.float32)
    if site.ghosting > 0:  # N/2 ghost along the phase-encoding axis (y)
        img = img + site.ghosting * np.roll(img, img.shape[1] // 2, axis=1)
    # smooth receive field: random low-order polynomial in log space
    coords = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in img.shape], indexing="ij"))
    c = rng.normal(0.0, 1.0, 9)
    log_bias = (
        c[0] * coords[0]
        + c[1] * coords[1]
        + c[2] * coords[2]
        + c[3] * coords[0] * coords[1]
        + c[4] * coords[1] * coords[2]
        + c[5] * coords[0] * coords[2]
        + c[6] * coords[0] ** 2
        + c[7] * coords[1] ** 2
        + c[8] * coords[2] ** 2
    ) / 3.0
    img *= np.exp(site.bias * log_bias).astype(np.float32)
    sigma_noise = 1.0 / site.snr  # the brightest tissue's intensity is 1
    re = img + sigma_noise * rng.standard_normal(img.shape, dtype=np.float32)
    im = sigma_noise * rng.standard_normal(img.shape, dtype=np.float32)
    return (np.sqrt(re * re + im * im) * site.scale).astype(np.float32)


def simulate_structural(
    out: str | os.PathLike,
    *,
    preset: str = "demo",
    seed: int = 0,
    sites_file=None,
    n_subjects: int | None = None,
    rescans: bool = True,
    only_effect: str | None = None,
    force: bool = False,
    quiet: bool = False,
) -> Path:
    """Generate the synthetic multi-site structural dataset in ``out`` (module docstring).

    Parameters
    ----------
    out
        The new dataset folder.
    preset
        One of :data:`STRUCTURAL_PRESETS`.
    seed
        The seed of every random draw.
    sites_file
        A sites file instead of the packaged ``sites.yaml``.
    n_subjects
        Subjects instead of the preset's number.
    rescans
        Render a second session of every subject on every site (``<site>/rescan/``).
    only_effect
        Sites that differ in this effect alone (:func:`isolate_effect`).
    force
        Replace an existing, non-empty ``out``.
    quiet
        No progress output.

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    from mrharmony import __version__
    from mrharmony.data.structural import (
        SiteSpec,
        StructuralSpec,
        write_structural_spec,
    )
    from mrharmony.io import save_nifti, staged_output_dir, write_text
    from mrharmony.progress import Progress
    from mrharmony.simulate.anatomy import SubjectWarp, rigid, sample_anatomy, template_fields

    pre = pick_preset(STRUCTURAL_PRESETS, preset, n_subjects, kind="structural ")
    sites = load_sites(sites_file)
    if only_effect is not None:
        sites = isolate_effect(sites, only_effect)
    # the modalities every site describes (T1w always)
    modalities = [m for m in MODALITIES if all(site.contrast(m) is not None for site in sites)]
    lo, hi = np.asarray(pre.fov_min_mm, float), np.asarray(pre.fov_max_mm, float)
    shape = tuple(int(s) for s in np.maximum(np.ceil((hi - lo) / pre.voxel_mm), 1).astype(int))
    affine = np.diag([pre.voxel_mm] * 3 + [1.0])
    affine[:3, 3] = lo + pre.voxel_mm / 2
    subjects = [f"sub-{i + 1:02d}" for i in range(pre.n_subjects)]
    with staged_output_dir(Path(out), force=force) as tmp:
        fields = template_fields(lo, hi)
        progress = Progress(
            total=len(subjects) * len(sites) * len(modalities) * (2 if rescans else 1),
            unit="images",
            desc=f"simulate structural {preset}",
            quiet=quiet,
        )
        for i, subject in enumerate(subjects):
            rng = np.random.default_rng([seed, i, 0])
            warp = SubjectWarp.random(rng, lo, hi)
            anat, _ = sample_anatomy(fields, warp, affine, shape)
            tissue = np.stack([anat[t] for t in TISSUES], axis=-1).astype(np.float32)
            brain = (anat["brain"] >= 0.5).astype(np.float32)
            tissue *= brain[..., None]
            save_nifti(tmp / "truth" / subject / "tissue.nii.gz", tissue, affine)
            save_nifti(tmp / subject / "mask.nii.gz", brain.astype(np.uint8), affine, dtype=np.uint8)
            variation = tissue_variation(np.random.default_rng([seed, i, 2]), shape, pre.voxel_mm)
            sessions = [("", tissue, brain, 0)]
            if rescans:  # the head moved a little: the anatomy sampled after a small rigid motion
                moved = rigid(np.random.default_rng([seed, i, 1]), RESCAN_TRANSLATION_SD_MM, RESCAN_ROTATION_SD_DEG)
                anat2, _ = sample_anatomy(fields, warp, affine, shape, scan_rigid=moved)
                brain2 = (anat2["brain"] >= 0.5).astype(np.float32)
                tissue2 = np.stack([anat2[t] for t in TISSUES], axis=-1).astype(np.float32) * brain2[..., None]
                sessions.append(("rescan", tissue2, brain2, 1000))
                save_nifti(tmp / subject / "rescan_mask.nii.gz", brain2.astype(np.uint8), affine, dtype=np.uint8)
            for folder, tiss, mask, stream in sessions:
                for j, site in enumerate(sites):
                    for modality in modalities:  # T1w: stream 100 + j, T2w 200 + j, FLAIR 300 + j (+1000: rescan)
                        rng = np.random.default_rng([seed, i, stream + 100 * (MODALITIES.index(modality) + 1) + j])
                        img = render_site(rng, site, tiss, mask, pre.voxel_mm, modality, variation)
                        save_nifti(tmp / subject / site.name / folder / f"{modality}.nii.gz", img, affine)
                        progress.update(1)
        progress.close()
        write_structural_spec(
            tmp,
            StructuralSpec(
                kind="structural",
                subjects=subjects,
                modalities=modalities,
                sites=[SiteSpec(name=s.name, role=s.role) for s in sites],
                rescans=rescans,
                generated_by={"name": "mrharmony simulate", "version": __version__, "preset": preset, "seed": seed},
            ),
        )
        write_text(
            tmp / "simulation.yaml",
            dump_yaml(
                {
                    "mrharmony_version": __version__,
                    "preset": pre.model_dump(mode="json"),
                    "seed": seed,
                    "only_effect": only_effect,
                    "rescan_motion_sd": {
                        "translation_mm": RESCAN_TRANSLATION_SD_MM,
                        "rotation_deg": RESCAN_ROTATION_SD_DEG,
                    },
                    "sites": [s.model_dump(mode="json") for s in sites],
                }
            ),
        )
    return Path(out)
