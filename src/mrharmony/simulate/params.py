"""Parameters of the synthetic traveling heads: platforms (from YAML) and presets.

The platform file (``platforms.yaml`` beside this module is the default) describes each
scanner's signal signature; a preset sets the field of view and the number of subjects.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np
from pydantic import Field, model_validator

from mrharmony.config import StrictModel, load_yaml_model
from mrharmony.data.dataset import PlatformSpec
from mrharmony.errors import InputError

#: The simulation works on a fine grid with this voxel size; every platform's voxel size must
#: be a whole multiple of it (partial volume comes from averaging fine voxels).
FINE_VOXEL_MM = 1.2
GAMMA = 2.6752218744e8  # proton gyromagnetic ratio, rad/s/T
#: Where a simulated cohort's patients differ: a sphere in the right corona radiata (MNI mm),
#: inside the field of view of every preset.
COHORT_REGION = {"name": "right corona radiata", "centre_mm": [20.0, -15.0, 20.0], "radius_mm": 9.0}
#: Named white-matter regions, where studies report regional FA and MD (as atlas or skeleton regions
#: of the JHU atlas): spheres around approximate MNI centres, each carried to a subject by its warp
#: and kept where the subject has white matter. A region outside a preset's field of view is empty.
WM_REGIONS = (
    {"name": "genu of corpus callosum", "centre_mm": [0.0, 24.0, 10.0], "radius_mm": 7.0},
    {"name": "body of corpus callosum", "centre_mm": [0.0, -8.0, 24.0], "radius_mm": 7.0},
    {"name": "splenium of corpus callosum", "centre_mm": [0.0, -36.0, 12.0], "radius_mm": 7.0},
    {"name": "right corona radiata", "centre_mm": [20.0, -15.0, 20.0], "radius_mm": 9.0},
    {"name": "left corona radiata", "centre_mm": [-20.0, -15.0, 20.0], "radius_mm": 9.0},
    {"name": "right posterior limb of internal capsule", "centre_mm": [22.0, -14.0, 8.0], "radius_mm": 6.0},
    {"name": "left posterior limb of internal capsule", "centre_mm": [-22.0, -14.0, 8.0], "radius_mm": 6.0},
    {"name": "right superior longitudinal fasciculus", "centre_mm": [36.0, -30.0, 28.0], "radius_mm": 7.0},
    {"name": "left superior longitudinal fasciculus", "centre_mm": [-36.0, -30.0, 28.0], "radius_mm": 7.0},
)


class SimPlatform(PlatformSpec):
    """A platform with the parameters of its signal signature (``platforms.yaml`` beside this
    module describes each, with its sources).

    Besides the fields of :class:`~mrharmony.data.dataset.PlatformSpec` (isotropic voxels, a whole
    multiple of the simulation grid; one non-zero shell or several, each with ``n_directions``
    directions):

    Attributes
    ----------
    n_b0 : int
        b=0 volumes in the series.
    max_gradient_mt_m : float
        Gradient strength; sets the pulse timing of the highest shell (:meth:`pulse_timing`), which
        the lower shells share at weaker gradients.
    gap_ms : float
        Time between the two gradient pulses.
    snr : float
        Mean b=0 white-matter signal over the noise sigma of one channel, derived from the file's
        ``snr_reference`` (never set per platform).
    coil_sensitivity, n_averages, g_factor : float, int, float
        The terms of the SNR beside voxel volume and TE.
    noise_coils : int
        Coil channels combined by root sum of squares (1: Rician noise; N: non-central chi with
        2N degrees of freedom).
    gradient_nonlinearity : tuple of float
        Relative change of each gradient axis' strength at 100 mm from the isocentre.
    receiver_gain : float
        Scanner units of a white-matter b=0 voxel (stored as int16).
    b_scale : float
        Calibration of the gradient system: effective b = b * b_scale.
    psf_fwhm_mm : float
        Blur of the point-spread function before sampling at the voxel size.
    bias_linear, bias_radial
        The receive field: gradient along x, y, z (relative change per 100 mm) and brightening
        at 80 mm from the head centre.
    misregistration_mm, misregistration_deg : float
        Standard deviations of the residual translation and rotation of each scan.
    gradient_seed : int
        Seed of the platform's gradient directions (fixed per protocol).
    """

    n_b0: int = Field(ge=1)
    max_gradient_mt_m: float = Field(gt=0)
    gap_ms: float = Field(ge=0)
    snr: float = Field(gt=0, description="derived from the file's snr_reference (see PlatformsFile)")
    coil_sensitivity: float = Field(default=1.0, gt=0)
    n_averages: int = Field(default=1, ge=1)
    g_factor: float = Field(default=1.0, ge=1.0)
    noise_coils: int = Field(default=1, ge=1, le=64)
    gradient_nonlinearity: tuple[float, float, float] = (0.0, 0.0, 0.0)
    receiver_gain: float = Field(gt=0, le=20000)
    b_scale: float = Field(gt=0.5, lt=1.5)
    psf_fwhm_mm: float = Field(ge=0)
    bias_linear: tuple[float, float, float] = (0.0, 0.0, 0.0)
    bias_radial: float = 0.0
    misregistration_mm: float = Field(default=0.0, ge=0)
    misregistration_deg: float = Field(default=0.0, ge=0)
    gradient_seed: int = 0

    @model_validator(mode="after")
    def _grid(self) -> SimPlatform:
        if len(set(self.voxel_size)) != 1:
            raise ValueError("simulated platforms must have isotropic voxels")
        k = self.voxel_size[0] / FINE_VOXEL_MM
        if abs(k - round(k)) > 1e-6 or round(k) < 1:
            raise ValueError(f"voxel size must be a whole multiple of the simulation grid ({FINE_VOXEL_MM} mm)")
        shells = self.shells
        if not shells:
            raise ValueError("a platform needs a non-zero shell")
        if len(shells) > 1 and min(np.diff(shells)) <= 100:
            raise ValueError("the shells of a platform must be more than 100 s/mm^2 apart")
        return self

    @property
    def shells(self) -> list[float]:
        """The non-zero shells, ascending."""
        return sorted(float(b) for b in self.bvalues if b > 50)

    @property
    def fine_factor(self) -> int:
        """Fine simulation voxels per platform voxel along each axis.

        Returns
        -------
        int
        """
        return int(round(self.voxel_size[0] / FINE_VOXEL_MM))

    def pulse_timing(self) -> tuple[float, float]:
        """Gradient pulse duration and separation, shared by every shell.

        Solves b = (gamma G delta)^2 (Delta - delta/3) with Delta = delta + gap for the highest
        shell at the platform's maximum gradient strength (stronger gradients give shorter
        pulses); lower shells keep the timing at weaker gradients, as scanners acquire them.

        Returns
        -------
        tuple of float
            delta and Delta, in seconds.
        """
        from scipy.optimize import brentq

        b = self.shells[-1] * 1e6  # s/mm^2 -> s/m^2
        gg = (GAMMA * self.max_gradient_mt_m * 1e-3) ** 2
        gap = self.gap_ms * 1e-3

        def f(delta: float) -> float:
            return gg * delta**2 * (delta + gap - delta / 3) - b

        delta = brentq(f, 1e-5, 1.0)
        return delta, delta + gap

    def spec(self) -> PlatformSpec:
        """The part that goes into ``dataset.yaml``.

        Returns
        -------
        PlatformSpec
        """
        return PlatformSpec(**{k: getattr(self, k) for k in PlatformSpec.model_fields})


class SNRReference(StrictModel):
    """The one acquisition every platform's SNR is derived from (see :meth:`PlatformsFile.derive_snr`)."""

    snr: float = Field(gt=0, description="mean b=0 white-matter signal over the noise sigma")
    voxel_size: float = Field(gt=0)
    te_ms: float = Field(gt=0)
    t2_wm_ms: float = Field(gt=0, description="white matter's T2, for the TE term")


