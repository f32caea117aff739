"""``mrharmony dmri apply MODEL --dwi D --bval B --bvec V --mask M --out DIR [--target T]``.

Harmonizes a new subject's scan on the input platform to one or all target platforms:

1. the SH features of the scan (the model's SH settings; denoised first where the model's training
   denoised its input scans), scaled as the model's training scaled
   its input platform (by default with the platform's fixed statistics, so that what differs
   between this person and others survives; :mod:`mrharmony.dmri.features.normalization`);
2. the harmonizer on the whole volume (tiled);
3. back to the target platform's scale (the mean of its training scans' statistics);
4. written as float32 NIfTI, BIDS-derivative style, per target ``<prefix>_space-<target>``:
   ``..._model-sh_desc-harmonized_dwimap.nii.gz`` (SH coefficients), ``..._desc-harmonized_dwi``
   ``.nii.gz/.bval/.bvec`` (b0-normalized signal of every shell on the target platform's gradient
   table, one b=0 volume of 1.0 first), ``..._model-tensor_param-fa/md_dwimap.nii.gz`` and
   ``..._model-tensor_param-decfa_dwimap.nii.gz`` (direction-encoded colour FA; DTI of the lowest
   shell), where the target has two shells or more ``..._model-dki_param-mk/ak/rk_dwimap.nii.gz``
   (mean, axial and radial kurtosis of a DKI fit of every shell), with JSON sidecars, and a
   ``dataset_description.json``.

The output folder is built under a temporary name and moved into place at the end: a failed
run leaves nothing behind, and an existing output is kept unless ``force``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mrharmony import __version__
from mrharmony.data.gradients import read_gradients, write_gradients
from mrharmony.data.images import read_float32, read_image
from mrharmony.engine.card import card_hash, card_of
from mrharmony.errors import InputError
from mrharmony.io import (
    save_nifti,
    staged_output_dir,
    write_derivative_description,
    write_json,
)
from mrharmony.registration import finer_affine


def harmonize_arrays(
    h,
    dwi: np.ndarray,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    mask: np.ndarray,
    affine: np.ndarray,
    *,
    targets: list[str] | None = None,
    source=None,
    covariates: dict | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Steps 1-3 of the module docstring on arrays: SH fit, the method, the target's scale.

    Parameters
    ----------
    h
        A fitted :class:`~mrharmony.dmri.harmonizer.Harmonizer`.
    dwi
        The DWI series (X, Y, Z, N); denoised here first where the model's training denoised
        its input scans.
    bvals, bvecs
        Its gradient table, (N,) and (N, 3).
    mask
        Its brain mask (X, Y, Z), boolean.
    affine
        Its voxel-to-world affine.
    targets
        The target platforms (default: every target of the harmonizer).
    source
        The file named in errors.
    covariates
        The person's ``age``, ``sex`` and ``group``, for a model that adjusts for them (ComBat fitted
        on a study with covariates; :meth:`~mrharmony.dmri.harmonizer.Harmonizer.for_person`).

    Returns
    -------
    dict of str to dict
        Per target, ``sh`` (the harmonized SH coefficients at the platform's scale) and ``mask``
        (the input's brain on the target's grid); for the methods that harmonize DTI maps
        (ComBat), ``dti`` (FA, MD, DEC FA) instead of ``sh``, and ``kurtosis`` (``{"mk": ...}``) for
        targets where they harmonize MK too.

    Raises
    ------
    InputError
        A gradient table with fewer shells than the model's, naming ``source``.
    """
    from mrharmony.dmri.features.prepare import ScanFeatures
    from mrharmony.dmri.features.sh import fit_sh

    h = h.for_person(covariates, source=source)
    cfg = scan_sh(h, bvals, source=source)
    if h.denoise != "none":  # as the model's training denoised its input scans
        from mrharmony.dmri.features.denoise import denoise_dwi

        dwi = denoise_dwi(dwi, mask, h.denoise)
    coeffs = fit_sh(dwi, bvals, bvecs, mask, cfg, source=source)
    scan = h.scaled_input(ScanFeatures.own_scale(coeffs, mask, affine, cfg))
    out = {}
    if not h.predicts_sh:  # methods that harmonize the DTI maps (ComBat), and MK where the target has it
        maps = h.predict_dti(scan)
        mk = h.predict_kurtosis(scan)
        return {
            t: {"dti": maps[t], "mask": h.target_mask(mask, t), **({"kurtosis": {"mk": mk[t]}} if t in mk else {})}
            for t in targets or h.targets
        }
    pred = h.predict(scan)
    for t in targets or h.targets:
        tmask = h.target_mask(mask, t)
        out[t] = {"sh": h.target_coefficients(pred[t], t, tmask), "mask": tmask}
    return out


