"""Opening any saved structural model (``model.pt`` or its run directory) as the harmonizer of the
method it names (HAIL, IHF-Harmony: :func:`mrharmony.structural.registry.trained_class`)."""

from __future__ import annotations

import os

from mrharmony.errors import InputError
from mrharmony.structural.harmonizer import TrainedImageHarmonizer
from mrharmony.structural.registry import REGISTRY, trained_class


def load_image_harmonizer(path: str | os.PathLike, *, method: str | None = None, name: str | None = None,
                          **options) -> TrainedImageHarmonizer:
    """Any saved structural model (``model.pt`` or its run directory), of the class its
    ``meta['model']['method']`` names; ``method``, when given, is the one it must name (else one
    sentence naming the file refuses it). ``options`` go to the class (HAIL: ``device``).

    Examples:
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
        raise InputError(f"is a {found or 'non-structural'} model, not a HAIL or IHF-Harmony model (train one with "
                         "'mrharmony structural train').", path)
    return cls.from_saved(obj, path, name=name, **options)