def with_snr(ref: SNRReference, p):
    """A platform's entry (a dict) with its SNR derived from the reference acquisition ``ref``:
    ``snr = snr_ref (V / V_ref) exp(-(TE - TE_ref) / T2) c sqrt(NEX) / g``; an entry that is not a
    dict, or lacks what the SNR needs, as it is (its own validation names what is missing)."""
    if not isinstance(p, dict):
        return p
    try:
        voxel = float(np.prod(np.broadcast_to(np.asarray(p["voxel_size"], float), 3)))
        factor = (
            voxel
            / ref.voxel_size**3
            * np.exp(-(float(p["te_ms"]) - ref.te_ms) / ref.t2_wm_ms)
            * float(p.get("coil_sensitivity", 1.0))
            * np.sqrt(float(p.get("n_averages", 1)))
            / float(p.get("g_factor", 1.0))
        )
    except (KeyError, TypeError, ValueError):
        return p
    return {**p, "snr": round(float(ref.snr * factor), 3)}


class PlatformsFile(StrictModel):
    snr_reference: SNRReference
    platforms: list[SimPlatform] = Field(min_length=2)

    @model_validator(mode="before")
    @classmethod
    def derive_snr(cls, data):
        """Each platform's SNR from the reference: voxel volume, TE (white matter's T2), coil
        sensitivity, averages and g-factor, ``snr = snr_ref (V / V_ref) exp(-(TE - TE_ref) / T2)
        c sqrt(NEX) / g``; a platform entry does not set ``snr`` itself."""
        if not isinstance(data, dict) or not isinstance(data.get("snr_reference"), dict):
            return data
        ref = SNRReference(**data["snr_reference"])
        plats = []
        for i, p in enumerate(data.get("platforms") or []):
            if isinstance(p, dict) and "snr" in p:
                raise ValueError(
                    f"platform {i} sets 'snr', which is derived from snr_reference; set its "
                    "coil_sensitivity, n_averages or g_factor instead"
                )
            plats.append(with_snr(ref, p))
        return {**data, "platforms": plats}

    @model_validator(mode="after")
    def _roles(self) -> PlatformsFile:
        from mrharmony.data.dataset import DatasetSpec

        DatasetSpec(platforms=[p.spec() for p in self.platforms])  # same rules as dataset.yaml
        vin = self.platforms[[p.role for p in self.platforms].index("input")].voxel_size[0]
        for p in self.platforms:
            r = vin / p.voxel_size[0]
            if abs(r - round(r)) > 1e-6 or round(r) < 1:
                raise ValueError(f"platform {p.name!r}: the input's voxel size must be a whole multiple of its own")
        return self