#: How far each voxel dimension of a scan may be from the model's input protocol (relative); its
#: shells' b-values may be as far as b-values of one shell are (``data.gradients.SHELL_TOLERANCE``).
VOXEL_TOLERANCE = 0.10
TENSOR_MAPS = {"fa": "fractional anisotropy", "md": "mean diffusivity (mm^2/s)", "decfa": "direction-encoded colour FA"}


def model_shells(h) -> list[float] | None:
    """The b-values of the shells a model learned from (None: a model that predates the record)."""
    proto = h.reference.get("input_protocol") or {}
    if proto.get("shells"):
        return [float(b) for b in proto["shells"]]
    if "shell" in proto:  # models saved before multi-shell features
        return [float(proto["shell"])]
    return h.reference["sh"].get("shells")


def matched_shells(h, bvals: np.ndarray, *, source=None) -> tuple[list[float], list[float]]:
    """The scan's shell nearest to each of the model's shells (in the model's order), and the scan's
    shells left over.

    Raises
    ------
    InputError
        A scan with fewer shells than the model: one sentence naming ``source``.
    """
    from mrharmony.dmri.features.sh import SHConfig, shell_values

    cfg = SHConfig(**h.reference["sh"])
    have = shell_values(bvals, cfg.b0_threshold)
    want = model_shells(h)
    if want is None:
        return have, []
    if len(have) < len(want):
        listed = ", ".join(f"{b:g}" for b in have) or "none"
        raise InputError(
            f"has {len(have)} shell(s) (b={listed} s/mm^2), but the model needs "
            f"{', '.join(f'b={b:g}' for b in want)} s/mm^2.",
            source,
        )
    free = list(have)
    chosen = []
    for b in want:
        nearest = min(free, key=lambda x: abs(x - b))
        chosen.append(nearest)
        free.remove(nearest)
    return chosen, free


def scan_sh(h, bvals: np.ndarray, *, source=None):
    """The SH settings that fit a new scan's features: the model's, on the scan's shells matched to
    the model's (:func:`matched_shells`)."""
    from mrharmony.dmri.features.sh import SHConfig

    chosen, _ = matched_shells(h, bvals, source=source)
    return SHConfig(**{**h.reference["sh"], "shells": sorted(chosen)})


def protocol_mismatches(h, zooms, bvals: np.ndarray, *, dwi, bval) -> list[tuple[str, object]]:
    """Where a scan's protocol differs from the one the model learned from, beyond the tolerances.

    Each of the model's shells (its ``input_protocol``) is matched to the scan's nearest one, whose
    b-value may be as far from it as b-values of one shell are (``SHELL_TOLERANCE`` of
    :mod:`mrharmony.data.gradients`); a shell of the scan the model does not know is a mismatch
    too (harmonized anyway, it is left out). Each voxel edge may be :data:`VOXEL_TOLERANCE` from
    the model's (relative).

    Parameters
    ----------
    h
        A fitted harmonizer.
    zooms
        The scan's voxel size (mm; the first three values are read).
    bvals
        Its b-values (N,).
    dwi, bval
        Its files, named in the sentences.

    Returns
    -------
    list of tuple
        (sentence, the file it names) per mismatch; empty when the protocol matches or when the
        model predates the record (nothing to check against).

    Raises
    ------
    InputError
        A scan with fewer shells than the model (no tolerance can make up for a missing shell).
    """
    from mrharmony.data.gradients import SHELL_TOLERANCE

    proto = h.reference.get("input_protocol")
    if not proto:
        return []
    out = []
    chosen, extra = matched_shells(h, bvals, source=bval)
    known = model_shells(h) or []
    for have, want in zip(chosen, known):
        if abs(have - want) > SHELL_TOLERANCE:
            out.append(
                (
                    f"has its shell at b={have:g} s/mm^2, but the model learned from b={want:g} s/mm^2 "
                    f"scans ({proto['platform']}; tolerance {SHELL_TOLERANCE:g})",
                    bval,
                )
            )
    for b in extra:
        listed = ", ".join(f"{x:g}" for x in known)
        out.append(
            (
                f"has a b={b:g} s/mm^2 shell the model did not learn from (its shells: b={listed} s/mm^2; "
                "harmonized anyway, that shell is left out)",
                bval,
            )
        )
    zooms = np.asarray(zooms[:3], float)
    # one voxel size, or (a model of several sites) any of several
    sizes = [np.asarray(v, float) for v in proto.get("voxel_sizes") or [proto["voxel_size"]]]
    if all(np.any(np.abs(zooms - v) > VOXEL_TOLERANCE * v) for v in sizes):
        listed = " or ".join(" x ".join(f"{z:g}" for z in v) for v in sizes)
        out.append(
            (
                f"has {' x '.join(f'{z:g}' for z in zooms)} mm voxels, but the model learned from "
                f"{listed} mm scans ({proto['platform']}; tolerance {VOXEL_TOLERANCE:.0%})",
                dwi,
            )
        )
    return out


