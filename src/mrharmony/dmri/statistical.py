"""The statistical harmonizers practice uses today, behind the same contract as the networks.

They work on the SH coefficients at their own scale (of the b0-normalized signal), not on the
normalized features: ``predict`` maps the input scan's features back to that scale, transforms them, and normalizes the result with the target platform's
training statistics (the ``target_stats`` of the reference), as the networks' outputs are
mapped back. For a 2x target the input coefficients are first interpolated linearly (inside
the mask) onto the target grid.

* ``none`` (:class:`IdentityHarmonizer`): the input coefficients taken as the target's, no
  harmonization.
* ``meanvar_global``: each SH channel of the scan standardized by its own brain mean and
  spread and given the target platform's mean and standard deviation (training subjects'
  average). By construction it replaces each person's brain-wide values with the training
  average (it does not keep what differs between people); it is the per-scan normalization of
  the MSP paper with no network.
* ``meanvar_voxel``: per voxel and channel, the mean and standard deviation of
  the input platform's coefficients across training subjects mapped onto the target's
  ("align the means and variances", voxelwise).
* ``rish``, linear RISH harmonization (Mirzaalian et al. 2016; Karayumak et al. 2019): the
  rotation-invariant energy of each SH order, E_l = sum_m c_lm^2, averaged over the training
  subjects in a common space for each platform; per order the scale map
  sqrt(E_l,target / E_l,input) multiplies the input's coefficients of that order.

The voxelwise methods learn their maps in a common space (:class:`CommonSpace`), which is
either the space of one training subject (the first), to which every training subject's input
scan is registered linearly (dipy; ``registration: affine`` by default, ``rigid``, or ``none``,
which takes world coordinates as aligned), or (``registration: syn``) a nonlinear template of the
training subjects' input l=0 maps, as the RISH reference pipeline builds one
(:mod:`mrharmony.template`: affine alignment, then ``template_rounds`` rounds of dipy's SyN with
``syn_level_iters`` iterations per level, each subject brought to the template by its own map).
A subject's target scans follow its input scan's transform (the platforms of a subject are
co-registered). Maps live on the input platform's grid (target scans are averaged down to it
first) and are smoothed by pooling the moments over a Gaussian neighbourhood
(``smoothing_fwhm_mm``). A new scan is registered to the common space (for ``syn``: affine,
then SyN to the template) and the maps are brought to its grid with the inverse transform; a
saved model holds the common space's image, mask and grid, so it applies without the training
data.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from mrharmony.config import StrictModel
from mrharmony.dmri.harmonizer import Harmonizer
from mrharmony.errors import InputError
from mrharmony.registration import SYN_LEVEL_ITERS


class RawSpaceHarmonizer(Harmonizer):
    """A harmonizer that maps SH coefficients at their own scale (see the module docstring)."""

    def __init__(
        self, *, targets, ratios, reference, name=None, meta: dict | None = None, settings: dict | None = None
    ):
        super().__init__(targets=targets, ratios=ratios, reference=reference, name=name)
        self.meta = meta
        self.settings = dict(settings or {})

    def predict(self, scan, *, region: np.ndarray | None = None) -> dict[str, np.ndarray]:
        from mrharmony.registration import upsample_masked

        if scan.stats is None:
            raise ValueError(f"{self.method} needs the input scan's channel statistics")
        mask = np.asarray(scan.mask, bool)
        raw = scan.raw()
        maps = self.scan_maps(raw, mask, scan)
        out = {}
        for t in self.targets:
            r = self.ratios[t]
            y = upsample_masked(self.transform(raw, mask, t, maps), mask, r)
            ts = self.reference["target_stats"][t]
            y = (y - np.asarray(ts["mean"], np.float32)) / np.asarray(ts["std"], np.float32)
            y[~self.target_mask(mask, t)] = 0.0
            out[t] = y.astype(np.float32)
        return out

    @classmethod
    def check_requirements(cls) -> None:
        """Fail with one sentence, before any work, where a package the method needs is missing."""

    def fit_maps(self, ds, subjects: list[str], *, quiet: bool = False) -> None:
        """Learn what the method needs from the training ``subjects`` (nothing for global methods)."""

    def scan_maps(self, raw: np.ndarray, mask: np.ndarray, scan):
        """What the transform needs of this scan (e.g. the learned maps on its grid); None if nothing."""
        return None

    def transform(self, raw: np.ndarray, mask: np.ndarray, target: str, maps) -> np.ndarray:
        """The target's coefficients on the input grid (before interpolation to the target grid)."""
        return raw

    # -- saving -------------------------------------------------------------------------------
    def _arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """NIfTI files to save: name -> (data, affine)."""
        return {}

    def save(self, directory: str | os.PathLike) -> Path:
        from mrharmony import FORMAT_VERSION, __version__
        from mrharmony.io import save_nifti, write_json

        directory = Path(directory)
        for name, (data, affine) in self._arrays().items():
            save_nifti(directory / f"{name}.nii.gz", data, affine)
        write_json(
            directory / "harmonizer.json",
            {
                "format_version": FORMAT_VERSION,
                "mrharmony_version": __version__,
                "method": self.method,
                "targets": self.targets,
                "ratios": self.ratios,
                "reference": self.reference,
                "settings": self.settings,
                "meta": self.meta,
                "files": sorted(self._arrays()),
            },
        )
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> RawSpaceHarmonizer:
        from mrharmony.data.images import read_float32, read_image
        from mrharmony.dmri.config import absolute_paths

        directory = Path(directory)
        d = json.loads((directory / "harmonizer.json").read_text())
        arrays = {}
        for name in d.get("files", []):
            path = directory / f"{name}.nii.gz"
            if not path.is_file():
                raise InputError("is missing from the saved harmonizer.", path)
            img = read_image(path)
            arrays[name] = (read_float32(img, path), img.affine)
        meta = absolute_paths(d["meta"], directory) if d.get("meta") else None
        h = cls(
            targets=d["targets"],
            ratios={t: int(r) for t, r in d["ratios"].items()},
            reference=d["reference"],
            name=(d.get("meta") or {}).get("label"),
            meta=meta,
            settings=d.get("settings") or {},
        )
        h._restore(arrays)
        return h

    def _restore(self, arrays: dict) -> None:
        pass


