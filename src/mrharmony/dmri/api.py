"""The dMRI wing in Python, for analyses in notebooks: :func:`fit` any method of the registry on
named training subjects, :func:`transform` a held-out subject's scan.

A fit is an ordinary run (the same run directory, config, split and saved model as
``mrharmony dmri train``), its run config built in memory: a split by subject whose held-out
subjects are the dataset's subjects not in ``train_subjects``. Everything the fit learns comes
from ``train_subjects`` alone: the platforms' feature scale, a statistical method's maps (RISH
templates, mean/variance maps), a network's training and validation patches. A fit is therefore
safe inside a cross-validation loop: a held-out subject's scans never change the fitted
harmonizer.

Examples
--------
>>> from mrharmony import dmri                                                     # doctest: +SKIP
>>> h = dmri.fit("rish", "study", train_subjects=["sub-01", "sub-02"], out="runs/rish")  # doctest: +SKIP
>>> maps = dmri.transform(h, "study", "sub-03")                                   # doctest: +SKIP
>>> maps["prisma"].fa.shape                                                        # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mrharmony.errors import InputError

if TYPE_CHECKING:  # numpy and the harmonizers load lazily: the command line imports this wing's package
    import numpy as np

    from mrharmony.dmri.harmonizer import Harmonizer

#: data settings that :func:`fit` sets from its own arguments
OWN_DATA_KEYS = ("dataset", "targets", "subjects", "split", "test_subjects", "n_test_subjects")


def fit(
    method: str,
    dataset: str | os.PathLike,
    *,
    train_subjects: Sequence[str],
    out: str | os.PathLike,
    targets: list[str] | None = None,
    preset: str | None = None,
    training: dict | None = None,
    data: dict | None = None,
    label: str | None = None,
    force: bool = False,
    quiet: bool = True,
    **settings,
) -> Harmonizer:
    """Fit a dMRI harmonization method on the training subjects of a traveling-heads dataset.

    Parameters
    ----------
    method
        Any method of :data:`mrharmony.dmri.registry.REGISTRY` (``rish``, ``diqt``, ``msp``, ...).
    dataset
        The dataset folder (holding ``dataset.yaml``); its SH features are prepared first where
        they are missing or out of date (:func:`mrharmony.dmri.features.prepare.prepare`).
    train_subjects
        The subjects to learn from: a non-empty list of distinct subjects of the dataset. The
        others are held out (the run's ``data.test_subjects``) and are not used by the fit.
    out
        The run directory to write (as ``mrharmony dmri train --out``).
    targets
        Target platforms (default: every target of the dataset; a single-target network such as
        DIQT needs one).
    preset
        ``paper``, ``demo`` or ``test``: the defaults of the training settings
        (:data:`mrharmony.dmri.config.PRESETS`); ``test`` trains a network in seconds.
    training
        Training settings (:class:`mrharmony.dmri.config.TrainingConfig`: ``epochs``, ``seed``,
        ...) over the preset's; networks only.
    data
        Other data settings (:class:`mrharmony.dmri.config.DataConfig`: ``patch_size``,
        ``normalization``, ``denoise``, ``split_seed``, ...), not those fit sets itself
        (:data:`OWN_DATA_KEYS`).
    label
        The run's row name in evaluation tables (default: the method).
    force
        Replace an existing run directory ``out``.
    quiet
        No progress output.
    **settings
        The method's own settings: the ``model`` section of a run config (for RISH
        ``registration``, ``smoothing_fwhm_mm``; for MSP ``first_stage_runs``; ...).

    Returns
    -------
    Harmonizer
        The fitted harmonizer, as :func:`mrharmony.dmri.loading.load_harmonizer` opens it from
        ``out``.

    Raises
    ------
    InputError
        A subject that the dataset lacks, an empty ``train_subjects``, an unknown method, preset
        or setting, a ``data`` key that fit sets itself, or several targets for a single-target
        network: one sentence.

    Examples
    --------
    >>> h = fit("diqt", "study", train_subjects=["sub-01", "sub-02"], targets=["prisma"],
    ...         out="runs/diqt", preset="test")                                  # doctest: +SKIP
    """
    from mrharmony.config import model_from_dict, resolve_paths
    from mrharmony.data import load_dataset
    from mrharmony.data.splits import training_subjects
    from mrharmony.dmri.config import PRESETS
    from mrharmony.dmri.features.prepare import prepare
    from mrharmony.dmri.loading import load_harmonizer
    from mrharmony.dmri.registry import REGISTRY
    from mrharmony.dmri.run_config import RunConfig
    from mrharmony.dmri.training import train

    chosen = REGISTRY.get(method)
    root = Path(dataset).resolve()
    ds = load_dataset(root, check_data=False)
    _, held_out = training_subjects(ds.subjects, train_subjects, source=root)
    data = dict(data or {})
    own = [k for k in data if k in OWN_DATA_KEYS]
    if own:
        raise InputError(
            f"data sets {own[0]!r}, which fit sets from its own arguments (dataset, train_subjects, targets)."
        )
    if preset is not None and preset not in PRESETS:
        raise InputError(f"preset {preset!r} is not one of {', '.join(PRESETS)}.")
    cfg = model_from_dict(
        RunConfig,
        {
            "preset": preset,
            "label": label,
            "data": {"dataset": str(root), "targets": targets, "split": "subject", "test_subjects": held_out, **data},
            "model": resolve_paths({"method": method, **settings}, chosen.config, Path.cwd()),
            "training": {**PRESETS.get(preset, {}), **(training or {})},
        },
    )
    if getattr(cfg.model, "single_target", False) and len(cfg.data.targets or ds.target_platforms) != 1:
        raise InputError(
            f"{method} predicts one target platform; pass targets=[NAME], NAME one of "
            f"{', '.join(p.name for p in ds.target_platforms)}."
        )
    prepare(root, quiet=quiet)
    if cfg.data.denoise != "none":
        prepare(root, quiet=quiet, denoise=cfg.data.denoise)
    train(cfg, out, force=force, quiet=quiet)
    return load_harmonizer(out)


@dataclass(frozen=True, eq=False)
class HarmonizedScan:
    """One scan harmonized to one target platform, on the target's grid.

    Attributes
    ----------
    fa, md, decfa
        Fractional anisotropy, mean diffusivity (mm^2/s) and direction-encoded colour FA
        (X, Y, Z, 3) of a DTI fit (dipy) of the harmonized signal on the target platform's
        gradient table; zero outside ``mask``.
    mask
        The input's brain on the target's grid (each input voxel r^3 target voxels).
    affine
        The target grid's affine (r times finer than the input's for a 2x target).
    sh
        The harmonized SH coefficients at the target platform's scale; None for the methods
        that harmonize the DTI maps only (ComBat).
    """

    fa: np.ndarray
    md: np.ndarray
    decfa: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    sh: np.ndarray | None = None


def transform(
    harmonizer: Harmonizer, dataset: str | os.PathLike, subject: str, *, targets: list[str] | None = None
) -> dict[str, HarmonizedScan]:
    """Harmonize a subject's scan on the input platform of a dataset (such as a subject held
    out of the fit).

    Parameters
    ----------
    harmonizer
        A fitted harmonizer (:func:`fit`, :func:`mrharmony.dmri.loading.load_harmonizer`).
    dataset
        The dataset folder.
    subject
        The subject whose input-platform scan is harmonized (its DWI series, gradient table and
        brain mask; no prepared features are needed).
    targets
        The target platforms (default: every target of the harmonizer).

    Returns
    -------
    dict of str to HarmonizedScan
        Per target platform, the harmonized scan.

    Raises
    ------
    InputError
        A dataset that does not load, a subject it lacks, a target the harmonizer does not
        predict, or a scan that cannot be harmonized (see :func:`transform_dwi`): one sentence
        naming the file.

    Examples
    --------
    >>> maps = transform(h, "study", "sub-03", targets=["prisma"])   # doctest: +SKIP
    >>> maps["prisma"].fa[maps["prisma"].mask].mean()                # doctest: +SKIP
    """
    from mrharmony.data import load_dataset
    from mrharmony.data.dataset import automatic_mask

    ds = load_dataset(Path(dataset), check_data=False)
    scan = ds.scan(subject, ds.input_platform.name)
    dwi, affine = scan.load_dwi()
    bvals, bvecs = scan.gradients()
    mask = automatic_mask(dwi, bvals) if scan.mask is None else scan.load_mask()
    return transform_dwi(harmonizer, dwi, bvals, bvecs, affine=affine, mask=mask, targets=targets, source=scan.dwi)


def transform_dwi(
    harmonizer: Harmonizer,
    dwi: np.ndarray,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    *,
    affine: np.ndarray,
    mask: np.ndarray | None = None,
    targets: list[str] | None = None,
    source: str | os.PathLike | None = None,
) -> dict[str, HarmonizedScan]:
    """Harmonize a DWI series given as arrays, as ``mrharmony dmri apply`` harmonizes a file
    (:func:`mrharmony.dmri.apply.harmonize_arrays`: SH fit, scaled as the method was trained,
    the method, back to the target platform's scale), and fit DTI to the result.

    Parameters
    ----------
    harmonizer
        A fitted harmonizer.
    dwi
        The DWI series on the input platform's protocol, (X, Y, Z, N).
    bvals, bvecs
        Its gradient table, (N,) and (N, 3).
    affine
        Its voxel-to-world affine.
    mask
        Its brain mask (X, Y, Z); default: computed from the b=0 volumes
        (:func:`mrharmony.data.dataset.automatic_mask`).
    targets
        The target platforms (default: every target of the harmonizer).
    source
        The file the arrays come from, named in errors.

    Returns
    -------
    dict of str to HarmonizedScan
        Per target platform, the harmonized scan.

    Raises
    ------
    InputError
        A target the harmonizer does not predict, a series that is not 4D or holds NaN or
        infinite values, a mask that is empty or not on the series' grid, or a gradient table
        without the model's shell: one sentence naming ``source``.
    """
    import numpy as np

    from mrharmony.data.dataset import automatic_mask
    from mrharmony.dmri.apply import harmonize_arrays
    from mrharmony.dmri.features.dti import dti_from_sh
    from mrharmony.registration import finer_affine

    targets = list(targets or harmonizer.targets)
    unknown = [t for t in targets if t not in harmonizer.targets]
    if unknown:
        raise InputError(f"the harmonizer predicts {', '.join(harmonizer.targets)}, not {unknown[0]!r}.", source)
    dwi = np.asarray(dwi, np.float32)
    if dwi.ndim != 4:
        raise InputError(f"the DWI series is {dwi.ndim}D with shape {dwi.shape}; it must be 4D.", source)
    if not np.all(np.isfinite(dwi)):
        raise InputError("the DWI series has NaN or infinite values.", source)
    bvals, bvecs = np.asarray(bvals, float), np.asarray(bvecs, float)
    mask = automatic_mask(dwi, bvals) if mask is None else np.asarray(mask, bool)
    if mask.shape != dwi.shape[:3] or not mask.any():
        raise InputError(f"the brain mask of shape {mask.shape} is empty or not the DWI's {dwi.shape[:3]}.", source)
    out = {}
    for t, res in harmonize_arrays(
        harmonizer, dwi, bvals, bvecs, mask, np.asarray(affine), targets=targets, source=source
    ).items():
        if "dti" in res:
            (fa, md, dec), sh = res["dti"], None
        else:
            sh = res["sh"]
            fa, md, dec = dti_from_sh(sh, *harmonizer.target_gradients(t), harmonizer.reference["sh"], res["mask"])
        out[t] = HarmonizedScan(
            fa=fa,
            md=md,
            decfa=dec,
            mask=res["mask"],
            sh=sh,
            affine=finer_affine(np.asarray(affine), harmonizer.ratios[t]),
        )
    return out