def check_protocol(h, zooms, bvals: np.ndarray, *, dwi, bval, allow: bool) -> list[str]:
    """Refuse a scan whose protocol the model was not trained for, unless allowed.

    Parameters
    ----------
    h, zooms, bvals, dwi, bval
        As for :func:`protocol_mismatches`.
    allow
        Harmonize it anyway (``--allow-protocol-mismatch``).

    Returns
    -------
    list of str
        The mismatches, each prefixed with its file's name, to record in every sidecar.

    Raises
    ------
    InputError
        A mismatch and not ``allow``: one sentence naming both values and the file.
    """
    found = protocol_mismatches(h, zooms, bvals, dwi=dwi, bval=bval)
    if found and not allow:
        text, source = found[0]
        raise InputError(f"{text}; pass --allow-protocol-mismatch to harmonize it anyway.", source)
    return [f"{Path(source).name} {text}" for text, source in found]


def apply_model(
    model: str | os.PathLike,
    *,
    dwi: str,
    bval: str,
    bvec: str,
    mask: str | None,
    out: str | os.PathLike,
    targets: list[str] | None = None,
    prefix: str | None = None,
    force: bool = False,
    description: bool = True,
    allow_protocol_mismatch: bool = False,
    covariates: dict | None = None,
    target_scans: list[dict] | None = None,
    target_name: str = "target",
) -> Path:
    """Harmonize one scan into a new output folder (``mrharmony dmri apply``; see the module docstring).

    Parameters
    ----------
    model
        A saved harmonizer (:func:`mrharmony.dmri.loading.load_harmonizer`).
    dwi, bval, bvec
        The scan on the model's input platform: its 4D NIfTI series and FSL gradient table.
    mask
        Its brain mask; None: computed from the b=0 volumes
        (:func:`mrharmony.data.dataset.automatic_mask`) and written with the outputs.
    out
        The output folder (built under a temporary name and moved into place at the end).
    targets
        The target platforms (default: every target of the model).
    prefix
        The start of the output names (default: the DWI's name without ``_dwi``).
    force
        Replace an existing output folder.
    description
        Write ``dataset_description.json`` (False for outputs nested in a derivative dataset
        that has one).
    allow_protocol_mismatch
        Harmonize a scan whose protocol differs from the model's (the mismatch is recorded in
        every sidecar).
    covariates
        The person's ``age``, ``sex`` and ``group`` (None where unknown), for a model that adjusts for
        them; recorded in every sidecar.
    target_scans
        For a model that harmonizes to the scanner of given scans (``stylecode``): one or more scans
        of the target scanner, of any person (``dwi``, ``bval``, ``bvec`` and optionally ``mask``
        files each); the outputs are named after ``target_name``.

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    InputError
        A model or file that cannot be read, a target the model does not predict, a series that
        is not 4D or holds NaN or infinite values, a mask on another grid or empty, a protocol
        the model was not trained for, or an existing ``out`` without ``force``: one sentence
        naming the file. A failed call leaves nothing behind.

    Examples
    --------
    >>> apply_model("runs/diqt", dwi="sub-09_dwi.nii.gz", bval="sub-09_dwi.bval",
    ...             bvec="sub-09_dwi.bvec", mask=None, out="harmonized")  # doctest: +SKIP
    PosixPath('harmonized')
    """
    from mrharmony.dmri.features.dti import KURTOSIS_MAPS
    from mrharmony.dmri.features.sh import SHConfig
    from mrharmony.dmri.loading import load_harmonizer

    h = load_harmonizer(model).for_person(covariates, source=model)
    if target_scans:
        if not hasattr(h, "with_target_scans"):
            raise InputError(
                f"is a {h.method} model, which harmonizes to the platforms it learned ({', '.join(h.targets)}); target "
                "scans are for models that read a scanner from them (stylecode).",
                model,
            )
        if target_name in h.targets:
            raise InputError(f"names a training site of the model ({target_name}); give the target scans another name.")
        if targets:
            raise InputError("names target platforms and target scans; give one or the other.")
        feats, grads = target_features(h, target_scans)
        h = h.with_target_scans(target_name, feats, grads)
        targets = [target_name]
    targets = targets or h.targets
    unknown = [t for t in targets if t not in h.targets]
    if unknown:
        raise InputError(f"the model predicts {', '.join(h.targets)}, not {unknown[0]!r}.", model)
    img = read_image(dwi)
    if len(img.shape) != 4:
        raise InputError(f"is {len(img.shape)}D with shape {tuple(img.shape)}; a DWI series must be 4D.", dwi)
    if mask is not None:
        mimg = read_image(mask)
        if tuple(mimg.shape[:3]) != tuple(img.shape[:3]):
            raise InputError(
                f"has shape {tuple(mimg.shape)} but {Path(dwi).name} has spatial shape {tuple(img.shape[:3])}.", mask
            )
    bvals, bvecs = read_gradients(bval, bvec, n_volumes=int(img.shape[3]))
    mismatches = check_protocol(h, img.header.get_zooms(), bvals, dwi=dwi, bval=bval, allow=allow_protocol_mismatch)
    data = read_float32(img, dwi)
    if not np.all(np.isfinite(data)):
        raise InputError("has NaN or infinite values.", dwi)
    if mask is None:
        from mrharmony.data.dataset import automatic_mask

        m = automatic_mask(data, bvals)
    else:
        m = np.asanyarray(mimg.dataobj)
        m = (m[..., 0] if m.ndim == 4 else m) > 0
    if not m.any():
        raise InputError("is empty (no voxel inside the brain).", mask or dwi)
    results = harmonize_arrays(h, data, bvals, bvecs, m, img.affine, targets=targets, source=bval)
    cfg = SHConfig(**h.reference["sh"])  # the coefficients' settings; the target's table gives the shells
    prefix = prefix or Path(dwi).name.split(".")[0].removesuffix("_dwi")
    with staged_output_dir(out, force=force) as tmp:
        if mask is None:
            save_nifti(tmp / f"{prefix}_desc-brain_mask.nii.gz", m.astype(np.uint8), img.affine, dtype=np.uint8)
            write_json(
                tmp / f"{prefix}_desc-brain_mask.json",
                {
                    "Description": "brain mask computed by mrharmony (median Otsu on the mean b=0 image)",
                    "Sources": [str(Path(dwi).resolve())],
                },
            )
        if description:
            write_derivative_description(
                tmp / "dataset_description.json",
                name="mrharmony harmonized diffusion MRI",
                description=f"mrharmony dmri apply ({h.name})",
            )
        card_sha = card_hash(card_of(getattr(h, "meta", None) or {}))
        for t, res in results.items():
            aff = finer_affine(img.affine, h.ratios[t])
            base = f"{prefix}_space-{''.join(ch for ch in t if ch.isalnum())}"  # a BIDS label: letters and digits
            side = {
                "Method": h.name,
                "TargetPlatform": t,
                "Model": str(Path(model).resolve()),
                "ModelCardSHA256": card_sha,
                "SphericalHarmonics": h.reference["sh"],
                "mrharmonyVersion": __version__,
                **({"ProtocolMismatch": mismatches} if mismatches else {}),
                **({"Covariates": h.person} if h.person else {}),
                **({"TargetScans": [str(Path(f["dwi"]).resolve()) for f in target_scans]} if target_scans else {}),
            }
            kurtosis: dict = res.get("kurtosis", {})
            of = "the harmonized signal"
            if "dti" in res:  # a method of maps: the input's maps, adjusted
                fa, md, dec = res["dti"]
                of = f"the input's signal on the target's gradient table, adjusted by {h.name}"
            else:
                fa, md, dec, kurtosis = _write_signal(tmp, base, res, side, h.target_gradients(t), cfg, aff)
            for param, arr in (("fa", fa), ("md", md), ("decfa", dec)):
                save_nifti(tmp / f"{base}_model-tensor_param-{param}_dwimap.nii.gz", arr, aff)
                what = f"{TENSOR_MAPS[param]} of a DTI fit (dipy) of the lowest shell of {of}"
                write_json(tmp / f"{base}_model-tensor_param-{param}_dwimap.json", {**side, "Description": what})
            for param, arr in kurtosis.items():
                save_nifti(tmp / f"{base}_model-dki_param-{param}_dwimap.nii.gz", arr, aff)
                what = f"{KURTOSIS_MAPS[param]} of a DKI fit (dipy) of every shell of {of}"
                write_json(tmp / f"{base}_model-dki_param-{param}_dwimap.json", {**side, "Description": what})
    return Path(out)