class IdentityHarmonizer(RawSpaceHarmonizer):
    """No harmonization: the input scan's coefficients taken as the target's.

    The reference row of every evaluation table: a method that does not beat it does harm.
    """

    method = "none"


class GlobalMeanVariance(RawSpaceHarmonizer):
    """Each SH channel standardized over the scan's mask and given the target platform's mean and std."""

    method = "meanvar_global"

    def scan_maps(self, raw, mask, scan):
        from mrharmony.dmri.features.normalization import ChannelStats

        return ChannelStats.fit(raw, mask)  # standardized with the scan's own statistics, as the method does

    def transform(self, raw, mask, target, maps):
        ts = self.reference["target_stats"][target]
        z = (raw - maps.mean) / maps.std
        return z * np.asarray(ts["std"], np.float32) + np.asarray(ts["mean"], np.float32)


#: Recent registrations of scans to a common space: (digest of both images, settings) -> warp.
_REGISTRATIONS: dict[tuple[str, str], object] = {}


@dataclass
class CommonSpace:
    """The space in which voxelwise maps are learned: the reference subject's input-platform
    space (``registration``: ``affine``, ``rigid`` or ``none``) or the template of the training
    subjects (``syn``), with its image, brain mask and grid.

    A scan meets the space through a :class:`~mrharmony.registration.Warp` from the space onto
    the scan: a world matrix (linear registration to the image) or, for ``syn``, an affine
    pre-alignment and a SyN map to the template.
    """

    image: np.ndarray  # the l=0 coefficient map inside the mask (the reference's, or the template's)
    mask: np.ndarray
    affine: np.ndarray
    registration: str
    level_iters: tuple[int, ...] = SYN_LEVEL_ITERS  # SyN's iterations per level (``syn``)

    def transform(self, image: np.ndarray, affine: np.ndarray):
        """The :class:`~mrharmony.registration.Warp` space -> scan of a scan's l=0 map ``image``
        (the identity for the space's own image).

        Registration is deterministic, so its result is kept for the last few (space, scan)
        pairs: the harmonizers that share a space (voxelwise mean/variance, RISH, ComBat fitted
        on the same subjects) register a scan once.
        """
        import hashlib

        from mrharmony.registration import Warp, register, register_syn

        if image.shape == self.image.shape and np.allclose(affine, self.affine) and np.array_equal(image, self.image):
            return Warp(np.eye(4))
        digest = hashlib.sha1()
        for a in (self.image, self.affine, image, affine):
            a = np.ascontiguousarray(a)
            digest.update(str((a.shape, a.dtype)).encode())
            digest.update(a.tobytes())
        key = (digest.hexdigest(), f"{self.registration} {tuple(self.level_iters)}")
        if key not in _REGISTRATIONS:
            if len(_REGISTRATIONS) >= 8:
                _REGISTRATIONS.pop(next(iter(_REGISTRATIONS)))
            if self.registration == "syn":
                _REGISTRATIONS[key] = register_syn(
                    self.image, self.affine, image, affine, kind="affine", level_iters=tuple(self.level_iters)
                )
            else:
                _REGISTRATIONS[key] = Warp(register(self.image, self.affine, image, affine, kind=self.registration))
        return _REGISTRATIONS[key]

    def to_reference(self, data, affine, warp) -> np.ndarray:
        """Data of a scan's space (3D or 4D, on the grid ``affine``) on the space's grid."""
        return warp.to_static(data, affine, self.image.shape, self.affine)

    def to_scan(self, data, shape, affine, warp) -> np.ndarray:
        """Data on the space's grid brought to the scan grid ``(shape, affine)``."""
        return warp.to_moving(data, self.affine, shape, affine)


