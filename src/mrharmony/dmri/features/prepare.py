"""``mrharmony dmri prepare DATASET``: SH features of every scan, as BIDS-like derivatives.

For each scan it writes, under ``DATASET/derivatives/mrharmony-sh/<subject>/<platform>/``:

* ``<subject>_model-sh_desc-b0norm_dwimap.nii.gz``: float32 SH coefficients (X, Y, Z, 28 per
  shell) of the b0-normalized shells, one shell after another, zero outside the mask;
* the same name with ``.json``: the SH settings (basis, order, regularization), the shells fitted
  (``shells``, their mean b-values), the per-channel
  mean and std inside the mask (the scan's statistics: a platform's fixed scale is their average
  over training scans, the paper's per-scan normalization uses them alone; see
  :mod:`mrharmony.dmri.features.normalization`) and a fingerprint of the source files.

The features themselves are stored at their own scale: no normalization is baked into them,
so they serve every normalization scheme.

The folder gets a ``dataset_description.json`` (``DatasetType: derivative``). A scan whose
sources and settings have not changed since its features were written is skipped, so running
``prepare`` twice does no work the second time.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mrharmony import FORMAT_VERSION, __version__
from mrharmony.data.dataset import Scan, TravelingHeads, load_dataset
from mrharmony.data.images import read_float32, read_image
from mrharmony.data.study import STUDY_FILE, SiteStudy, load_study
from mrharmony.data.validate import check_overlap, check_scan_data
from mrharmony.dmri.features.normalization import ChannelStats, FeatureScaling
from mrharmony.dmri.features.paths import DERIVATIVE, feature_dir, feature_paths  # noqa: F401 (re-exported)
from mrharmony.dmri.features.sh import SHConfig, fit_sh, n_coefficients, select_shells
from mrharmony.errors import InputError
from mrharmony.io import check_format_version, save_nifti, write_derivative_description, write_json
from mrharmony.progress import Progress


def _fingerprint(scan: Scan) -> dict:
    out = {}
    for key, path in (("dwi", scan.dwi), ("bval", scan.bval), ("bvec", scan.bvec), ("mask", scan.mask)):
        if path is None:
            out[key] = None
            continue
        st = path.stat()
        entry = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        if st.st_size < 1 << 20:
            entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        out[key] = entry
    return out


def _is_current(root: Path, scan: Scan, cfg: SHConfig, denoise: str = "none") -> bool:
    nii, side = feature_paths(root, scan.subject, scan.platform.name, denoise)
    if not (nii.is_file() and side.is_file()):
        return False
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError):
        return False
    return meta.get("sh") == cfg.model_dump(mode="json") and meta.get("sources") == _fingerprint(scan)


@dataclass
class PrepareReport:
    """What ``prepare`` did: the scans it computed and those it found up to date."""

    computed: list[tuple[str, str]] = field(default_factory=list)
    cached: list[tuple[str, str]] = field(default_factory=list)
    out_dir: Path | None = None


def prepare(
    dataset: str | os.PathLike | TravelingHeads | SiteStudy,
    *,
    cfg: SHConfig | None = None,
    force: bool = False,
    quiet: bool = False,
    register: bool = False,
    denoise: str = "none",
) -> PrepareReport:
    """Compute the SH features of every scan of a traveling-heads dataset or of a multi-site study
    (a folder with ``study.yaml``, :mod:`mrharmony.data.study`; see module docstring).

    The whole dataset is validated first (headers of every scan, and the voxel data of every
    scan that needs work), so bad input stops the run before anything is written. With
    ``register``, target scans that are not co-registered with their subject's input scan are
    first registered to it (:mod:`mrharmony.dmri.register`). With ``denoise`` (``mppca``:
    :mod:`mrharmony.dmri.features.denoise`), the features of the input platform's scans denoised first are written
    beside the others (the targets stay as acquired: they are the truth); in a study, every scan's.
    """
    cfg = cfg or SHConfig()
    root = dataset.root if isinstance(dataset, (TravelingHeads, SiteStudy)) else Path(dataset)
    if register and (root / STUDY_FILE).is_file():
        raise InputError(
            "is a multi-site study: --register aligns one subject's scans of several platforms, and a "
            "study scans each person once.",
            root / STUDY_FILE,
        )
    if register:
        from mrharmony.dmri.register import register_to_input

        register_to_input(load_dataset(root, check_data=False, coregistered=False), quiet=quiet)
        dataset = root
    ds = dataset if isinstance(dataset, (TravelingHeads, SiteStudy)) else open_scans(dataset)
    # traveling heads: the input platform's scans are denoised (the targets are the truth); a
    # study: every site's, each harmonized in turn
    inp = ds.input_platform.name if isinstance(ds, TravelingHeads) else None
    scans = [s for s in ds.scans() if denoise == "none" or inp is None or s.platform.name == inp]
    todo = [s for s in scans if force or not _is_current(ds.root, s, cfg, denoise)]
    report = PrepareReport(out_dir=feature_dir(ds.root))
    report.cached = [(s.subject, s.platform.name) for s in scans if s not in todo]
    for scan in todo:  # voxel-level checks before any work
        check_scan_data(scan)
        select_shells(scan.gradients()[0], cfg, source=scan.bval)
        if isinstance(ds, TravelingHeads) and scan.platform.name != inp:
            check_overlap(ds.scan(scan.subject, inp), scan)
    _write_description(ds)
    progress = Progress(total=len(todo), unit="scans", desc="prepare", quiet=quiet)
    for scan in todo:
        _prepare_scan(ds, scan, cfg, denoise)
        report.computed.append((scan.subject, scan.platform.name))
        progress.update(1)
    progress.close()
    return report


def open_scans(root: str | os.PathLike) -> TravelingHeads | SiteStudy:
    """The folder's multi-site study (a ``study.yaml``) or traveling heads (a ``dataset.yaml``)."""
    return load_study(root) if (Path(root) / STUDY_FILE).is_file() else load_dataset(root, check_data=False)


