"""The contract every image-to-image harmonizer of the structural wing fulfils.

An :class:`ImageHarmonizer` gives one 3D ``image`` the appearance of the site of one ``target``
image (one-shot: any subject of that site, on any grid), anatomy kept:

* ``transform(image, target=..., mask=None, target_mask=None)`` returns a
  :class:`HarmonizedImage`: the prediction (float32, on the input's grid, on the target's
  intensity scale) and the values its JSON sidecar needs to describe or undo it
  (IHF-Harmony's ``InputScale``). Without a mask an image gets the automatic brain mask of
  :func:`mrharmony.data.masks.brain_mask`; statistics are taken inside the masks. The inputs
  are never changed;
* ``restore(result, target=..., target_mask=None)`` takes a prediction back to the input, for
  the invertible methods (``invertible``: IHF-Harmony);
* ``harmonize_file(...)`` does the same on NIfTI files: the output as float32 NIfTI on the
  input's grid and affine, with a sidecar (``OUT`` with ``.json``: :meth:`ImageHarmonizer.sidecar`);
* ``modalities``: those it was trained on (None: any);
* trained methods (:class:`TrainedImageHarmonizer`: HAIL, IHF-Harmony) are trained by the
  training engine (:func:`mrharmony.structural.training.train_harmonizer`) and read back with
  ``load(path)``; :func:`mrharmony.structural.loading.load_image_harmonizer` opens any saved model
  and picks its class from the method the model names.

This base owns the plumbing (masks, input checks, files, the sidecar); a subclass implements
only the maths, :meth:`ImageHarmonizer._transform` (and ``_restore`` if it is invertible), and
names itself with ``method``, ``title`` and ``description``. HAIL (:mod:`mrharmony.structural.hail`),
IHF-Harmony (:mod:`mrharmony.structural.ihf`) and the intensity baselines
(:mod:`mrharmony.structural.intensity`) are its subclasses; evaluation
(:mod:`mrharmony.structural.evaluate`), ``apply`` and the benchmarks use them only through it.

Examples
--------
>>> from mrharmony.structural.intensity import ZScoreHarmonizer          # doctest: +SKIP
>>> result = ZScoreHarmonizer().transform(image, target=target)          # doctest: +SKIP
>>> from mrharmony.structural.loading import load_image_harmonizer       # doctest: +SKIP
>>> h = load_image_harmonizer("runs/hail")                               # doctest: +SKIP
>>> h.harmonize_file(input_path="sub-03_T1w.nii.gz", target_path="siteD_T1w.nii.gz",
...                  out="sub-03_desc-harmonized_T1w.nii.gz")            # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from mrharmony.errors import InputError

AUTOMATIC_MASK = "automatic (Otsu, largest component, holes filled)"
#: BIDS suffixes of structural modalities, read from file names to catch an input and a target
#: image of different modalities
BIDS_MODALITIES = ("T1w", "T2w", "FLAIR", "PDw", "T2starw")
#: how far (relative, per axis) an image's voxel size may be from the model's training images'
VOXEL_TOLERANCE = 0.10


def bids_modality(path) -> str | None:
    """The modality a BIDS-style file name ends with (``sub-01_T1w.nii.gz``: ``T1w``), or None."""
    suffix = Path(path).name.split(".")[0].rsplit("_", 1)[-1]
    return suffix if suffix in BIDS_MODALITIES else None


@dataclass(frozen=True, eq=False)
class HarmonizedImage:
    """What :meth:`ImageHarmonizer.transform` returns: the harmonized ``image`` (float32, the
    input's grid), ``sidecar``, the extra values its JSON sidecar records (such as
    IHF-Harmony's ``InputScale`` and ``StyleCode``, with which :meth:`ImageHarmonizer.restore`
    gives the input back), and ``arrays``, larger values written beside the image as ``.npy``
    files that the sidecar names (IHF-Harmony's ``FlowMargin``)."""

    image: np.ndarray
    sidecar: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)