class VoxelwiseHarmonizer(RawSpaceHarmonizer):
    """A harmonizer with maps learned in a :class:`CommonSpace` (voxelwise mean/variance, RISH)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.space: CommonSpace | None = None
        self.maps: dict[str, np.ndarray] = {}  # target -> (X, Y, Z, K) on the reference grid
        self.fallback: dict[str, np.ndarray] = {}  # target -> (K,) used outside the maps' support

    def scan_maps(self, raw, mask, scan):
        affine = scan.affine
        m = self.space.transform(raw[..., 0] * mask, affine)
        support = self.space.to_scan(self.space.mask.astype(np.float32), mask.shape, affine, m) > 0.5
        out = {}
        for t in self.targets:
            v = self.space.to_scan(self.maps[t], mask.shape, affine, m)
            v[~support] = self.fallback[t]
            out[t] = v
        return out

    def _arrays(self):
        arrays = {"space": (np.stack([self.space.image, self.space.mask.astype(np.float32)], -1), self.space.affine)}
        for t, v in self.maps.items():
            arrays[f"maps-{t}"] = (v, self.space.affine)
        return arrays

    def _restore(self, arrays):
        space, affine = arrays["space"]
        self.space = CommonSpace(
            image=space[..., 0], mask=space[..., 1] > 0.5, affine=affine, **space_settings(self.settings)
        )
        self.maps = {t: arrays[f"maps-{t}"][0] for t in self.targets}
        self.fallback = {t: np.asarray(v, np.float32) for t, v in self.settings.get("fallback", {}).items()}

    def fit_maps(self, ds, subjects: list[str], *, quiet: bool = False) -> None:
        from mrharmony.progress import Progress

        steps = 1  # per subject: its statistics; before them, for a syn template, its registrations
        if self.settings.get("registration") == "syn":
            steps += 1 + int(self.settings.get("template_rounds", 2))
        progress = Progress(
            total=steps * len(subjects),
            unit="steps" if steps > 1 else "subjects",
            desc=f"fit {self.method}",
            quiet=quiet,
        )
        self.learn(ds, subjects, progress)
        progress.close()

    def learn_study(self, study, data, source_subjects: list[str], target_subjects: list[str], progress) -> None:
        """Learn the maps from two sites' people of a multi-site study (:mod:`mrharmony.dmri.study_fit`)."""
        learn_site_maps(self, study, data, source_subjects, target_subjects, progress)

    def learn(self, ds, subjects: list[str], progress) -> None:
        """Learn the maps from the training subjects in the common space."""
        learn_moment_maps(self, ds, subjects, progress)

    def statistics(self, coeffs: np.ndarray) -> np.ndarray:
        """Per-voxel quantities averaged over subjects, (X, Y, Z, K)."""
        raise NotImplementedError

    def maps_from_means(self, mean_in: np.ndarray, mean_t: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class VoxelwiseMeanVariance(VoxelwiseHarmonizer):
    """Per voxel and channel: (c - mean_in) / std_in * std_target + mean_target, learned across subjects."""

    method = "meanvar_voxel"

    def statistics(self, coeffs):
        return np.concatenate([coeffs, coeffs * coeffs], axis=-1)

    def maps_from_means(self, mean_in, mean_t):
        c = mean_in.shape[-1] // 2
        out = []
        for m in (mean_in, mean_t):
            mu, sq = m[..., :c], m[..., c:]
            out += [mu, np.sqrt(np.maximum(sq - mu * mu, 0.0))]
        mu_in, sd_in, mu_t, sd_t = out
        # a channel's std is floored at a tenth of its median over the brain: no division by ~0
        floor = 0.1 * np.median(sd_in.reshape(-1, c)[sd_in.reshape(-1, c).sum(1) > 0], axis=0)
        sd_in = np.maximum(sd_in, floor)
        return np.concatenate([mu_in, sd_t / sd_in, mu_t], axis=-1).astype(np.float32)

    def transform(self, raw, mask, target, maps):
        v = maps[target]
        c = raw.shape[-1]
        return (raw - v[..., :c]) * v[..., c : 2 * c] + v[..., 2 * c :]


class LinearRISH(VoxelwiseHarmonizer):
    """Linear RISH: per-shell, per-order scale maps sqrt(E_l,target / E_l,input) multiply the input's
    coefficients of that shell and order (each input shell is matched to the target's of the same rank)."""

    method = "rish"

    def _groups(self, n_channels: int) -> np.ndarray:
        from mrharmony.dmri.features.sh import channel_groups

        return channel_groups(n_channels, int(self.reference["sh"]["sh_order_max"]))

    def statistics(self, coeffs):
        groups = self._groups(coeffs.shape[-1])
        return np.stack([(coeffs[..., groups == g] ** 2).sum(-1) for g in np.unique(groups)], axis=-1)

    def maps_from_means(self, mean_in, mean_t):
        eps = 1e-6 * np.median(mean_in[mean_in > 0]) if (mean_in > 0).any() else 1e-12
        scale = np.sqrt(np.where(mean_in > eps, mean_t / np.maximum(mean_in, eps), 1.0))
        return np.clip(scale, 0.05, 20.0).astype(np.float32)

    def transform(self, raw, mask, target, maps):
        groups = self._groups(raw.shape[-1])
        index = np.searchsorted(np.unique(groups), groups)
        return raw * maps[target][..., index]


def fit_statistical(cfg, out: str | os.PathLike, *, force: bool = False, quiet: bool = False) -> Path:
    """Fit the statistical harmonizer of a run config (:class:`~mrharmony.dmri.config.RunConfig`)
    into the run directory ``out``.

    The split is made as for the networks (same dataset, same split settings give the same test
    patches and subjects); the maps are learned on the subjects that hold no test data for a
    split by subject, and on every subject for the paper's split by patch, whose test patches lie
    between training patches of the same subjects (as they do for the networks).
    """
    from mrharmony import __version__
    from mrharmony.config import dump_yaml
    from mrharmony.dmri.card import training_card
    from mrharmony.dmri.config import (
        make_splits,
        resolved_config,
        target_platforms,
        write_split,
    )
    from mrharmony.dmri.harmonizer import platform_reference
    from mrharmony.dmri.patches import PatchSampler
    from mrharmony.engine.run import relative_path
    from mrharmony.io import staged_output_dir, write_text

    out = Path(out)
    model = cfg.model
    cls = model.harmonizer()
    cls.check_requirements()
    ds, targets, ratios = target_platforms(cfg.data)
    sampler = PatchSampler.from_dataset(ds, subjects=cfg.data.subjects, targets=targets, size=cfg.data.patch_size)
    splits = make_splits(sampler, cfg.data)
    subjects = list(sampler.subjects)
    del sampler
    fit_subjects = [s for s in subjects if s not in splits.test_subjects]
    meta = {
        "mrharmony_version": __version__,
        "model": model.model_dump(mode="json", exclude_unset=True),
        "data": cfg.data.model_dump(mode="json"),
        "targets": targets,
        "ratios": ratios,
        "input_platform": ds.input_platform.name,
        "fit_subjects": fit_subjects,
        **({"label": cfg.label} if cfg.label else {}),
        "card": training_card(
            cfg, ds, targets, fit_subjects, list(splits.test_subjects), variant=cfg.label or model.method, budget=None
        ),
    }
    reference = platform_reference(
        ds, targets, fit_subjects, normalization=cfg.data.normalization, denoise=cfg.data.denoise
    )
    h = cls(targets=targets, ratios=ratios, reference=reference, settings=model.settings())
    h.fit_maps(ds, fit_subjects, quiet=quiet)
    with staged_output_dir(out, force=force) as tmp:
        h.meta = {**meta, "data": {**meta["data"], "dataset": relative_path(meta["data"]["dataset"], out)}}
        h.save(tmp)
        write_text(tmp / "config.yaml", dump_yaml(resolved_config(cfg, out)))
        write_split(tmp / "split.json", splits, subjects)
    return out


def space_settings(settings: dict) -> dict:
    """The :class:`CommonSpace` settings of a harmonizer's saved settings (defaults for older models)."""
    return {
        "registration": settings.get("registration", "affine"),
        "level_iters": tuple(int(n) for n in settings.get("syn_level_iters", SYN_LEVEL_ITERS)),
    }


def subjects_in_reference(h: VoxelwiseHarmonizer, ds, subjects: list[str], progress):
    """For each training subject: its name, its input features (at their own scale), the
    :class:`~mrharmony.registration.Warp` common space -> subject and its brain on the space's
    grid. Sets ``h.space``: the first subject's input space, or (``registration: syn``) the
    template of the subjects' l=0 maps, to which each subject is brought by its own SyN map."""
    from mrharmony.dmri.features.prepare import load_features

    warps = None
    if h.settings["registration"] == "syn":
        warps = _template_space(h, ds, subjects, progress)
    for i, s in enumerate(subjects):
        f = load_features(ds, s, ds.input_platform.name, normalized=False, denoise=h.denoise)
        image = f.data[..., 0] * f.mask
        if warps is not None:
            w = warps[i]
        else:
            if i == 0:
                h.space = CommonSpace(image=image, mask=f.mask.copy(), affine=f.affine, **space_settings(h.settings))
            w = h.space.transform(image, f.affine)
        yield s, f, w, h.space.to_reference(f.mask.astype(np.float32), f.affine, w) > 0.5
        progress.update(1)


def _template_space(h: VoxelwiseHarmonizer, ds, subjects: list[str], progress) -> list:
    """Build the template of the subjects' input l=0 maps (inside their masks) as ``h.space``;
    each subject's warp template -> subject."""
    from mrharmony.dmri.features.prepare import load_features

    images, affines, masks = [], [], []
    for s in subjects:
        f = load_features(ds, s, ds.input_platform.name, normalized=False, denoise=h.denoise)
        images.append(f.data[..., 0] * f.mask)
        affines.append(f.affine)
        masks.append(f.mask)
        del f
    return build_space(h, images, affines, masks, progress)


def build_space(h: VoxelwiseHarmonizer, images: list, affines: list, masks: list, progress) -> list:
    """Build the template of l=0 maps (``images`` inside ``masks``, on the grids ``affines``) as
    ``h.space`` (:mod:`mrharmony.template`); each image's warp template -> image."""
    from mrharmony.template import build_template

    settings = space_settings(h.settings)
    t = build_template(
        images,
        affines,
        masks=masks,
        rounds=int(h.settings.get("template_rounds", 2)),
        level_iters=settings["level_iters"],
        prealign="affine",
        progress=progress,
    )
    h.space = CommonSpace(image=t.image, mask=t.mask, affine=t.affine, **settings)
    return t.warps


def learn_moment_maps(h: VoxelwiseHarmonizer, ds, subjects: list[str], progress) -> None:
    """The voxelwise maps of ``h`` from the means over subjects of its per-voxel statistics of the
    input and of each target, in the common space."""
    from mrharmony.dmri.features.prepare import load_features
    from mrharmony.registration import block_mean, scaled_affine, upsample_masked

    sums: dict[str, list] = {}
    for s, f, m, w_in in subjects_in_reference(h, ds, subjects, progress):
        stat_in: dict[int, np.ndarray] = {}
        for t in h.targets:
            ft = load_features(ds, s, t, normalized=False)
            r = h.ratios[t]
            if r not in stat_in:
                # the input as the transform sees it: interpolated onto the target's grid, whose
                # statistics (noise energy above all) differ from the input grid's
                stat = block_mean(h.statistics(upsample_masked(f.data, f.mask, r)), r)
                stat_in[r] = h.space.to_reference(stat, f.affine, m)
            # statistics of the target's own voxels, averaged over each input voxel's r^3 of them
            stat_t, coarse_mask = block_mean(h.statistics(ft.data), r), block_mean(ft.mask.astype(np.float32), r) > 0.5
            aff = scaled_affine(ft.affine, r)
            stat_t = h.space.to_reference(stat_t, aff, m)
            w = w_in & (h.space.to_reference(coarse_mask.astype(np.float32), aff, m) > 0.5)
            acc = sums.setdefault(t, [0.0, 0.0, 0.0, 0.0])
            acc[0] = acc[0] + stat_in[r] * w[..., None]
            acc[1] = acc[1] + stat_t * w[..., None]
            acc[2] = acc[2] + w.astype(np.float32)
            acc[3] = acc[2]  # one subject counts on both sides
    maps_from_sums(h, sums, len(subjects), len(subjects))


def maps_from_sums(h: VoxelwiseHarmonizer, sums: dict, n_in: int, n_target: int) -> None:
    """Set ``h``'s maps (and their brain-wide fallback) from the sums over subjects of its per-voxel
    statistics in the common space: per target ``[sum of the input's statistics, sum of the target's,
    input count, target count]`` (the counts per voxel, where each subject's brain covers it). A
    voxel covered by at least half the subjects of each side is in the maps' support; the sums and
    counts are smoothed (``smoothing_fwhm_mm``) before the means are taken."""
    sigma = h.settings["smoothing_fwhm_mm"] / 2.3548 / np.abs(np.diag(h.space.affine)[:3])
    fallback = {}
    for t, (s_in, s_t, n_i, n_t) in sums.items():
        support = (n_i >= max(1, n_in / 2)) & (n_t >= max(1, n_target / 2))
        ni, nt, si, st = (
            _smooth(v, sigma)
            for v in (n_i * support, n_t * support, s_in * support[..., None], s_t * support[..., None])
        )
        ok = (ni > 1e-3) & (nt > 1e-3)
        mean_in = np.where(ok[..., None], si / np.maximum(ni, 1e-3)[..., None], 0.0)
        mean_t = np.where(ok[..., None], st / np.maximum(nt, 1e-3)[..., None], 0.0)
        maps = h.maps_from_means(mean_in, mean_t)
        # outside the maps' support: the same mapping from the brain-wide means
        fallback[t] = h.maps_from_means(mean_in[support].mean(0)[None], mean_t[support].mean(0)[None])[0]
        maps[~(ok & h.space.mask)] = fallback[t]
        h.maps[t] = maps
    h.fallback = fallback
    h.settings["fallback"] = {t: v.tolist() for t, v in fallback.items()}


def people_in_space(h, study, groups: list[tuple[str, str, str]], progress):
    """Bring a study's people into one common space and yield, per person of ``groups`` (site,
    subject, denoising), its features (at their own scale), the warp space -> person and its brain in
    the space. Sets ``h.space``: the people's template with ``registration: syn`` (dipy's SyN), else
    the first person's space. One person's features are in memory at a time."""
    from mrharmony.dmri.features.prepare import load_features

    def features(i: int):
        site, subject, denoise = groups[i]
        return load_features(study, subject, site, normalized=False, denoise=denoise)

    # the l=0 maps that place everyone in the space
    images, affines, masks = [], [], []
    for i in range(len(groups)):
        f = features(i)
        images.append(f.data[..., 0] * f.mask)
        affines.append(f.affine)
        masks.append(f.mask)
    if h.settings["registration"] == "syn":
        warps = build_space(h, images, affines, masks, progress)
    else:
        h.space = CommonSpace(image=images[0], mask=masks[0].copy(), affine=affines[0], **space_settings(h.settings))
        warps = [h.space.transform(im, aff) for im, aff in zip(images, affines)]
    del images
    for i, w in enumerate(warps):
        f = features(i)
        yield f, w, h.space.to_reference(f.mask.astype(np.float32), f.affine, w) > 0.5
        progress.update(1)


def site_groups(data, source_subjects: list[str], target_subjects: list[str]) -> list[tuple]:
    """(site, subject, denoising) of the people a study's harmonizer learns from, the source's first."""
    return [(data.source, s, data.denoise) for s in source_subjects] + [
        (data.target, s, "none") for s in target_subjects
    ]


def learn_site_maps(h, study, data, source_subjects: list[str], target_subjects: list[str], progress):
    """The maps of a voxelwise harmonizer ``h`` from two sites' people: each site's mean statistics
    in their common space (:func:`people_in_space`) and the maps between the means
    (:func:`~mrharmony.dmri.statistical.maps_from_sums`)."""
    n_src = len(source_subjects)
    acc = [0.0, 0.0, 0.0, 0.0]  # sums of the source's and the target's statistics, their counts
    groups = site_groups(data, source_subjects, target_subjects)
    for i, (f, w, brain) in enumerate(people_in_space(h, study, groups, progress)):
        stat = h.space.to_reference(h.statistics(f.data), f.affine, w)
        side = 0 if i < n_src else 1
        acc[side] = acc[side] + stat * brain[..., None]
        acc[2 + side] = acc[2 + side] + brain.astype(np.float32)
    maps_from_sums(h, {data.target: acc}, n_src, len(target_subjects))


def _smooth(v: np.ndarray, sigma) -> np.ndarray:
    from scipy import ndimage

    if np.all(np.asarray(sigma) == 0):
        return v
    s = tuple(sigma) + ((0,) if v.ndim == 4 else ())
    return ndimage.gaussian_filter(v.astype(np.float32), s, mode="constant")


class StatisticalConfig(StrictModel):
    """The ``model`` section of a run that fits a statistical method (no settings of its own)."""

    method: str

    @classmethod
    def harmonizer(cls) -> type[RawSpaceHarmonizer]:
        """The harmonizer class this config fits."""
        raise NotImplementedError

    def settings(self) -> dict:
        """The method's settings as its saved harmonizer records them."""
        return self.model_dump(mode="json", exclude={"method"})


class NoneConfig(StatisticalConfig):
    method: Literal["none"]

    @classmethod
    def harmonizer(cls):
        return IdentityHarmonizer


class MeanVarGlobalConfig(StatisticalConfig):
    method: Literal["meanvar_global"]

    @classmethod
    def harmonizer(cls):
        return GlobalMeanVariance


class CommonSpaceConfig(StatisticalConfig):
    """Settings of the common space in which a method learns voxelwise maps."""

    registration: Literal["affine", "rigid", "none", "syn"] = Field(
        default="affine",
        description="how subjects meet: linear registration to the first training subject "
        "(affine, rigid; none takes world coordinates as aligned), or a nonlinear template of the training "
        "subjects, each brought to it by dipy's SyN after an affine pre-alignment (syn)",
    )
    template_rounds: int = Field(default=2, ge=1, le=10, description="syn: rounds of template construction")
    syn_level_iters: tuple[int, ...] = Field(
        default=SYN_LEVEL_ITERS,
        min_length=1,
        max_length=4,
        description="syn: SyN iterations per pyramid level, coarsest first",
    )

    @field_validator("syn_level_iters")
    @classmethod
    def _positive_iterations(cls, v):
        if any(n < 1 for n in v):
            raise ValueError("every level needs at least one iteration")
        return v


class VoxelwiseConfig(CommonSpaceConfig):
    """Settings of the methods whose maps are learned in a common space."""

    smoothing_fwhm_mm: float = Field(default=6.0, ge=0, description="smoothing of the maps")


class MeanVarVoxelConfig(VoxelwiseConfig):
    method: Literal["meanvar_voxel"]

    @classmethod
    def harmonizer(cls):
        return VoxelwiseMeanVariance


class RISHConfig(VoxelwiseConfig):
    method: Literal["rish"]

    @classmethod
    def harmonizer(cls):
        return LinearRISH
