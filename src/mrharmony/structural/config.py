"""The run config of the learned image methods (HAIL, IHF-Harmony) and the subject split.

A run is one YAML file (validated on load, unknown keys are errors); for HAIL::

    preset: demo                    # demo | full | test: defaults of the training section
    data:
      dataset: structural-demo      # a structural dataset (structural.yaml)
      modalities: [T1w]             # crops of these modalities (one drawn per triplet)
      sites: null                   # training sites; default: every site of role 'train'
      n_test_subjects: 2            # held out of training entirely (or test_subjects: [...])
      n_validation_subjects: 1
      crop_size: 48                 # training crops (voxels), or 'slice': whole slices (2D methods);
                                    # whole volumes at apply time
    model:
      method: hail                  # any image method of the registry (mrharmony.structural.registry)
    training:
      pretrain_epochs: 6            # phase 1: the feature autoencoder
      epochs: 6                     # phase 2: the method, encoder frozen

The ``model`` section is the config model of its method (:class:`~mrharmony.structural.hail.HAILConfig`,
:class:`~mrharmony.structural.ihf.IHFConfig`). Its path settings (``Field(json_schema_extra={"path":
True})``: the dataset, IHF-Harmony's VGG weights) are taken from the config's folder and recorded
relative to the run directory (:func:`mrharmony.config.resolve_paths`,
:func:`mrharmony.config.relative_paths`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Field, field_validator

from mrharmony.config import (
    StrictModel,
    model_from_dict,
    read_run_yaml,
    relative_paths,
    resolve_paths,
)
from mrharmony.errors import InputError
from mrharmony.structural.registry import REGISTRY

PRESETS: dict[str, dict] = {
    "full": {"pretrain_epochs": 20, "epochs": 20, "steps_per_epoch": 100, "batch_size": 2},
    "demo": {"pretrain_epochs": 6, "epochs": 6, "steps_per_epoch": 40, "batch_size": 2},
    "test": {"pretrain_epochs": 1, "epochs": 1, "steps_per_epoch": 2, "batch_size": 1, "validation_batches": 1},
}


class StructuralDataConfig(StrictModel):
    """The ``data`` section of a structural run config: the dataset, the sites, the split and the crops.

    Attributes
    ----------
    dataset : str
        The structural dataset folder (``structural.yaml``; a path setting: taken from the
        config's folder).
    modalities : list of str
        The modalities trained on (one drawn per triplet).
    sites : list of str, optional
        The training sites (default: every site of role ``train``).
    test_subjects : list of str, optional
        The subjects held out of training entirely (default: ``n_test_subjects`` drawn).
    n_test_subjects : int
        How many test subjects are drawn when ``test_subjects`` names none.
    n_validation_subjects : int
        How many of the other subjects validate.
    split_seed : int
        The seed of the test and validation draws.
    crop_size : int or 'slice'
        The edge of the training crops (voxels, at least 8), or ``slice``: whole slices, as a 2D
        method is applied. Whole volumes are harmonized at apply time.
    """

    dataset: str = Field(json_schema_extra={"path": True})
    modalities: list[str] = Field(default_factory=lambda: ["T1w"], min_length=1)
    sites: list[str] | None = Field(default=None, description="training sites; default: every site of role train")
    test_subjects: list[str] | None = None
    n_test_subjects: int = Field(default=2, ge=0)
    n_validation_subjects: int = Field(default=1, ge=1)
    split_seed: int = 0
    crop_size: int | Literal["slice"] = Field(
        default=48, description="training crops (voxels, at least 8); 'slice': whole slices, as a 2D method is applied"
    )

    @field_validator("crop_size", mode="before")
    @classmethod
    def _crop_size(cls, v):
        if v == "slice" or (isinstance(v, int) and not isinstance(v, bool) and v >= 8):
            return v
        raise ValueError(f"{v!r} is neither a crop edge of at least 8 voxels nor 'slice' (whole slices)")


#: the ``model`` section: the config model of one of the registry's image methods
ImageModelConfig = Annotated[Union[tuple(REGISTRY.config_models(("image",)))], Field(discriminator="method")]  # noqa: UP007 (built at run time)


class StructuralTrainingConfig(StrictModel):
    """The ``training`` section of a structural run config; a preset (:data:`PRESETS`) fills the
    keys the file does not set.

    Attributes
    ----------
    pretrain_epochs : int
        Phase 1: epochs of the feature autoencoder (0: none).
    epochs : int
        Phase 2: epochs of the method, the encoder frozen.
    steps_per_epoch : int
        Optimizer steps per epoch.
    batch_size : int
        Triplets of crops per step.
    learning_rate : float
        Phase 1's learning rate (the autoencoder).
    transfer_learning_rate : float
        Phase 2's learning rate (the method).
    lr_schedule : {'constant', 'cosine'}
        Phase 2's learning rate: constant, or a cosine decay to 0 over its epochs.
    validation_batches : int
        Fixed validation batches of triplets, scored after every epoch.
    seed : int
        The seed of the networks' weights and of every epoch's crops.
    device : {'auto', 'cpu', 'cuda'}
        Where to train (``auto``: the process's GPU if there is one).
    bf16 : bool
        bf16 autocast on a GPU.
    threads : int, optional
        PyTorch's CPU threads (default: PyTorch's own choice).
    """

    pretrain_epochs: int = Field(default=20, ge=0)
    epochs: int = Field(default=20, ge=1)
    steps_per_epoch: int = Field(default=100, ge=1)
    batch_size: int = Field(default=2, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0, description="phase 1 (autoencoder)")
    transfer_learning_rate: float = Field(default=3e-4, gt=0, description="phase 2 (the method)")
    lr_schedule: Literal["constant", "cosine"] = Field(
        default="constant", description="phase 2's learning rate: constant, or a cosine decay to 0 over its epochs"
    )
    validation_batches: int = Field(default=8, ge=1)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = Field(default=False, description="bf16 autocast on a GPU")
    threads: int | None = Field(default=None, ge=1)


class StructuralRunConfig(StrictModel):
    """A whole structural run config, as ``mrharmony structural train CONFIG`` reads it
    (:func:`load_structural_config`; see the module docstring).

    Attributes
    ----------
    preset : {'full', 'demo', 'test'}, optional
        The defaults of the training section (:data:`PRESETS`).
    data : StructuralDataConfig
        The dataset, sites, split and crops.
    model : ImageModelConfig
        The config model of one of the registry's image methods, chosen by its ``method``
        (:class:`~mrharmony.structural.hail.HAILConfig`, :class:`~mrharmony.structural.ihf.IHFConfig`).
    training : StructuralTrainingConfig
        The training settings.
    """

    preset: Literal["full", "demo", "test"] | None = None
    data: StructuralDataConfig
    model: ImageModelConfig
    training: StructuralTrainingConfig = Field(default_factory=StructuralTrainingConfig)


def load_structural_config(path: str | os.PathLike) -> StructuralRunConfig:
    """Read a HAIL or IHF-Harmony run config file.

    The preset fills the training keys the file does not set, and its path settings (the
    dataset, VGG weights) are taken from the config's folder.

    Parameters
    ----------
    path
        The YAML file.

    Returns
    -------
    StructuralRunConfig

    Raises
    ------
    InputError
        A file that cannot be read, has no ``model`` section naming an image method, or is not a
        valid run config: one sentence naming the file and the key.

    Examples
    --------
    >>> cfg = load_structural_config("examples/hail.yaml")                 # doctest: +SKIP
    >>> cfg.model.method                                                   # doctest: +SKIP
    'hail'
    """
    raw = read_run_yaml(path, PRESETS)
    base = Path(path).resolve().parent
    data, model = raw.get("data"), raw.get("model")
    image_methods = REGISTRY.names("image")
    if not isinstance(model, dict) or model.get("method") not in image_methods:
        raise InputError(
            f"needs a 'model' section whose 'method' is one of {', '.join(image_methods)} (structural "
            "methods; a dMRI method trains with 'mrharmony dmri train').",
            path,
        )
    if isinstance(data, dict):
        raw["data"] = resolve_paths(data, StructuralDataConfig, base)
    raw["model"] = resolve_paths(model, REGISTRY.get(model["method"], "image").config, base)
    return model_from_dict(StructuralRunConfig, raw, source=path)


def split_subjects(subjects: list[str], data: StructuralDataConfig, source) -> dict[str, list[str]]:
    """A run's test, validation and training subjects.

    Parameters
    ----------
    subjects
        The dataset's subjects.
    data
        The run's data section (its draws are seeded by ``split_seed``).
    source
        The file named in errors (the config).

    Returns
    -------
    dict of str to list of str
        ``test``, ``validation`` and ``train`` subjects.

    Raises
    ------
    InputError
        Named test subjects that the dataset lacks, or too few subjects left to validate and train.
    """
    from mrharmony.data.splits import held_out_subjects

    test = held_out_subjects(
        subjects, named=data.test_subjects, n=data.n_test_subjects, seed=[data.split_seed, 0], source=source
    )
    if data.test_subjects is None:
        test = sorted(test)
    rest = [s for s in subjects if s not in test]
    if len(rest) < data.n_validation_subjects + 1:
        raise InputError(
            f"leaves {len(rest)} subject(s) after the {len(test)} test subject(s); training needs "
            f"{data.n_validation_subjects + 1} (validation and training).",
            source,
        )
    val = sorted(held_out_subjects(rest, n=data.n_validation_subjects, seed=[data.split_seed, 1], source=source))
    return {"test": test, "validation": val, "train": [s for s in rest if s not in val]}


def resolved_structural_config(cfg: StructuralRunConfig, run_dir: Path) -> dict:
    """The config as the run directory records it (``config.yaml``).

    Parameters
    ----------
    cfg
        A validated run config.
    run_dir
        The run directory.

    Returns
    -------
    dict
        Every value written out, the path settings relative to ``run_dir``.
    """
    out = cfg.model_dump(mode="json")
    out["data"] = relative_paths(out["data"], StructuralDataConfig, run_dir)
    out["model"] = relative_paths(out["model"], type(cfg.model), run_dir)
    return out
