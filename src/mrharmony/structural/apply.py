"""Applying an image-to-image harmonizer to NIfTI files: ``mrharmony structural apply`` (HAIL)
and ``mrharmony flow apply`` (IHF-Harmony).

The harmonized image is written as float32 NIfTI on the input's grid and affine, with a JSON
sidecar beside it (``OUT`` with ``.json``) naming the model, the images and the masks (and, for
IHF-Harmony, the input's intensity scale, with which :func:`mrharmony.structural.ihf.restore_flow`
gives the input back). Without a mask, each image gets the automatic brain mask of
:func:`mrharmony.structural.metrics.brain_mask` (Otsu's threshold, the largest component,
holes filled: meant for skull-stripped images). Existing outputs need ``force``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mrharmony.errors import InputError

AUTOMATIC_MASK = "automatic (Otsu, largest component, holes filled)"


def _outputs(out: Path, force: bool) -> tuple[Path, Path]:
    name = out.name
    if not name.endswith((".nii.gz", ".nii")):
        raise InputError("must be a NIfTI file name (.nii.gz or .nii).", out)
    sidecar = out.with_name(name[: -len(".nii.gz" if name.endswith(".nii.gz") else ".nii")] + ".json")
    for path in (out, sidecar):
        if path.exists() and not force:
            raise InputError("already exists; pass --force to overwrite it.", path)
    parent = out.resolve().parent
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise InputError("cannot be written because its directory is not writable.", out)
    return out, sidecar


def _mask(path, image, source, what: str):
    import numpy as np

    from mrharmony.data.structural import read_structural_image
    from mrharmony.structural.metrics import brain_mask

    if path is None:
        m, where = brain_mask(image), source
    else:
        m, where = read_structural_image(path, what="mask", shape=image.shape)[0] > 0, path
    if not np.any(m):
        raise InputError(f"gives an empty {what}.", where)
    return m


def apply_image_model(model: str | os.PathLike, *, method: str, input_path, target_path, out, mask_path=None,
                      target_mask_path=None, force: bool = False) -> Path:
    """Harmonize the image ``input_path`` to the site of the one image ``target_path`` with a
    trained HAIL (``method="hail"``) or IHF-Harmony (``method="ihf"``) model."""
    from mrharmony.data.structural import read_structural_image
    from mrharmony.io import save_nifti, write_json

    out, sidecar = _outputs(Path(out), force)
    model_file = Path(model) / "model.pt" if Path(model).is_dir() else Path(model)
    if method == "hail":
        from mrharmony.structural.hail import load_hail

        net, meta = load_hail(model_file)
    else:
        from mrharmony.structural.ihf import load_ihf

        net, meta = load_ihf(model_file)
    image, affine = read_structural_image(input_path)
    target, _ = read_structural_image(target_path, what="target image")
    mask = _mask(mask_path, image, input_path, "brain mask")
    tmask = _mask(target_mask_path, target, target_path, "target brain mask")
    extra = {}
    if method == "hail":
        from mrharmony.structural.hail import harmonize

        pred = harmonize(net, image, mask, target, tmask)
        what = "T1-weighted image harmonized by HAIL to the site of the target image"
    else:
        from mrharmony.structural.ihf import harmonize_flow

        pred, scale = harmonize_flow(net, image, mask, target, tmask)
        extra = {"InputScale": scale}
        what = "image harmonized by IHF-Harmony to the site of the target image (invertible)"
    save_nifti(out, pred, affine)
    write_json(sidecar, {
        "Description": what,
        "GeneratedBy": [{"Name": "mrharmony", "Version": meta.get("mrharmony_version")}],
        "Sources": [str(Path(input_path)), str(Path(target_path))],
        "Model": str(model_file.resolve()),
        "ModelSHA256": hashlib.sha256(model_file.read_bytes()).hexdigest(),
        "ModelTrainingSites": meta.get("training_sites"),
        "BrainMask": str(mask_path) if mask_path else AUTOMATIC_MASK,
        "TargetBrainMask": str(target_mask_path) if target_mask_path else AUTOMATIC_MASK,
        **extra,
    })
    return out
