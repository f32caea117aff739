"""The sections of a dMRI run config that every method shares (``data``, ``training``), and the
split they define; the whole run config, whose ``model`` section is one of the registry's
methods, is :mod:`mrharmony.dmri.run_config`.

A run is one YAML file (validated on load, unknown keys are errors)::

    preset: demo                 # paper | demo | test: defaults of the training section
    data:
      dataset: th-demo           # a prepared traveling-heads dataset
      targets: [connectom_sa]    # default: every target of the dataset
      patch_size: 11
      split: patch               # patch (the paper's 90/10) or subject (held-out subjects)
    model:
      method: diqt               # any method of the dMRI registry (mrharmony.dmri.registry)
    training:
      epochs: 8

The ``model`` section is the config model of its method (the registry's dMRI networks and
statistical methods); a key of another method's model is refused naming the method. Relative
paths (the dataset, MSP's first-stage runs) are taken from the config's folder, and recorded
relative to the run directory.

The split: test patches (by patch, or every patch of held-out subjects, from ``split_seed``)
are never used for training or validation; the validation patches are drawn from the rest.
Every method of a table shares it (same dataset and split settings give the same test set).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from mrharmony.config import StrictModel, map_paths, relative_paths, resolve_paths
from mrharmony.errors import InputError

PRESETS: dict[str, dict] = {
    # the MSP paper: minibatch 12, Adam, 1e-4 divided by sqrt(2) every 15 epochs, 50 epochs
    "paper": {"epochs": 50, "batch_size": 12, "learning_rate": 1e-4, "lr_decay_every": 15},
    # the demo: short CPU runs of any method of Table 1 (the demo's timing: docs/results.md, "The demo")
    "demo": {
        "epochs": 4,
        "batch_size": 12,
        "learning_rate": 1e-3,
        "lr_decay_every": 2,
        "patches_per_epoch": 1200,
        "validation_patches": 400,
    },
    "test": {
        "epochs": 2,
        "batch_size": 4,
        "learning_rate": 1e-3,
        "lr_decay_every": 1,
        "patches_per_epoch": 16,
        "validation_patches": 8,
    },
}


class DataConfig(StrictModel):
    """The ``data`` section of a dMRI run config: the dataset, the targets, the patches and the split.

    Attributes
    ----------
    dataset : str
        The prepared traveling-heads dataset folder (a path setting: taken from the config's folder).
    targets : list of str, optional
        The target platforms (default: every target of the dataset).
    subjects : list of str, optional
        The subjects to use (default: every subject of the dataset).
    patch_size : int
        The input patch's edge in voxels (11, as in the MSP paper).
    split : {'patch', 'subject'}
        ``patch``: the paper's split, a seeded random ``test_fraction`` of the patches;
        ``subject``: every patch of held-out subjects.
    test_fraction : float
        The share of test patches of the split by patch.
    test_subjects : list of str, optional
        The held-out subjects of the split by subject (default: ``n_test_subjects`` drawn).
    n_test_subjects : int
        How many subjects the split by subject draws when ``test_subjects`` names none.
    validation_fraction : float
        The share of the remaining patches drawn for validation (``validation: patch``).
    validation : {'patch', 'subject'}
        ``patch``: validation patches drawn among the training subjects' (the paper's);
        ``subject``: every patch of ``n_validation_subjects`` training subjects, held out of
        training.
    n_validation_subjects : int
        How many training subjects validate (``validation: subject``).
    split_seed : int
        The seed of the test and validation draws.
    normalization : {'platform', 'scan'}
        How features are scaled (:mod:`mrharmony.dmri.features.normalization`): by each
        platform's statistics fixed at training (the default), or each scan by its own (the MSP
        paper's; rows named ``<method>_scannorm``).
    denoise : {'none', 'mppca'}
        Denoising of the input platform's scans before their SH fit, in training and when the
        model is applied (:mod:`mrharmony.dmri.features.denoise`).
    """

    dataset: str = Field(json_schema_extra={"path": True})
    targets: list[str] | None = None
    subjects: list[str] | None = None
    patch_size: int = Field(default=11, ge=1)
    split: Literal["patch", "subject"] = "patch"
    test_fraction: float = Field(default=0.1, gt=0, lt=1)
    test_subjects: list[str] | None = None
    n_test_subjects: int = Field(default=1, ge=1)
    validation_fraction: float = Field(default=0.1, gt=0, lt=1)
    validation: Literal["patch", "subject"] = Field(
        default="patch",
        description="patch: validation patches drawn among the training subjects' (the paper's; "
        "they share the target scans' noise with neighbouring training patches); subject: every patch of "
        "n_validation_subjects training subjects, held out of training",
    )
    n_validation_subjects: int = Field(default=1, ge=1)
    split_seed: int = 0
    normalization: Literal["platform", "scan"] = Field(
        default="platform",
        description="platform: every scan of a platform scaled by statistics fixed at training "
        "(the mean of its training scans' channel means and stds), so that what differs between people survives; "
        "scan: the MSP paper's per-acquisition normalization, each scan standardized by its own statistics, which "
        "replaces every brain-wide property of a person with the training average (rows named <method>_scannorm)",
    )
    denoise: Literal["none", "mppca"] = Field(
        default="none",
        description="denoise the input platform's scans (dipy) before their SH fit, in training and "
        "when the model is applied ('mrharmony dmri prepare --denoise' writes those features); the targets stay as acquired",
    )


class StudyDataConfig(StrictModel):
    """The ``data`` section of a run that learns from a multi-site study (:mod:`mrharmony.dmri.study_fit`).

    Attributes
    ----------
    study : str
        The prepared study folder (:mod:`mrharmony.data.study`; a path setting).
    source, target : str
        The site whose people are harmonized, and the site they are harmonized to.
    controls : int, optional
        The controls of each site the maps learn from: the first in ``participants.tsv`` (None: all).
    people : {'controls', 'everyone'}
        Whom the maps learn from: the ``controls`` of each site, or everyone of the two sites
        (patients included; for ComBat with ``group`` among its covariates, which protect the
        diagnosis effect).
    denoise : {'none', 'mppca'}
        Denoising of the source site's scans before their SH fit, in training and when the model is applied.
    """

    study: str = Field(json_schema_extra={"path": True})
    source: str
    target: str
    controls: int | None = Field(default=16, ge=2)
    people: Literal["controls", "everyone"] = "controls"
    denoise: Literal["none", "mppca"] = "none"


#: data settings that choose validation patches only: runs that differ in them share their test split
VALIDATION_KEYS = ("validation_fraction", "validation", "n_validation_subjects")
#: data settings that leave the split alone (how features are scaled): runs that differ in them are compared
SCALING_KEYS = ("normalization", "denoise")


def comparable_data(section: dict) -> dict:
    """A run's data section as runs are compared: do they share the dataset and test split?

    Parameters
    ----------
    section
        A ``data`` section as a run records it.

    Returns
    -------
    dict
        The section with its targets, validation settings (:data:`VALIDATION_KEYS`) and scaling
        settings (:data:`SCALING_KEYS`) left out, and settings added since the run was made at
        their defaults.
    """
    filled = DataConfig(**section).model_dump(mode="json")
    filled["dataset"] = section["dataset"]  # as recorded (relative to the run), not re-resolved
    return {k: v for k, v in filled.items() if k != "targets" and k not in VALIDATION_KEYS + SCALING_KEYS}


def test_subjects_of(data: DataConfig, subjects: list[str], *, source=None) -> list[str]:
    """The held-out subjects of a run's split, from the subjects' names alone.

    Parameters
    ----------
    data
        The run's data section.
    subjects
        The dataset's subjects.
    source
        The file named in errors (the config).

    Returns
    -------
    list of str
        The subjects :func:`make_splits` holds out, sorted; none for the paper's split by patch.

    Raises
    ------
    InputError
        Named test subjects that the dataset lacks, or too few subjects to hold any out.
    """
    if data.split == "patch":
        return []
    from mrharmony.data.splits import held_out_subjects

    return sorted(
        held_out_subjects(
            list(subjects),
            named=data.test_subjects,
            n=data.n_test_subjects,
            seed=data.split_seed,
            keep=1,
            source=source,
        )
    )


class TrainingConfig(StrictModel):
    """The ``training`` section of a dMRI run config; a preset (:data:`PRESETS`) fills the keys
    the file does not set.

    Attributes
    ----------
    epochs : int
        Training epochs.
    batch_size : int
        The global minibatch (shared among the processes of distributed data parallel).
    learning_rate : float
        Adam's learning rate at the start.
    lr_decay_every, lr_decay_factor
        The paper's step decay: the learning rate divided by ``lr_decay_factor`` (sqrt(2)) every
        ``lr_decay_every`` epochs.
    lr_schedule : {'step', 'cosine'}
        ``step``: the paper's decay; ``cosine``: a linear warm-up over ``warmup_epochs``, then a
        cosine decay to zero at the last step.
    warmup_epochs : float
        The cosine schedule's warm-up.
    patches_per_epoch : int, optional
        Training patches (or tiles) drawn per epoch (default: every training patch).
    tile_size : int, optional
        Dense training: input tiles of this edge, the loss on every output voxel inside the
        target's brain (default: the paper's patches, one output per patch centre).
    validation_patches : int, optional
        A seeded subset of this many validation patches (default: every one).
    loss_weighting : {'channel', 'order'}
        ``channel``: the paper's MSE, every normalized SH channel weighing the same; ``order``:
        every SH order weighing the same (the validation loss stays the paper's).
    augment : {'none', 'flips'}
        ``flips``: each sample mirrored along a random set of the three axes, its SH coefficients
        reflected to match.
    inputs : {'sh', 'sh+position'}
        ``sh+position``: three more input channels, each voxel's position
        (:mod:`mrharmony.dmri.features.position`).
    seed : int
        The seed of the network's weights and of every epoch's draws.
    device : {'auto', 'cpu', 'cuda'}
        Where to train (``auto``: the process's GPU if there is one).
    bf16 : bool
        bf16 autocast on a GPU.
    threads : int, optional
        PyTorch's CPU threads (default: PyTorch's own choice).
    """

    epochs: int = Field(default=50, ge=1)
    batch_size: int = Field(default=12, ge=1)
    learning_rate: float = Field(default=1e-4, gt=0)
    lr_decay_every: int = Field(default=15, ge=1)
    lr_decay_factor: float = Field(default=math.sqrt(2), ge=1)
    lr_schedule: Literal["step", "cosine"] = Field(
        default="step",
        description="step: the paper's, divided by lr_decay_factor every lr_decay_every epochs; "
        "cosine: a linear warm-up over warmup_epochs, then a cosine decay to zero at the last step",
    )
    warmup_epochs: float = Field(default=0.0, ge=0)
    patches_per_epoch: int | None = Field(
        default=None, ge=1, description="None: every training patch (with tile_size: tiles per epoch)"
    )
    tile_size: int | None = Field(
        default=None,
        ge=3,
        description="dense training: input tiles of this edge (odd, "
        "larger than the patch), the loss on every output voxel inside the target's brain; "
        "None: the paper's patches, one output per patch centre",
    )
    validation_patches: int | None = Field(default=None, ge=1, description="None: every validation patch")
    loss_weighting: Literal["channel", "order"] = Field(
        default="channel",
        description="channel: the paper's MSE, every normalized SH channel weighing the same; "
        "order: every SH order weighing the same (order 0 one quarter of the loss at order 6, not 1/28); the "
        "validation loss stays the paper's",
    )
    augment: Literal["none", "flips"] = Field(
        default="none",
        description="flips: each sample mirrored along a "
        "random set of the three axes, its SH coefficients reflected to match "
        "(input and targets alike); none: the paper's samples",
    )
    inputs: Literal["sh", "sh+position"] = Field(
        default="sh",
        description="sh: the paper's input, the SH features; sh+position: three more channels, each "
        "voxel's position from the brain's centroid (mrharmony.dmri.features.position), so that a network can learn "
        "differences that vary over the head (the gradient coils' non-linearity)",
    )
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = True
    threads: int | None = Field(default=None, ge=1)


def absolute_paths(meta: dict, run_dir: str | os.PathLike, keys: tuple[str, ...] = ()) -> dict:
    """A saved model's metadata with the paths it records relative to its run directory made absolute.

    Runs record their paths relative to the run directory, so a folder holding both the data and
    the runs can be moved or copied as a whole.

    Parameters
    ----------
    meta
        The metadata.
    run_dir
        The run directory the paths are relative to.
    keys
        The keys of further paths (those a method records, ``NetworkConfig.meta_paths``): a
        path, or a list or mapping of paths.

    Returns
    -------
    dict
        A copy of ``meta`` with the dataset and the values of ``keys`` made absolute.
    """
    base = Path(run_dir).resolve()
    meta = map_paths(meta, keys, lambda v: str((base / v).resolve()))
    if "data" in meta:  # a run of traveling heads, or of a study's sites
        kind = StudyDataConfig if "study" in meta["data"] else DataConfig
        meta["data"] = resolve_paths(meta["data"], kind, base)
    return meta


def resolved_config(cfg, run_dir: Path | None = None) -> dict:
    """The config as a run directory records it (``config.yaml``).

    Parameters
    ----------
    cfg
        A validated run config (:class:`~mrharmony.dmri.run_config.RunConfig`).
    run_dir
        The run directory; the path settings of the data and model sections are recorded
        relative to it (so that data and runs can move together).

    Returns
    -------
    dict
        Every training and data value written out, the model section as given (its keys depend
        on the method).
    """
    out = cfg.model_dump(mode="json")
    out["model"] = cfg.model.model_dump(mode="json", exclude_unset=True)
    if run_dir is not None:
        out["data"] = relative_paths(out["data"], DataConfig, run_dir)
        out["model"] = relative_paths(out["model"], type(cfg.model), run_dir)
    return out


def check_same_data(run, meta: dict, data: DataConfig) -> None:
    """Refuse a run that another starts from (MSP's first stage, ``init_from``) if its data differ.

    Parameters
    ----------
    run
        The run (named in errors).
    meta
        Its saved model's metadata.
    data
        The data section of the run that starts from it.

    Raises
    ------
    InputError
        Another feature scaling, or another dataset or test split (so that a test patch might
        have been seen in training).
    """
    theirs, ours = comparable_data(meta["data"]), comparable_data(data.model_dump(mode="json"))
    scaled = meta.get("normalization") or "scan"  # models saved before the choice were scaled per scan
    if scaled != data.normalization:
        raise InputError(
            f"was trained with the {scaled} normalization of the features; a run that another starts "
            f"from must be scaled as that one is ({data.normalization}).",
            run,
        )
    if theirs != ours:
        diff = sorted(k for k in ours if theirs.get(k) != ours[k])
        raise InputError(
            f"was trained with other data settings ({', '.join(diff)}); a run that another starts from must share "
            "its dataset and split so that no test patch was seen in training.",
            run,
        )


def target_platforms(data: DataConfig):
    """The dataset of a run, its targets and their voxel ratios.

    Parameters
    ----------
    data
        The run's data section.

    Returns
    -------
    tuple
        The dataset (:class:`~mrharmony.data.dataset.TravelingHeads`, headers checked only), the
        target platforms, and target -> voxel ratio.

    Raises
    ------
    InputError
        A dataset that does not load, or a target that is the input platform or unknown.
    """
    from mrharmony.data import load_dataset

    ds = load_dataset(data.dataset, check_data=False, subjects=data.subjects)
    targets = data.targets or [p.name for p in ds.target_platforms]
    for t in targets:
        if ds.platform(t).role != "target":  # ds.platform names the dataset's platforms for an unknown one
            raise InputError(f"{t!r} is the input platform, not a target.", Path(data.dataset) / "dataset.yaml")
    return ds, targets, {t: ds.voxel_ratio(t) for t in targets}


@dataclass
class Splits:
    """The patches of a run's split (indices into its patch sampler).

    Attributes
    ----------
    train, validation, test : numpy.ndarray
        Sorted patch indices of each part.
    test_subjects : list of str
        The held-out subjects (none for the split by patch).
    """

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    test_subjects: list[str]


def make_splits(sampler, data: DataConfig, *, source=None) -> Splits:
    """A run's split: test patches (by patch or subject), then validation patches from the rest.

    Parameters
    ----------
    sampler
        The run's :class:`~mrharmony.dmri.patches.PatchSampler`.
    data
        The run's data section (split settings and ``split_seed``, which seeds every draw).
    source
        The file named in errors (the config).

    Returns
    -------
    Splits

    Raises
    ------
    InputError
        Named test subjects that the sampler lacks, or too few subjects to hold out.
    """
    from mrharmony.dmri.patches import split_by_patch, split_by_subject

    if data.split == "patch":
        rest, test = split_by_patch(len(sampler), test_fraction=data.test_fraction, seed=data.split_seed)
        test_subjects: list[str] = []
    else:
        rest, test = split_by_subject(
            sampler, test_subjects=data.test_subjects, n_test=data.n_test_subjects, seed=data.split_seed, source=source
        )
        test_subjects = sorted({sampler.subjects[i] for i in np.unique(sampler.subject_index()[test])})
    rng = np.random.default_rng([data.split_seed, 1])
    if data.validation == "subject":
        from mrharmony.data.splits import held_out_subjects

        subj = sampler.subject_index()
        training = sorted({sampler.subjects[i] for i in np.unique(subj[rest])})
        chosen = held_out_subjects(
            training, n=data.n_validation_subjects, seed=[data.split_seed, 1], keep=1, source=source
        )
        is_val = np.isin(subj[rest], [sampler.subjects.index(s) for s in chosen])
        return Splits(
            train=np.sort(rest[~is_val]), validation=np.sort(rest[is_val]), test=test, test_subjects=test_subjects
        )
    perm = rng.permutation(rest)
    n_val = max(1, int(round(len(rest) * data.validation_fraction)))
    return Splits(train=np.sort(perm[n_val:]), validation=np.sort(perm[:n_val]), test=test, test_subjects=test_subjects)


def split_record(splits: Splits, subjects: list[str]) -> dict:
    """The content of a run's ``split.json``.

    Parameters
    ----------
    splits
        The split.
    subjects
        The sampler's subjects.

    Returns
    -------
    dict
        The sizes, the test subjects, the subjects and a fingerprint (SHA-256) of the test patches.
    """
    import hashlib

    return {
        "n_train": len(splits.train),
        "n_validation": len(splits.validation),
        "n_test": len(splits.test),
        "test_subjects": splits.test_subjects,
        "subjects": list(subjects),
        "test_sha256": hashlib.sha256(np.asarray(splits.test, np.int64).tobytes()).hexdigest(),
    }


def write_split(path: Path, splits: Splits, subjects: list[str]) -> None:
    """Write :func:`split_record` to ``path`` (atomically)."""
    from mrharmony.io import write_json

    write_json(path, split_record(splits, subjects))