class ImageHarmonizer(ABC):
    """Base of the structural harmonizers (see the module docstring).

    Parameters
    ----------
    name
        Its row name in evaluation tables (default: its ``method``).
    modalities
        The modalities it was trained on (None: any).

    Attributes
    ----------
    method : str
        Short name of the method (``hail``, ``ihf``, ``none``, ``zscore``, ...).
    title : str
        The method as papers and tables name it.
    description : str
        The ``Description`` of the sidecar of an image it harmonized.
    invertible : bool
        Whether :meth:`restore` takes a prediction back to the input.
    keeps_differences : bool
        Whether it claims to keep what differs between people.
    array_keys : tuple of str
        The arrays a result may carry beside its image (written as ``<stem>_<key>.npy``).
    name, modalities
        As given.

    Examples
    --------
    >>> from mrharmony.structural.intensity import ZScoreHarmonizer          # doctest: +SKIP
    >>> result = ZScoreHarmonizer().transform(image, target=target)          # doctest: +SKIP
    >>> result.image.dtype                                                   # doctest: +SKIP
    dtype('float32')
    """

    #: short name of the method (``hail``, ``ihf``, ``none``, ``zscore``, ...)
    method: ClassVar[str] = "image"
    #: the method as papers and tables name it
    title: ClassVar[str] = "image harmonizer"
    #: the ``Description`` of the sidecar of an image it harmonized
    description: ClassVar[str] = "image harmonized to the site of the target image"
    #: whether :meth:`restore` takes a prediction back to the input
    invertible: ClassVar[bool] = False
    #: whether it claims to keep what differs between people (a more atrophied brain keeps its
    #: tissue-volume difference): tested for every method on files, whichever it claims
    keeps_differences: ClassVar[bool] = True
    #: the arrays a result may carry beside its image (written as ``<stem>_<key>.npy``)
    array_keys: ClassVar[tuple[str, ...]] = ()

    #: the voxel sizes (input, target) of the images of the current :meth:`transform` (None: unknown)
    voxel_sizes: tuple = (None, None)

    def __init__(self, *, name: str | None = None, modalities: list[str] | None = None):
        self.name = name or self.method
        self.modalities = None if modalities is None else list(modalities)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    # ---- the contract -------------------------------------------------------------------

    def transform(
        self,
        image: np.ndarray,
        *,
        target: np.ndarray,
        mask: np.ndarray | None = None,
        target_mask: np.ndarray | None = None,
        voxel_mm=None,
        target_voxel_mm=None,
    ) -> HarmonizedImage:
        """An image given the appearance of the site of one target image, anatomy kept.

        Parameters
        ----------
        image
            The image to harmonize (3D); it is not changed.
        target
            One image of the target site (3D, any subject, any grid).
        mask, target_mask
            Their brain masks (default: :func:`mrharmony.data.masks.brain_mask` of each image);
            statistics are taken inside them.
        voxel_mm, target_voxel_mm
            Their voxel sizes in mm, for the methods whose steps are set in millimetres (N4's
            B-spline mesh); default 1 mm.

        Returns
        -------
        HarmonizedImage
            The prediction (float32, on the input's grid, on the target's intensity scale) and
            the values its sidecar records.

        Raises
        ------
        ValueError
            An image that is not a real, finite 3D array, or a mask that is empty or not on its
            image's grid.
        """
        image, mask = self._checked(image, mask, "image")
        target, target_mask = self._checked(target, target_mask, "target")
        self.voxel_sizes = (voxel_mm, target_voxel_mm)  # read by the steps set in millimetres, for this call
        try:
            out = self._transform(image, mask, target, target_mask)
        finally:
            self.voxel_sizes = (None, None)
        pred = np.asarray(out.image, np.float32)
        if pred.shape != image.shape:
            raise RuntimeError(f"{self.name} returned shape {pred.shape} for an input of shape {image.shape}")
        return out if pred is out.image else HarmonizedImage(pred, dict(out.sidecar), dict(out.arrays))

    def restore(
        self, result: HarmonizedImage, *, target: np.ndarray | None = None, target_mask: np.ndarray | None = None
    ) -> np.ndarray:
        """The input image back from its harmonized image (invertible methods only).

        Parameters
        ----------
        result
            What :meth:`transform` returned.
        target, target_mask
            The target image and its mask, needed only by a result that does not record what the
            inverse needs.

        Returns
        -------
        numpy.ndarray
            The input image, float32.

        Raises
        ------
        TypeError
            The method is not invertible.
        """
        if not self.invertible:
            raise TypeError(f"{self.title} is not invertible: its predictions cannot be restored")
        if target is not None:
            target, target_mask = self._checked(target, target_mask, "target")
        return np.asarray(self._restore(result, target, target_mask), np.float32)

    def applies_to(self, modality: str) -> bool:
        """Whether it harmonizes images of a modality.

        Parameters
        ----------
        modality
            A BIDS suffix (``T1w``, ``T2w``, ``FLAIR``).

        Returns
        -------
        bool
            True for the modalities it was trained on, and for any modality where it learned
            nothing.
        """
        return self.modalities is None or modality in self.modalities

    def harmonize_file(
        self,
        *,
        input_path,
        target_path,
        out,
        mask_path=None,
        target_mask_path=None,
        force: bool = False,
        allow_modality_mismatch: bool = False,
    ) -> Path:
        """Harmonize a NIfTI image to the site of a target image and write the result.

        The output is float32 NIfTI on the input's grid and affine, with its JSON sidecar and the
        result's arrays (the method's ``array_keys``, ``<stem>_<key>.npy``, named in the sidecar;
        written last). A trained model that records its training images' voxel size harmonizes
        images of another voxel size on that grid: resampled to it (linear; masks nearest) and
        the prediction back to the input's grid, recorded in the sidecar (an invertible method
        refuses them instead: its exact inverse needs the model's grid).

        Parameters
        ----------
        input_path
            The image to harmonize.
        target_path
            One image of the target site.
        out
            The output NIfTI file; its sidecar is ``out`` with ``.json``.
        mask_path, target_mask_path
            Their brain masks (default: the automatic mask of each image).
        force
            Replace existing outputs; an array file the new result does not have is removed.
        allow_modality_mismatch
            Harmonize where BIDS suffixes show that the input and the target image are of
            different modalities (else refused).

        Returns
        -------
        pathlib.Path
            The harmonized image's path.

        Raises
        ------
        InputError
            An output that exists without ``force``, a file that cannot be read, a modality
            mismatch, or (an invertible method) an image off the model's grid: one sentence
            naming the file.
        """
        from mrharmony.data.images import voxel_size
        from mrharmony.io import check_new_file, save_nifti, write_json

        out, sidecar = output_paths(out, force=force)
        for key in self.array_keys:  # before the work: a refused output costs nothing
            check_new_file(array_path(out, key), force=force)
        extra = {}
        kinds = bids_modality(input_path), bids_modality(target_path)
        if None not in kinds and kinds[0] != kinds[1]:
            if not allow_modality_mismatch:
                raise InputError(
                    f"is a {kinds[0]} image but the target image {Path(target_path).name} is {kinds[1]}; "
                    "pass --allow-modality-mismatch to harmonize across modalities.",
                    input_path,
                )
            extra["ModalityMismatch"] = f"{kinds[0]} input, {kinds[1]} target"
        image, affine, mask, target, tmask = read_inputs(
            input_path=input_path, target_path=target_path, mask_path=mask_path, target_mask_path=target_mask_path
        )
        target_affine = read_affine(target_path)
        grid = self.training_voxel_size
        moved = {}
        if grid is not None:
            for what, path, aff in (("Input", input_path, affine), ("Target", target_path, target_affine)):
                have = voxel_size(aff)
                if np.any(np.abs(have - grid) > VOXEL_TOLERANCE * grid):
                    if self.invertible:
                        raise InputError(
                            f"has {' x '.join(f'{v:g}' for v in have)} mm voxels, but the model learned "
                            f"from {' x '.join(f'{v:g}' for v in grid)} mm images; {self.title}'s exact "
                            "inverse needs the model's grid: resample the image first.",
                            path,
                        )
                    moved[what] = have
        if "Input" in moved:
            small, small_mask = resample(image, moved["Input"] / grid), resample(mask, moved["Input"] / grid, order=0)
        else:
            small, small_mask = image, mask
        if "Target" in moved:
            target, tmask = resample(target, moved["Target"] / grid), resample(tmask, moved["Target"] / grid, order=0)
        sizes = {"Input": voxel_size(affine), "Target": voxel_size(target_affine)}
        for what in moved:
            sizes[what] = grid
        result = self.transform(
            small,
            target=target,
            mask=small_mask,
            target_mask=tmask,
            voxel_mm=sizes["Input"],
            target_voxel_mm=sizes["Target"],
        )
        if "Input" in moved:
            result = HarmonizedImage(
                resample(result.image, np.asarray(image.shape) / np.asarray(small.shape), shape=image.shape),
                dict(result.sidecar),
            )
        for what, have in moved.items():
            extra[f"{what}Resampled"] = {
                "VoxelSize": [float(v) for v in have],
                "ModelVoxelSize": [float(v) for v in grid],
                "Method": "linear interpolation to the model's voxel size" + (" and back" if what == "Input" else ""),
            }
        extra.update({key: array_path(out, key).name for key in result.arrays})
        save_nifti(out, result.image, affine)
        write_json(
            sidecar,
            {
                **self.sidecar(
                    result,
                    input_path=input_path,
                    target_path=target_path,
                    mask_path=mask_path,
                    target_mask_path=target_mask_path,
                ),
                **extra,
            },
        )
        for key in self.array_keys:
            path = array_path(out, key)
            if key in result.arrays:
                save_array(path, result.arrays[key])
            elif path.exists():  # left by an earlier result (--force): no longer this output's
                path.unlink()
        return out

    @property
    def training_voxel_size(self) -> np.ndarray | None:
        """The voxel size of the images the model learned from.

        Returns
        -------
        numpy.ndarray or None
            Its three edges (mm); None when it learned nothing or does not record it.
        """
        return None

    def sidecar(
        self, result: HarmonizedImage, *, input_path, target_path, mask_path=None, target_mask_path=None
    ) -> dict:
        """The JSON sidecar of a harmonized image.

        Parameters
        ----------
        result
            What :meth:`transform` returned.
        input_path, target_path
            The input and the target image.
        mask_path, target_mask_path
            Their brain masks (None: the automatic mask).

        Returns
        -------
        dict
            What the image is, what made it (the version and :meth:`model_sidecar`), from which
            images and masks, and the result's own values.
        """
        return {
            "Description": self.description,
            "GeneratedBy": [{"Name": "mrharmony", "Version": self.version}],
            "Sources": [str(Path(input_path)), str(Path(target_path))],
            **self.model_sidecar(),
            "BrainMask": str(mask_path) if mask_path else AUTOMATIC_MASK,
            "TargetBrainMask": str(target_mask_path) if target_mask_path else AUTOMATIC_MASK,
            **result.sidecar,
        }

    @property
    def version(self) -> str:
        """The mrharmony version that made the harmonizer."""
        from mrharmony import __version__

        return __version__

    def model_sidecar(self) -> dict:
        """Sidecar entries describing the model.

        Returns
        -------
        dict
            The model's file and hashes and its training sites; empty for methods that learn
            nothing.
        """
        return {}

    # ---- the maths, in subclasses -------------------------------------------------------

    @abstractmethod
    def _transform(
        self, image: np.ndarray, mask: np.ndarray, target: np.ndarray, target_mask: np.ndarray
    ) -> HarmonizedImage:
        """The harmonization itself; masks are boolean and non-empty, shapes checked."""

    def _restore(self, result: HarmonizedImage, target: np.ndarray, target_mask: np.ndarray) -> np.ndarray:
        raise TypeError(f"{self.title} is not invertible")

    # ---- plumbing ------------------------------------------------------------------------

    @staticmethod
    def _checked(image, mask, what: str) -> tuple[np.ndarray, np.ndarray]:
        from mrharmony.data.masks import brain_mask

        image = np.asarray(image)
        if image.ndim != 3 or not np.issubdtype(image.dtype, np.number) or np.iscomplexobj(image):
            raise ValueError(f"the {what} must be a real 3D array, got {image.dtype} of shape {image.shape}")
        if not np.all(np.isfinite(image)):
            raise ValueError(f"the {what} has NaN or infinite values")
        if mask is None:
            mask = brain_mask(image)
        mask = np.asarray(mask, bool)
        if mask.shape != image.shape:
            raise ValueError(f"the brain mask of the {what} has shape {mask.shape}, the {what} {image.shape}")
        if not mask.any():
            raise ValueError(f"the brain mask of the {what} is empty")
        return image, mask