#: the packaged platforms files, by name: ``mushac`` (the default; one shell, as in the MSP paper) and
#: ``multishell`` (b=1200 and 3000 on every platform)
PLATFORM_SETS = {"mushac": "platforms.yaml", "multishell": "platforms-multishell.yaml"}


def default_platforms_path(name: str = "mushac") -> Path:
    """The packaged platforms file ``name`` (:data:`PLATFORM_SETS`)."""
    return Path(str(resources.files("mrharmony.simulate") / PLATFORM_SETS[name]))


def load_platforms(path: str | os.PathLike | None = None) -> list[SimPlatform]:
    """Read a platforms file.

    Parameters
    ----------
    path
        A platforms YAML, or the name of a packaged one (:data:`PLATFORM_SETS`; default
        ``mushac``, the packaged ``platforms.yaml``).

    Returns
    -------
    list of SimPlatform
        Its platforms, each with its SNR derived from the file's ``snr_reference``.

    Raises
    ------
    InputError
        A file that cannot be read or is not a valid platforms file: one sentence naming the
        file and the key.
    """
    if path is None or str(path) in PLATFORM_SETS:
        path = default_platforms_path(str(path or "mushac"))
    return load_yaml_model(PlatformsFile, path).platforms


class Preset(StrictModel):
    """Field of view (MNI mm, snapped to the input grid) and number of subjects."""

    name: str
    n_subjects: int = Field(ge=1)
    fov_min_mm: tuple[float, float, float]
    fov_max_mm: tuple[float, float, float]
    description: str = ""


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        n_subjects=3,
        fov_min_mm=(4.0, -30.0, 10.0),
        fov_max_mm=(33.0, -1.0, 29.0),
        description="3 subjects, a 29 x 29 x 19 mm block through the corona radiata: seconds, for tests",
    ),
    "demo": Preset(
        name="demo",
        n_subjects=6,
        fov_min_mm=(-70.0, -106.0, 8.0),
        fov_max_mm=(70.0, 72.0, 32.0),
        description="6 subjects, a 24 mm axial slab through the ventricles and centrum semiovale",
    ),
    "mushac": Preset(
        name="mushac",
        n_subjects=10,
        fov_min_mm=(-72.0, -108.0, -62.0),
        fov_max_mm=(72.0, 76.0, 84.0),
        description="10 subjects, whole brain, like the MUSHAC data of the MSP paper",
    ),
}


def pick_preset(presets: dict, name: str, n_subjects: int | None = None, *, kind: str = ""):
    """The preset ``name`` of ``presets``, with its number of subjects overridden when given."""
    if name not in presets:
        raise InputError(f"unknown {kind}preset {name!r}; choose one of {', '.join(presets)}.")
    pre = presets[name]
    if n_subjects is not None:
        if n_subjects < 1:
            raise InputError("the number of subjects must be at least 1.")
        pre = pre.model_copy(update={"n_subjects": n_subjects})
    return pre


def fov_grid(preset: Preset, input_voxel: float) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Origin (centre of the first input voxel's corner) and shape in input voxels of the FOV."""
    lo = np.asarray(preset.fov_min_mm, float)
    hi = np.asarray(preset.fov_max_mm, float)
    shape = np.maximum(np.ceil((hi - lo) / input_voxel).astype(int), 1)
    return lo, tuple(int(s) for s in shape)
