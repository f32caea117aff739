"""Applying a trained image-to-image harmonizer (HAIL or IHF-Harmony), or an intensity baseline,
to NIfTI files: ``mrharmony structural apply`` (and ``restore``, the exact inverse of an
invertible one).

The method is the one the model file names (``meta['model']['method']``), or the baseline named. The output is a
folder, as for ``mrharmony dmri apply``: a BIDS derivative (``dataset_description.json``) holding
the harmonized image, named after the input with ``desc-harmonized`` (``sub-01_T1w.nii.gz`` ->
``sub-01_desc-harmonized_T1w.nii.gz``), as float32 NIfTI on the input's grid and affine, with a
JSON sidecar beside it naming the model, the images and the masks (and, for IHF-Harmony, the
input's intensity scale, with which :meth:`mrharmony.structural.ihf.IHFHarmonizer.restore`
gives the input back): :meth:`mrharmony.structural.harmonizer.ImageHarmonizer.harmonize_file`.
Without a mask, each image gets the automatic brain mask of
:func:`mrharmony.data.masks.brain_mask` (Otsu's threshold, the largest component, holes
filled: meant for skull-stripped images). Existing outputs need ``force``.
"""

from __future__ import annotations

import os
from pathlib import Path

from mrharmony.structural.harmonizer import AUTOMATIC_MASK, derivative_name

__all__ = ["AUTOMATIC_MASK", "apply_image_model", "restore_image"]


def apply_image_model(
    model: str | os.PathLike,
    *,
    input_path,
    target_path,
    out,
    mask_path=None,
    target_mask_path=None,
    force: bool = False,
    method: str | None = None,
    allow_modality_mismatch: bool = False,
) -> Path:
    """Harmonize an image to the site of one target image with a trained model, into a new folder.

    Parameters
    ----------
    model
        A trained model: ``model.pt`` or its run directory; or the name of an intensity baseline
        (:data:`mrharmony.structural.registry.INTENSITY_METHODS`, such as ``n4_nyul``).
    input_path
        The image to harmonize (NIfTI).
    target_path
        One image of the target site.
    out
        The output folder (see the module docstring).
    mask_path, target_mask_path
        Their brain masks (default: the automatic mask of each image).
    force
        Replace an existing non-empty ``out``.
    method
        The method the model must hold (``"hail"`` or ``"ihf"``; default: any).
    allow_modality_mismatch
        Harmonize where BIDS suffixes show that the two images are of different modalities.

    Returns
    -------
    pathlib.Path
        The harmonized image's path.

    Raises
    ------
    InputError
        An existing non-empty ``out`` without ``force``, a model of another method, a file that
        cannot be read, or an input the model refuses
        (:meth:`~mrharmony.structural.harmonizer.ImageHarmonizer.harmonize_file`): one sentence
        naming the file. Nothing is left at ``out`` when it fails.

    Examples
    --------
    >>> apply_image_model("runs/hail", input_path="sub-03_T1w.nii.gz",
    ...                   target_path="siteD_T1w.nii.gz", out="harmonized")  # doctest: +SKIP
    PosixPath('harmonized/sub-03_desc-harmonized_T1w.nii.gz')
    """
    from mrharmony.io import staged_output_dir, write_derivative_description
    from mrharmony.structural.loading import load_image_harmonizer
    from mrharmony.structural.registry import INTENSITY_METHODS, intensity_harmonizer

    name = derivative_name(input_path, "harmonized")
    with staged_output_dir(out, force=force) as tmp:  # checked before the model is read
        if method is None and str(model) in INTENSITY_METHODS and not Path(model).exists():
            harmonizer = intensity_harmonizer(str(model))
        else:
            harmonizer = load_image_harmonizer(model, method=method)
        harmonizer.harmonize_file(
            input_path=input_path,
            target_path=target_path,
            out=tmp / name,
            mask_path=mask_path,
            target_mask_path=target_mask_path,
            allow_modality_mismatch=allow_modality_mismatch,
        )
        write_derivative_description(
            tmp / "dataset_description.json",
            name="mrharmony harmonized structural MRI",
            description=f"mrharmony structural apply ({harmonizer.name})",
        )
    return Path(out) / name