class TrainedImageHarmonizer(ImageHarmonizer):
    """A harmonizer with a network trained by the training engine and saved as ``model.pt``:
    ``net``, the model's ``meta`` and the ``model_file`` it was read from (None when built here)."""

    #: the command that trains it (named in errors)
    train_command: ClassVar[str] = "structural train"

    def __init__(
        self,
        net,
        *,
        meta: dict | None = None,
        model_file: str | os.PathLike | None = None,
        name: str | None = None,
        variant: tuple[str, str, str] | None = None,
    ):
        """``variant``: (row name, title, description) of a model that is not its paper's (a
        variant of this project): its rows (unless ``name`` is given), sidecars and reports say so."""
        meta = dict(meta or {})
        super().__init__(
            name=name or (variant[0] if variant else None), modalities=(meta.get("data") or {}).get("modalities")
        )
        if variant:
            self.title, self.description = variant[1], variant[2]
        self.net = net.eval()
        self.meta = meta
        self.model_file = None if model_file is None else Path(model_file)

    @classmethod
    @abstractmethod
    def build_network(cls, model: dict):
        """The untrained network that ``meta['model']`` (the method's settings) describes."""

    @classmethod
    def load(cls, path: str | os.PathLike, *, name: str | None = None, **options) -> TrainedImageHarmonizer:
        """A trained model (``model.pt`` or its run directory); a model of another method is
        refused with one sentence naming the file and the command that trains this one."""
        from mrharmony.engine.checkpoint import read_method_model

        obj, _, path = read_method_model(path, cls.method, cls.title, cls.train_command)
        return cls.from_saved(obj, path, name=name, **options)

    @classmethod
    def from_saved(
        cls, obj: dict, path: str | os.PathLike, *, name: str | None = None, **options
    ) -> TrainedImageHarmonizer:
        """The harmonizer from the contents ``obj`` of a saved model read from ``path``."""
        from mrharmony.engine.checkpoint import load_weights

        meta = obj.get("meta", {})
        net = cls.build_network(meta["model"])
        load_weights(net, obj, path)
        return cls(net, meta=meta, model_file=path, name=name, **options)

    @property
    def version(self) -> str | None:
        return self.meta.get("mrharmony_version")

    @property
    def training_sites(self) -> list[str] | None:
        return self.meta.get("training_sites")

    @property
    def training_voxel_size(self) -> np.ndarray | None:
        v = self.meta.get("voxel_size")
        return None if v is None else np.asarray(v, float)

    @property
    def split(self) -> dict | None:
        """The run's subjects: ``train``, ``validation`` and ``test`` (held out)."""
        return self.meta.get("split")

    def model_sidecar(self) -> dict:
        if self.model_file is None:
            return {"Model": None, "ModelSHA256": None, "ModelTrainingSites": self.training_sites}
        from mrharmony.engine.card import card_hash, card_of

        return {
            "Model": str(self.model_file.resolve()),
            "ModelSHA256": hashlib.sha256(self.model_file.read_bytes()).hexdigest(),
            "ModelCardSHA256": card_hash(card_of(self.meta or {})),
            "ModelTrainingSites": self.training_sites,
        }


