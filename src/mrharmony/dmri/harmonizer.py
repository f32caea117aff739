"""The contract every harmonization method of mrharmony fulfils.

A :class:`Harmonizer` maps the normalized SH features of a scan on the input platform to those
of one or more target platforms:

* ``fit(...)`` learns the mapping from a traveling-heads dataset (deep methods: through the
  training engine, see :mod:`mrharmony.engine.loop` and :mod:`mrharmony.dmri.training`);
* ``predict(scan)`` takes the input scan's :class:`~mrharmony.dmri.features.prepare.ScanFeatures`
  (``data``: (X, Y, Z, C) normalized per channel inside ``mask`` with any ``stats``, which map
  it back to the coefficients' own scale; its ``affine`` and SH settings), scales it as the
  method was trained (:meth:`Harmonizer.scaled_input`) and returns ``{target: features}`` in
  the targets' normalized space, on each target's grid (r times finer for a 2x target, aligned
  with the input's), zero outside the (upsampled) mask; :meth:`Harmonizer.target_coefficients`
  maps them to the target platform's scale;
* ``save(dir)`` / ``load(dir)`` store and restore it, with its ``reference``: per target, the
  platform's feature scale (``target_stats``), its gradient table (``target_gradients``) and
  voxel size, and the SH settings of the features, which is what harmonizing a new scan needs
  (:mod:`mrharmony.dmri.apply`).

Evaluation, ``apply``, the report and the benchmarks use harmonizers only through this
interface.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np


class Harmonizer(ABC):
    """The contract of a dMRI harmonization method (see the module docstring).

    Parameters
    ----------
    targets
        The target platforms it predicts.
    ratios
        Per target, its voxels per input voxel along each axis (1, or 2 for a 2x finer target).
    reference
        What applying it to a new scan needs from the training data (:func:`platform_reference`).
    name
        Its row name in evaluation tables (default: its ``method``).

    Attributes
    ----------
    method : str
        Short name of the method (``diqt``, ``msp``, ``rish``, ...).
    predicts_sh : bool
        Whether :meth:`predict` gives SH features; False for the methods that harmonize DTI maps
        only (ComBat), which provide :meth:`predict_dti` and have no row in the patch table.
    targets, ratios, reference, name
        As given.
    """

    #: short name of the method (``diqt``, ``msp``, ``rish``, ...)
    method: str = "harmonizer"

    #: whether ``predict`` gives SH features; False for methods that harmonize DTI maps only
    #: (ComBat), which provide :meth:`predict_dti` and have no row in the patch table
    predicts_sh: bool = True
    #: the covariates of the person the model was made for (:meth:`for_person`); None: anyone's
    person: dict | None = None

    @property
    def covariates(self) -> list[str]:
        """The covariates (``age``, ``sex``, ``group``) a person harmonized with the model must give."""
        return []

    def for_person(self, covariates: dict | None, *, source=None) -> Harmonizer:
        """The model for a person with these covariates: itself for a method that uses none."""
        return self

    def __init__(self, *, targets: list[str], ratios: dict[str, int], reference: dict, name: str | None = None):
        self.targets = list(targets)
        self.ratios = dict(ratios)
        self.reference = reference
        self.name = name or self.method

    @property
    def denoise(self) -> str:
        """How the method denoises an input scan before its SH fit.

        Returns
        -------
        str
            A method of :mod:`mrharmony.dmri.features.denoise`, or ``none`` (also for models saved
            before the choice existed).
        """
        return self.reference.get("denoise") or "none"

    def input_features(self, ds, subject: str):
        """The prepared input-platform features of a subject as this method takes them.

        Parameters
        ----------
        ds
            The traveling-heads dataset (:class:`~mrharmony.data.dataset.TravelingHeads`), prepared.
        subject
            One of its subjects.

        Returns
        -------
        ScanFeatures
            The features of the subject's input scan, denoised first as the method's training
            denoised its input scans (:func:`~mrharmony.dmri.features.prepare.load_features`).
        """
        from mrharmony.dmri.features.prepare import load_features

        return load_features(ds, subject, ds.input_platform.name, denoise=self.denoise)

    @property
    def normalization(self) -> str:
        """How the method scales its input (:mod:`mrharmony.dmri.features.normalization`).

        Returns
        -------
        str
            ``platform`` or ``scan``; ``scan`` (the paper's per-scan scaling) for models saved
            before the choice existed.
        """
        return self.reference.get("normalization") or "scan"

    def scaled_input(self, scan):
        """A scan scaled as this method's training scaled its input platform's scans.

        Parameters
        ----------
        scan
            Its :class:`~mrharmony.dmri.features.prepare.ScanFeatures`, normalized in any way.

        Returns
        -------
        ScanFeatures
            The same scan scaled by the input platform's fixed statistics, or (``scan`` scheme)
            by the scan's own.
        """
        from mrharmony.dmri.features.normalization import ChannelStats

        if self.normalization == "scan":
            return scan.scaled(ChannelStats.fit(scan.raw(), np.asarray(scan.mask, bool)))
        return scan.scaled(ChannelStats.from_dict(self.reference["input_stats"]))

    @abstractmethod
    def predict(self, scan, *, region: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Normalized target features of one scan (see the module docstring).

        Parameters
        ----------
        scan
            The input scan's :class:`~mrharmony.dmri.features.prepare.ScanFeatures`, normalized
            in any way (the method scales it as it was trained: :meth:`scaled_input`).
        region
            The input voxels (X, Y, Z) where the prediction will be read (default: the scan's
            brain); a method may skip work elsewhere (the networks skip tiles without them) and
            may predict more.

        Returns
        -------
        dict of str to numpy.ndarray
            Per target, its features (rX, rY, rZ, C) in the target's normalized space on the
            target's grid, zero outside the (upsampled) mask.
        """

    def target_coefficients(self, y: np.ndarray, target: str, mask: np.ndarray | None = None) -> np.ndarray:
        """A prediction mapped back to the target platform's SH scale.

        Parameters
        ----------
        y
            Normalized features of ``target`` (a result of :meth:`predict`).
        target
            The target platform.
        mask
            Where the result is kept (default: everywhere); zero outside it.

        Returns
        -------
        numpy.ndarray
            The SH coefficients at the platform's scale, the shape of ``y``.
        """
        from mrharmony.dmri.features.normalization import ChannelStats

        st = self.reference["target_stats"][target]
        return ChannelStats(np.asarray(st["mean"], np.float32), np.asarray(st["std"], np.float32)).invert(y, mask)

    @abstractmethod
    def save(self, directory: str | os.PathLike) -> Path:
        """Write the harmonizer to a folder.

        Parameters
        ----------
        directory
            The folder to write.

        Returns
        -------
        pathlib.Path
            The path that :func:`mrharmony.dmri.loading.load_harmonizer` reads.
        """

    def predict_dti(
        self, scan, *, gradients: dict | None = None, pred: dict | None = None, masks: dict | None = None
    ) -> dict[str, tuple]:
        """DTI maps of the harmonized signal of one scan, per target, on the target's grid.

        Parameters
        ----------
        scan
            The input scan's :class:`~mrharmony.dmri.features.prepare.ScanFeatures`.
        gradients
            Target -> (bvals, bvecs), the gradient table the harmonized signal is written on
            (default: the platform's, from the reference).
        pred
            The result of :meth:`predict` for ``scan``, if at hand.
        masks
            Target -> the voxels to fit (default: the input's brain on the target grid); a method
            may give maps on more voxels than asked.

        Returns
        -------
        dict of str to tuple
            Per target, (FA, MD, DEC FA) of a DTI fit (dipy) of the harmonized signal
            (:meth:`dti_of`).
        """
        pred = self.predict(scan) if pred is None else pred
        return {
            t: self.dti_of(
                y, t, (masks or {}).get(t, self.target_mask(scan.mask, t)), gradients=(gradients or {}).get(t)
            )
            for t, y in pred.items()
        }

    def predict_kurtosis(
        self, scan, *, gradients: dict | None = None, masks: dict | None = None
    ) -> dict[str, np.ndarray]:
        """For a method that harmonizes maps rather than the signal (``predicts_sh`` False): its
        harmonized mean kurtosis per target that has it. Methods of the signal have none here: their
        kurtosis is that of a DKI fit of their signal, as every other map."""
        return {}

    def dti_of(self, y: np.ndarray, target: str, mask: np.ndarray, *, gradients: tuple | None = None) -> tuple:
        """DTI maps of normalized features of a target: the one path from features to DTI maps.

        The features are mapped to the platform's SH scale (:meth:`target_coefficients`), their
        signal is written on the target's gradient table and fitted with DTI (dipy) inside
        ``mask``. The evaluation puts every row through this path, the predictions as well as the
        target scan's own features (the reference) and the noiseless target's (the oracle), so
        that a perfect prediction scores 0.

        Parameters
        ----------
        y
            Normalized features of ``target`` (X, Y, Z, C).
        target
            The target platform.
        mask
            The voxels to fit (X, Y, Z).
        gradients
            (bvals, bvecs) to write the signal on (default: the platform's).

        Returns
        -------
        tuple of numpy.ndarray
            FA, MD (mm^2/s) and DEC FA (X, Y, Z, 3), zero outside ``mask``.
        """
        from mrharmony.dmri.features.dti import dti_from_sh

        bvals, bvecs = gradients or self.target_gradients(target)
        return dti_from_sh(self.target_coefficients(y, target, mask), bvals, bvecs, self.reference["sh"], mask)

    def target_gradients(self, target: str) -> tuple[np.ndarray, np.ndarray]:
        """The target platform's gradient table, from the training data.

        Parameters
        ----------
        target
            The target platform.

        Returns
        -------
        tuple of numpy.ndarray
            bvals (N,) and bvecs (N, 3).
        """
        g = self.reference["target_gradients"][target]
        return np.asarray(g["bvals"], float), np.asarray(g["bvecs"], float)

    def input_region(self, masks: dict[str, np.ndarray]) -> np.ndarray:
        """The input voxels whose prediction the given target voxels read.

        Parameters
        ----------
        masks
            Target -> a mask on the target's grid.

        Returns
        -------
        numpy.ndarray
            Boolean (X, Y, Z) on the input grid: the voxels that hold the masks' voxels, grown by
            one voxel (linear interpolation onto a finer grid reads each voxel's neighbours).
        """
        from scipy import ndimage

        from mrharmony.registration import block_mean

        region = None
        for t, m in masks.items():
            coarse = block_mean(np.asarray(m, np.float32), self.ratios[t]) > 0
            region = coarse if region is None else region | coarse
        return ndimage.binary_dilation(region, np.ones((3, 3, 3), bool))

    def target_mask(self, mask: np.ndarray, target: str) -> np.ndarray:
        """The input mask on a target's grid.

        Parameters
        ----------
        mask
            A mask (X, Y, Z) on the input grid.
        target
            The target platform.

        Returns
        -------
        numpy.ndarray
            Boolean (rX, rY, rZ): each input voxel becomes r^3 target voxels.
        """
        r = self.ratios[target]
        m = np.asarray(mask, bool)
        return m.repeat(r, 0).repeat(r, 1).repeat(r, 2) if r > 1 else m


def platform_reference(
    ds, targets: list[str], subjects: list[str], *, normalization: str = "platform", denoise: str = "none"
) -> dict:
    """What applying the model to a new scan needs from the training data, per target platform.

    ``normalization``: how the features were scaled (:mod:`mrharmony.dmri.features.normalization`);
    ``denoise``: how the input platform's scans were denoised before their SH fit
    (:mod:`mrharmony.dmri.features.denoise`; a new scan is denoised the same way);
    ``input_stats`` and ``target_stats``: each platform's fixed scale, the mean over training
    subjects of the per-scan channel means and stds (the input's scales a new scan under the
    ``platform`` scheme; a target's maps normalized predictions back to the platform's scale);
    ``target_gradients``: the platform's gradient table (of the first training subject), on
    which the harmonized signal is written; ``sh``: the SH settings of the features, with the
    input's ``shells`` (the ones a new scan's features are fitted on); ``input_protocol``: the
    input platform's shells, voxel size, number of directions and TE, which ``apply`` checks a new
    scan against. Every target needs as many shells as the input: the model maps each input shell
    to the target's shell of the same rank.
    """
    from mrharmony.dmri.features.normalization import platform_stats
    from mrharmony.dmri.features.prepare import feature_paths
    from mrharmony.errors import InputError

    inp = ds.input_platform
    stats, grads = {}, {}

    def sidecar(platform: str) -> dict:
        return json.loads(feature_paths(ds.root, subjects[0], platform)[1].read_text())

    own = sidecar(inp.name)
    # features prepared before multi-shell support hold one shell and do not list it
    shells = own.get("shells") or [float(max(inp.bvalues))]
    for t in targets:
        stats[t] = platform_stats(ds, t, subjects).to_dict()
        bvals, bvecs = ds.scan(subjects[0], t).gradients()
        grads[t] = {"bvals": bvals.tolist(), "bvecs": bvecs.tolist()}
        theirs = sidecar(t).get("shells") or [float(max(ds.platform(t).bvalues))]
        if len(theirs) != len(shells):
            raise InputError(
                f"has {len(theirs)} shells on target {t} but {len(shells)} on the input platform {inp.name}; "
                "a model maps each input shell to the target's shell of the same rank, so both need as many.",
                ds.root / "dataset.yaml",
            )
    sh = {**own["sh"], "shells": shells}
    protocol = {
        "platform": inp.name,
        "shells": shells,
        "voxel_size": list(inp.voxel_size),
        "n_directions": inp.n_directions,
        "te_ms": inp.te_ms,
    }
    return {
        "normalization": normalization,
        "denoise": denoise,
        "input_stats": platform_stats(ds, inp.name, subjects, denoise).to_dict(),
        "target_stats": stats,
        "target_gradients": grads,
        "sh": sh,
        "voxel_sizes": {t: list(ds.platform(t).voxel_size) for t in targets},
        "input_protocol": protocol,
    }
