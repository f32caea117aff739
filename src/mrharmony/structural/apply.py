"""Applying a trained image-to-image harmonizer (HAIL or IHF-Harmony) to NIfTI files:
``mrharmony structural apply``.

The method is the one the model file names (``meta['model']['method']``). The harmonized image
is written as float32 NIfTI on the input's grid and affine, with a JSON sidecar beside it
(``OUT`` with ``.json``) naming the model, the images and the masks (and, for IHF-Harmony, the
input's intensity scale, with which :meth:`mrharmony.structural.ihf.IHFHarmonizer.restore`
gives the input back): :meth:`mrharmony.structural.harmonizer.ImageHarmonizer.harmonize_file`.
Without a mask, each image gets the automatic brain mask of
:func:`mrharmony.data.masks.brain_mask` (Otsu's threshold, the largest component, holes
filled: meant for skull-stripped images). Existing outputs need ``force``.
"""

from __future__ import annotations

import os
from pathlib import Path

from mrharmony.structural.harmonizer import AUTOMATIC_MASK, output_paths

__all__ = ["AUTOMATIC_MASK", "apply_image_model"]


def apply_image_model(model: str | os.PathLike, *, input_path, target_path, out, mask_path=None,
                      target_mask_path=None, force: bool = False, method: str | None = None,
                      allow_modality_mismatch: bool = False) -> Path:
    """Harmonize the image ``input_path`` to the site of the one image ``target_path`` with a
    trained model (``model.pt`` or its run directory) and write ``out`` and its sidecar.

    ``method`` (``"hail"`` or ``"ihf"``), when given, is the method the model must hold: a model
    of another one is refused with one sentence naming the file.

    Examples:
        >>> apply_image_model("runs/hail", input_path="sub-03_T1w.nii.gz",
        ...                   target_path="siteD_T1w.nii.gz", out="harmonized_T1w.nii.gz")  # doctest: +SKIP
    """
    from mrharmony.structural.harmonizer import load_image_harmonizer

    output_paths(out, force=force)  # before reading the model: a refused output costs nothing
    harmonizer = load_image_harmonizer(model, method=method)
    return harmonizer.harmonize_file(input_path=input_path, target_path=target_path, out=out, mask_path=mask_path,
                                     target_mask_path=target_mask_path, force=force,
                                     allow_modality_mismatch=allow_modality_mismatch)