def derivative_name(path: str | os.PathLike, desc: str) -> str:
    """The BIDS-derivative name of an image made from ``path``: ``desc-<desc>`` before its suffix
    (``sub-01_ses-a_T1w.nii.gz`` -> ``sub-01_ses-a_desc-harmonized_T1w.nii.gz``), replacing a
    ``desc`` it has; a name without a BIDS suffix gets ``_desc-<desc>`` at its end."""
    parts = nifti_stem(path).split("_")
    if len(parts) > 1 and "-" not in parts[-1]:
        entities = [p for p in parts[:-1] if not p.startswith("desc-")]
        return "_".join([*entities, f"desc-{desc}", parts[-1]]) + ".nii.gz"
    return "_".join([p for p in parts if not p.startswith("desc-")] + [f"desc-{desc}"]) + ".nii.gz"


def nifti_stem(path: str | os.PathLike) -> str:
    """A NIfTI file's name without ``.nii.gz`` / ``.nii``."""
    name = Path(path).name
    return (
        name[: -len(".nii.gz" if name.endswith(".nii.gz") else ".nii")]
        if name.endswith((".nii.gz", ".nii"))
        else Path(path).stem
    )


def array_path(out: str | os.PathLike, key: str) -> Path:
    """Where the array ``key`` of a harmonized image ``out`` is written: ``<stem>_<key>.npy``."""
    return Path(out).with_name(f"{nifti_stem(out)}_{key.lower()}.npy")


