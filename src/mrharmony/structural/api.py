"""The structural wing in Python, for analyses in notebooks: :func:`fit` a method of the registry
on named training subjects; the harmonizer it returns harmonizes an image with
:meth:`~mrharmony.structural.harmonizer.ImageHarmonizer.transform`.

A learned method (HAIL, IHF-Harmony) is trained as ``mrharmony structural train`` trains it
(the same run directory and saved model), its run config built in memory: its held-out subjects
(``data.test_subjects``) are the dataset's subjects not in ``train_subjects``, and its validation
subjects are drawn from ``train_subjects``. No image of a held-out subject is read, so a fit is
safe inside a cross-validation loop. The intensity baselines (``nyul``, ``zscore``, ...) learn
nothing: their fit is the harmonizer itself.

Examples
--------
>>> from mrharmony import structural                                           # doctest: +SKIP
>>> h = structural.fit("hail", "sites", train_subjects=["sub-01", "sub-02", "sub-03"],
...                    out="runs/hail", preset="demo")                           # doctest: +SKIP
>>> result = h.transform(image, mask=mask, target=target, target_mask=target_mask)  # doctest: +SKIP
>>> result.image                                                                # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mrharmony.errors import InputError

if TYPE_CHECKING:
    from mrharmony.structural.harmonizer import ImageHarmonizer

#: data settings that :func:`fit` sets from its own arguments
OWN_DATA_KEYS = ("dataset", "test_subjects", "n_test_subjects")


def fit(
    method: str,
    dataset: str | os.PathLike | None = None,
    *,
    train_subjects: Sequence[str] | None = None,
    out: str | os.PathLike | None = None,
    preset: str | None = None,
    training: dict | None = None,
    data: dict | None = None,
    force: bool = False,
    quiet: bool = True,
    **settings,
) -> ImageHarmonizer:
    """Fit a structural harmonization method on the training subjects of a structural dataset.

    Parameters
    ----------
    method
        Any method of :data:`mrharmony.structural.registry.REGISTRY`: a learned one (``hail``,
        ``ihf``) or an intensity baseline (``none``, ``zscore``, ``whitestripe``, ``nyul``).
    dataset
        The structural dataset folder (holding ``structural.yaml``); a baseline needs none.
    train_subjects
        The subjects to learn from: a non-empty list of distinct subjects of the dataset (at
        least two for a learned method: one of them validates). The others are held out and
        never read. A baseline checks them and learns nothing.
    out
        The run directory to write (as ``mrharmony structural train --out``); a baseline writes
        nothing.
    preset
        ``full``, ``demo`` or ``test``: the defaults of the training settings
        (:data:`mrharmony.structural.config.PRESETS`); ``test`` trains in seconds.
    training
        Training settings (:class:`mrharmony.structural.config.StructuralTrainingConfig`:
        ``epochs``, ``seed``, ...) over the preset's.
    data
        Other data settings (:class:`mrharmony.structural.config.StructuralDataConfig`:
        ``modalities``, ``sites``, ``crop_size``, ``n_validation_subjects``, ``split_seed``),
        not those fit sets itself (:data:`OWN_DATA_KEYS`).
    force
        Replace an existing run directory ``out``.
    quiet
        No progress output.
    **settings
        The method's own settings: the ``model`` section of a run config (HAIL's ``widths``,
        ``skips``; IHF-Harmony's ``flow``, ``dims``; ...).

    Returns
    -------
    ImageHarmonizer
        The harmonizer: for a learned method, as
        :func:`mrharmony.structural.loading.load_image_harmonizer` opens it from ``out``.

    Raises
    ------
    InputError
        A subject that the dataset lacks, an empty ``train_subjects`` (or too few to leave
        validation subjects), a learned method without a dataset, subjects or run directory, an
        unknown method, preset or setting, a ``data`` key that fit sets itself: one sentence.

    Examples
    --------
    >>> h = fit("nyul")                                                           # doctest: +SKIP
    >>> h = fit("hail", "sites", train_subjects=["sub-01", "sub-02"], out="runs/hail",
    ...         preset="test", data={"crop_size": 16}, skips=True)                # doctest: +SKIP
    """
    from mrharmony.config import model_from_dict, resolve_paths
    from mrharmony.structural.config import PRESETS, StructuralRunConfig
    from mrharmony.structural.loading import load_image_harmonizer
    from mrharmony.structural.registry import REGISTRY, intensity_harmonizer
    from mrharmony.structural.training import train_structural

    chosen = REGISTRY.get(method)
    if chosen.kind == "intensity":
        given = [k for k, v in (("preset", preset), ("training", training), ("data", data)) if v]
        if settings or given:
            raise InputError(f"{method} learns nothing and takes no {(list(settings) or given)[0]!r}.")
        if train_subjects is not None:
            held_out_of(dataset, train_subjects)
        return intensity_harmonizer(method)
    missing = [k for k, v in (("dataset", dataset), ("train_subjects", train_subjects), ("out", out)) if v is None]
    if missing:
        raise InputError(f"{method} learns from a dataset and needs {missing[0]}.")
    data = dict(data or {})
    own = [k for k in data if k in OWN_DATA_KEYS]
    if own:
        raise InputError(f"data sets {own[0]!r}, which fit sets from its own arguments (dataset, train_subjects).")
    if preset is not None and preset not in PRESETS:
        raise InputError(f"preset {preset!r} is not one of {', '.join(PRESETS)}.")
    held_out = held_out_of(dataset, train_subjects)
    cfg = model_from_dict(
        StructuralRunConfig,
        {
            "preset": preset,
            "data": {"dataset": str(Path(dataset).resolve()), "test_subjects": held_out, **data},
            "model": resolve_paths({"method": method, **settings}, chosen.config, Path.cwd()),
            "training": {**PRESETS.get(preset, {}), **(training or {})},
        },
    )
    n_val = cfg.data.n_validation_subjects
    if len(train_subjects) <= n_val:
        raise InputError(
            f"{method} needs at least {n_val + 1} train_subjects (validation takes {n_val} of them), not "
            f"{len(train_subjects)}."
        )
    train_structural(cfg, out, force=force, quiet=quiet)
    return load_image_harmonizer(out)


def held_out_of(dataset: str | os.PathLike | None, train_subjects: Sequence[str]) -> list[str]:
    """The subjects of a structural dataset that ``train_subjects`` leaves out.

    Parameters
    ----------
    dataset
        The structural dataset folder (holding ``structural.yaml``).
    train_subjects
        The subjects a fit learns from, checked as
        :func:`mrharmony.data.splits.training_subjects` checks them.

    Returns
    -------
    list of str
        The dataset's other subjects, in the dataset's order.

    Raises
    ------
    InputError
        No dataset, a dataset that does not load, or ``train_subjects`` that are empty, repeat a
        name or name a subject the dataset lacks: one sentence.
    """
    from mrharmony.data.splits import training_subjects
    from mrharmony.data.structural import load_structural

    if dataset is None:
        raise InputError("train_subjects needs the dataset they belong to.")
    root = Path(dataset).resolve()
    return training_subjects(load_structural(root).subjects, train_subjects, source=root)[1]