def restore_image(
    model: str | os.PathLike, *, input_path, out, target_path=None, target_mask_path=None, force: bool = False
) -> Path:
    """The input image back from an image that ``structural apply`` harmonized with an invertible
    model (IHF-Harmony's ``ihf_squeeze``): ``mrharmony structural restore``.

    What the inverse needs is read from the harmonized image's sidecar (and the array files it
    names).

    Parameters
    ----------
    model
        The model that harmonized it: ``model.pt`` or its run directory.
    input_path
        The harmonized image, its sidecar beside it.
    out
        The output folder: the restored image (float32 NIfTI on the harmonized image's grid and
        affine, named with ``desc-restored``) and its sidecar.
    target_path, target_mask_path
        The target image it was harmonized to and its mask, needed only for outputs written
        before sidecars recorded the style code.
    force
        Replace an existing non-empty ``out``.

    Returns
    -------
    pathlib.Path
        The restored image's path.

    Raises
    ------
    InputError
        An existing non-empty ``out`` without ``force``, a missing or invalid sidecar, a model
        that is not invertible or not the one that harmonized the image, or a file that cannot be
        read: one sentence naming the file.

    Examples
    --------
    >>> restore_image("runs/ihf_squeeze", input_path="harmonized/sub-03_desc-harmonized_T1w.nii.gz",
    ...               out="restored")                                   # doctest: +SKIP
    PosixPath('restored/sub-03_desc-restored_T1w.nii.gz')
    """
    from mrharmony.io import staged_output_dir, write_derivative_description

    input_path = Path(input_path)
    with staged_output_dir(out, force=force) as tmp:
        restored = _restore(
            model, input_path, tmp / derivative_name(input_path, "restored"), target_path, target_mask_path
        )
        write_derivative_description(
            tmp / "dataset_description.json",
            name="mrharmony restored structural MRI",
            description="mrharmony structural restore",
        )
    return Path(out) / restored.name


def _restore(model, input_path: Path, out: Path, target_path, target_mask_path) -> Path:
    """The body of :func:`restore_image`: write ``out`` and its sidecar."""
    import hashlib
    import json

    import numpy as np

    from mrharmony.data.structural import read_structural_image
    from mrharmony.errors import InputError
    from mrharmony.io import save_nifti, write_json
    from mrharmony.structural.harmonizer import HarmonizedImage, nifti_stem
    from mrharmony.structural.loading import load_image_harmonizer

    side_path = input_path.with_name(nifti_stem(input_path) + ".json")
    if not side_path.is_file():
        raise InputError(
            f"has no sidecar {side_path.name} beside it; restoring needs the one 'structural apply' wrote.", input_path
        )
    try:
        sidecar = json.loads(side_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError("is not valid JSON.", side_path) from None
    harmonizer = load_image_harmonizer(model)
    if not harmonizer.invertible:
        raise InputError(
            f"holds {harmonizer.title}, which is not invertible from its outputs; only the outputs of "
            "IHF-Harmony's squeeze variant (flow: squeeze) can be restored.",
            model,
        )
    sha = hashlib.sha256(harmonizer.model_file.read_bytes()).hexdigest()
    if sidecar.get("ModelSHA256") not in (None, sha):
        raise InputError(
            f"was harmonized by another model ({sidecar.get('Model')}); restore it with that one.", input_path
        )
    if "InputScale" not in sidecar:
        raise InputError("records no InputScale: it is not an IHF-Harmony output's sidecar.", side_path)
    if "StyleCode" in sidecar and "TargetScale" not in sidecar:
        raise InputError("records a StyleCode but no TargetScale; restoring needs both.", side_path)
    image, affine = read_structural_image(input_path, what="harmonized image")
    from mrharmony.structural.ihf.inference import margin_size

    need = margin_size(harmonizer.net, image.shape)
    arrays = {}
    if "FlowMargin" in sidecar:
        path = input_path.parent / sidecar["FlowMargin"]
        if not path.is_file():
            raise InputError(
                f"is missing; the sidecar {side_path.name} names it as the flow's values on the padding, "
                "which restoring needs.",
                path,
            )
        try:
            margin = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            raise InputError("could not be read as a NumPy array file.", path) from None
        if margin.size != need:
            raise InputError(
                f"holds {margin.size} values, but restoring an image of shape {image.shape} needs {need}.", path
            )
        arrays["FlowMargin"] = margin
    elif need:
        raise InputError(
            f"names no file of the flow's values on the padding, which an image of shape {image.shape} "
            "needs to be restored"
            + (
                " (it was written before IHF-Harmony kept them: such an output cannot be restored)"
                if "StyleCode" not in sidecar
                else ""
            )
            + ".",
            side_path,
        )
    target = target_mask = None
    if "StyleCode" not in sidecar:
        if target_path is None:
            raise InputError(
                "records no style code (written by an older version); pass --target-image, the image it "
                "was harmonized to.",
                side_path,
            )
        from mrharmony.structural.harmonizer import read_inputs

        _, _, _, target, target_mask = read_inputs(
            input_path=input_path, target_path=target_path, target_mask_path=target_mask_path
        )
    back = harmonizer.restore(HarmonizedImage(image, sidecar, arrays), target=target, target_mask=target_mask)
    save_nifti(out, back, affine)
    write_json(
        out.with_name(nifti_stem(out) + ".json"),
        {
            "Description": f"the input of a harmonized image, restored by {harmonizer.title}'s exact inverse",
            "GeneratedBy": [{"Name": "mrharmony", "Version": harmonizer.version}],
            "Sources": [str(input_path)],
            **harmonizer.model_sidecar(),
        },
    )
    return out