def save_array(path: Path, array: np.ndarray) -> None:
    """Write ``array`` as ``.npy``, atomically."""
    from mrharmony.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.asarray(array))


def output_paths(out: str | os.PathLike, *, force: bool) -> tuple[Path, Path]:
    """``out`` (a NIfTI file name) and its sidecar (``.json``), refused if they exist without
    ``force`` or cannot be written."""
    from mrharmony.io import check_new_file

    out = Path(out)
    if not out.name.endswith((".nii.gz", ".nii")):
        raise InputError("must be a NIfTI file name (.nii.gz or .nii).", out)
    sidecar = out.with_name(nifti_stem(out) + ".json")
    for path in (out, sidecar):
        check_new_file(path, force=force)
    parent = out.resolve().parent
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise InputError("cannot be written because its directory is not writable.", out)
    return out, sidecar


def read_inputs(*, input_path, target_path, mask_path=None, target_mask_path=None):
    """(image, affine, mask, target, target mask) from NIfTI files, each checked (one sentence
    naming the file); a missing mask is the image's automatic brain mask."""
    from mrharmony.data.structural import read_structural_image

    image, affine = read_structural_image(input_path)
    target, _ = read_structural_image(target_path, what="target image")
    mask = _file_mask(mask_path, image, input_path, "brain mask")
    tmask = _file_mask(target_mask_path, target, target_path, "target brain mask")
    return image, affine, mask, target, tmask


