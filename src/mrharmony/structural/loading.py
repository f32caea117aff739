"""Opening any saved structural model (``model.pt`` or its run directory) as the harmonizer of the
method it names (HAIL, IHF-Harmony: :func:`mrharmony.structural.registry.trained_class`)."""

from __future__ import annotations

import os

from mrharmony.errors import InputError
from mrharmony.structural.harmonizer import TrainedImageHarmonizer
from mrharmony.structural.registry import REGISTRY, trained_class


def load_image_harmonizer(
    path: str | os.PathLike, *, method: str | None = None, name: str | None = None, **options
) -> TrainedImageHarmonizer:
    """Open any saved structural model as the harmonizer of the method it names.

    Parameters
    ----------
    path
        A run directory or its ``model.pt``.
    method
        The method the model must name (``hail``, ``ihf``); default: whichever it names
        (``meta['model']['method']``).
    name
        The harmonizer's row name (default: the method's, or its variant's).
    **options
        Keyword arguments of the harmonizer class (HAIL: ``device``).

    Returns
    -------
    TrainedImageHarmonizer
        The trained harmonizer (:class:`~mrharmony.structural.hail.HAILHarmonizer` or
        :class:`~mrharmony.structural.ihf.IHFHarmonizer`).

    Raises
    ------
    InputError
        A file that cannot be opened, a model that is not a structural one, or one of another
        method than ``method``: one sentence naming the file.

    Examples
    --------
    >>> h = load_image_harmonizer("runs/hail")                             # doctest: +SKIP
    """
    from mrharmony.engine.checkpoint import model_file, read_checkpoint

    if method is not None:
        return REGISTRY.get(method, "image").config.harmonizer().load(path, name=name, **options)
    path = model_file(path)
    obj = read_checkpoint(path)
    found = obj.get("meta", {}).get("model", {}).get("method")
    cls = trained_class(str(found))
    if cls is None:
        raise InputError(
            f"is a {found or 'non-structural'} model, not a HAIL or IHF-Harmony model (train one with "
            "'mrharmony structural train').",
            path,
        )
    return cls.from_saved(obj, path, name=name, **options)