def _write_description(ds: TravelingHeads | SiteStudy) -> None:
    path = feature_dir(ds.root) / "dataset_description.json"
    if path.exists():
        return
    write_derivative_description(path, name=f"SH features of {ds.spec.name}", description="mrharmony dmri prepare")


def _prepare_scan(ds: TravelingHeads | SiteStudy, scan: Scan, cfg: SHConfig, denoise: str = "none") -> None:
    from mrharmony.dmri.features.denoise import denoise_dwi

    dwi, affine = scan.load_dwi()
    mask = scan.load_mask()
    bvals, bvecs = scan.gradients()
    if denoise != "none":
        dwi = denoise_dwi(dwi, mask, denoise)
    coeffs = fit_sh(dwi, bvals, bvecs, mask, cfg, source=scan.bval)
    shells = [b for b, _ in select_shells(bvals, cfg, source=scan.bval)]
    del dwi
    stats = ChannelStats.fit(coeffs, mask)
    nii, side = feature_paths(ds.root, scan.subject, scan.platform.name, denoise)
    save_nifti(nii, coeffs, affine)
    mask_path = scan.mask
    if mask_path is None:  # computed (automatic_mask): kept with the features
        mask_path = nii.with_name(f"{scan.subject}_desc-brain_mask.nii.gz")
        save_nifti(mask_path, mask.astype(np.uint8), affine, dtype=np.uint8)
    write_json(
        side,
        {
            "format_version": FORMAT_VERSION,
            "generated_by": {"name": "mrharmony dmri prepare", "version": __version__},
            "Description": "real symmetric SH coefficients of the b0-normalized diffusion signal",
            "sh": cfg.model_dump(mode="json"),
            "denoise": denoise,
            "shells": shells,
            "n_coefficients": n_coefficients(cfg.sh_order_max) * len(shells),
            # the scan's own channel statistics: its per-scan normalization, and a platform's average
            "normalization": {"kind": "zscore-in-mask", **stats.to_dict()},
            "platform": scan.platform.name,
            "subject": scan.subject,
            "mask": os.path.relpath(mask_path, side.parent),
            "sources": _fingerprint(scan),
        },
    )


@dataclass
class ScanFeatures:
    """SH features of one scan as loaded for training or evaluation."""

    data: np.ndarray  # (X, Y, Z, C) float32; normalized with ``stats`` if ``normalized``, zero outside the mask
    mask: np.ndarray  # (X, Y, Z) bool
    affine: np.ndarray
    stats: ChannelStats
    sh: SHConfig
    normalized: bool = True

    @classmethod
    def own_scale(cls, coeffs: np.ndarray, mask: np.ndarray, affine: np.ndarray, sh: SHConfig) -> ScanFeatures:
        """Features of a scan's SH coefficients at their own scale (not normalized), with the scan's
        own statistics as ``stats``."""
        return cls(data=coeffs, mask=mask, affine=affine, stats=ChannelStats.fit(coeffs, mask), sh=sh, normalized=False)

    def raw(self) -> np.ndarray:
        """The SH coefficients at their own scale (of the b0-normalized signal)."""
        return self.stats.invert(self.data, self.mask) if self.normalized else self.data

    def scaled(self, stats: ChannelStats) -> ScanFeatures:
        """The same scan normalized with ``stats`` instead."""
        return ScanFeatures(
            data=stats.apply(self.raw(), self.mask), mask=self.mask, affine=self.affine, stats=stats, sh=self.sh
        )


def load_features(
    ds: TravelingHeads,
    subject: str,
    platform: str,
    *,
    normalized: bool = True,
    scaling: FeatureScaling | None = None,
    denoise: str = "none",
) -> ScanFeatures:
    """Read the features ``prepare`` wrote for one scan (``denoise``: of the scan denoised first):
    normalized (by default) with ``scaling`` (:class:`~mrharmony.dmri.features.normalization.
    FeatureScaling`; default: the scan's own statistics), or at their own scale; ``stats`` maps
    ``data`` back to that scale."""
    nii, side = feature_paths(ds.root, subject, platform, denoise)
    if not side.is_file() or not nii.is_file():
        remedy = "" if denoise == "none" else f" --denoise {denoise}"
        raise InputError(f"is missing; run 'mrharmony dmri prepare{remedy}' on the dataset first.", nii)
    try:
        meta = json.loads(side.read_text())
    except ValueError:
        raise InputError("is not valid JSON.", side) from None
    check_format_version(
        meta.get("format_version"),
        side,
        remedy="upgrade mrharmony or run 'prepare --force'",
        unversioned="run 'prepare --force' to write the features again",
    )
    img = read_image(nii)
    data = read_float32(img, nii)
    mask_file = side.parent / meta["mask"] if meta.get("mask") else None
    if mask_file is not None and mask_file.is_file():
        mimg = read_image(mask_file)
        mask = np.asanyarray(mimg.dataobj).reshape(mimg.shape[:3]) > 0
    else:
        mask = ds.scan(subject, platform).load_mask()
    stats = ChannelStats.from_dict(meta["normalization"])
    if scaling is not None:
        stats = scaling.stats(platform, stats, denoise)
    if normalized:
        data = stats.apply(data, mask)
    return ScanFeatures(
        data=data, mask=mask, affine=img.affine, stats=stats, sh=SHConfig(**meta["sh"]), normalized=normalized
    )