def _write_signal(tmp: Path, base: str, res: dict, side: dict, gradients, cfg, aff):
    """Write the harmonized SH coefficients and signal of one target; return its DTI maps and, for a
    target of two shells or more, its DKI maps (else an empty dict)."""
    from mrharmony.dmri.features.dti import dki_maps, dti_maps, has_kurtosis, signal_from_sh

    save_nifti(tmp / f"{base}_model-sh_desc-harmonized_dwimap.nii.gz", res["sh"], aff)
    write_json(tmp / f"{base}_model-sh_desc-harmonized_dwimap.json", side)
    tb, tv, signal = signal_from_sh(res["sh"], *gradients, cfg)
    signal[~res["mask"]] = 0
    save_nifti(tmp / f"{base}_desc-harmonized_dwi.nii.gz", signal, aff)
    write_gradients(tmp / f"{base}_desc-harmonized_dwi.bval", tmp / f"{base}_desc-harmonized_dwi.bvec", tb, tv)
    write_json(tmp / f"{base}_desc-harmonized_dwi.json", {**side, "Description": "b0-normalized signal"})
    kurtosis = dki_maps(signal, tb, tv, res["mask"]) if has_kurtosis(tb) else {}
    return (*dti_maps(signal, tb, tv, res["mask"]), kurtosis)