def read_affine(path) -> np.ndarray:
    """The affine of a NIfTI file (its header only)."""
    from mrharmony.data.images import read_image

    return np.asarray(read_image(path).affine, np.float64)


def resample(volume: np.ndarray, factor, *, order: int = 1, shape=None) -> np.ndarray:
    """``volume`` zoomed by ``factor`` per axis (scipy; ``order`` 0 for masks), cropped or padded
    to ``shape`` when given."""
    from scipy import ndimage

    out = ndimage.zoom(np.asarray(volume, np.float32), np.asarray(factor, float), order=order, mode="nearest")
    if shape is not None and out.shape != tuple(shape):
        fixed = np.zeros(shape, out.dtype)
        sl = tuple(slice(0, min(a, b)) for a, b in zip(out.shape, shape))
        fixed[sl] = out[sl]
        out = fixed
    return out > 0.5 if order == 0 else out


def _file_mask(path, image, source, what: str) -> np.ndarray:
    from mrharmony.data.masks import brain_mask
    from mrharmony.data.structural import read_structural_image

    if path is None:
        m, where = brain_mask(image), source
    else:
        m, where = read_structural_image(path, what="mask", shape=image.shape)[0] > 0, path
    if not np.any(m):
        raise InputError(f"gives an empty {what}.", where)
    return m