def target_features(h, scans: list[dict], *, source=None):
    """The SH features of target scans (``dwi``, ``bval``, ``bvec`` and optional ``mask`` files
    each) on the model's shells, and the first one's gradient table.

    Raises
    ------
    InputError
        A file that cannot be read, a series that is not 4D, a mask of another grid, or a target scan
        whose shells are not the model's (within tolerance): one sentence naming the file.
    """
    from mrharmony.data.dataset import automatic_mask
    from mrharmony.data.gradients import SHELL_TOLERANCE
    from mrharmony.dmri.features.prepare import ScanFeatures
    from mrharmony.dmri.features.sh import fit_sh

    feats, gradients = [], None
    for files in scans:
        img = read_image(files["dwi"])
        if len(img.shape) != 4:
            raise InputError(f"is {len(img.shape)}D; a target DWI series must be 4D.", files["dwi"])
        bvals, bvecs = read_gradients(files["bval"], files["bvec"], n_volumes=int(img.shape[3]))
        chosen, extra = matched_shells(h, bvals, source=files["bval"])
        for have, want in zip(chosen, model_shells(h) or []):
            if abs(have - want) > SHELL_TOLERANCE or extra:
                raise InputError(
                    f"has shells at b={', '.join(f'{b:g}' for b in sorted(chosen + extra))} s/mm^2; the model learned "
                    f"from b={', '.join(f'{b:g}' for b in model_shells(h) or [])} s/mm^2 scans.",
                    files["bval"],
                )
        data = read_float32(img, files["dwi"])
        if files.get("mask"):
            mimg = read_image(files["mask"])
            if tuple(mimg.shape[:3]) != tuple(img.shape[:3]):
                raise InputError(f"has shape {tuple(mimg.shape)}; its DWI has {tuple(img.shape[:3])}.", files["mask"])
            mask = np.asanyarray(mimg.dataobj) > 0
        else:
            mask = automatic_mask(data, bvals)
        cfg = scan_sh(h, bvals, source=files["bval"])
        coeffs = fit_sh(data, bvals, bvecs, mask, cfg, source=files["bval"])
        feats.append(ScanFeatures.own_scale(coeffs, mask, img.affine, cfg))
        gradients = gradients or (bvals, bvecs)
    return feats, gradients
