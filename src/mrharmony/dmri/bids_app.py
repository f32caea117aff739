"""``mrharmony bids BIDS_DIR OUTPUT_DIR participant --participant-label 01 02 --model MODEL``.

The BIDS App convention (one participant per cluster job): every dwi run of the named
participants that matches the ``--filter`` entities (e.g. ``ses=ge``: the scans of the input
platform) is harmonized with the model and written as a BIDS derivative dataset in OUTPUT_DIR:
``dataset_description.json`` (``DatasetType: derivative``, ``GeneratedBy``), and for each run,
in the run's own ``sub-*/[ses-*/]dwi/`` folder, the outputs of ``mrharmony dmri apply`` named
``<source entities>_space-<target>_desc-harmonized_...`` with JSON sidecars, float32. A brain
mask is taken from a ``..._desc-brain_mask.nii.gz`` derivative of the run when there is one,
else computed and written beside the outputs.

Each participant's outputs are built under a temporary name and moved into place whole; a
participant whose outputs exist is an error unless ``--force`` (checked for every participant
before any work). Only the ``participant`` level
exists: harmonization has nothing to do at the group level.
"""

from __future__ import annotations

import os
from pathlib import Path

from mrharmony.errors import InputError


def run_bids_app(
    bids_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    level: str,
    *,
    model: str,
    participants: list[str] | None = None,
    filters: list[str] | None = None,
    targets: list[str] | None = None,
    force: bool = False,
    quiet: bool = False,
    allow_protocol_mismatch: bool = False,
) -> list[Path]:
    from mrharmony.data.gradients import read_gradients
    from mrharmony.data.images import read_image
    from mrharmony.data.layouts import ENTITIES, find_brain_mask, open_bids
    from mrharmony.dmri.apply import apply_model, check_protocol
    from mrharmony.dmri.loading import load_harmonizer
    from mrharmony.io import staged_output_dir, write_derivative_description
    from mrharmony.progress import Progress

    if level != "participant":
        raise InputError(f"analysis level {level!r} does not exist; mrharmony runs at the participant level.")
    root, out = Path(bids_dir).resolve(), Path(output_dir)
    inside = out.resolve() == root or root in out.resolve().parents
    if inside and "derivatives" not in out.resolve().relative_to(root).parts:
        raise InputError("is inside the BIDS dataset; write the derivatives elsewhere or under its derivatives/.", out)
    h = load_harmonizer(model)  # a bad model stops the run before any output
    query = {}
    for f in filters or []:
        key, _, value = f.partition("=")
        if key not in ENTITIES or not value:
            raise InputError(f"filter {f!r} is not ENTITY=VALUE with ENTITY one of {', '.join(ENTITIES)}.")
        query[ENTITIES[key]] = value
    layout = open_bids(root)
    labels = [p.removeprefix("sub-") for p in participants] if participants else layout.get_subjects()
    unknown = sorted(set(labels) - set(layout.get_subjects()))
    if unknown:
        raise InputError(f"has no participant sub-{unknown[0]}.", root)
    jobs = []
    for label in labels:
        files = layout.get(subject=label, suffix="dwi", extension=[".nii.gz", ".nii"], return_type="object", **query)
        if not files:
            raise InputError(f"has no dwi run of sub-{label} matching {query or 'any entity'}.", root / f"sub-{label}")
        for f in files:
            bval, bvec = layout.get_bval(f.path), layout.get_bvec(f.path)
            if not bval or not bvec:
                raise InputError("has no .bval / .bvec beside it or inherited.", f.path)
            # every run's protocol is checked before anything is written
            bvals, _ = read_gradients(bval, bvec)
            check_protocol(
                h, read_image(f.path).header.get_zooms(), bvals, dwi=f.path, bval=bval, allow=allow_protocol_mismatch
            )
            jobs.append((label, Path(f.path), bval, bvec))
    for label in dict.fromkeys(j[0] for j in jobs):
        if (out / f"sub-{label}").exists() and not force:
            raise InputError("already exists; pass --force to replace it.", out / f"sub-{label}")
    out.mkdir(parents=True, exist_ok=True)
    write_derivative_description(
        out / "dataset_description.json",
        name=f"{root.name} harmonized by mrharmony ({h.name})",
        description=f"mrharmony bids: harmonization to {', '.join(targets or h.targets)}",
        SourceDatasets=[{"URL": root.as_uri()}],
    )
    written = []
    progress = Progress(total=len(jobs), unit="runs", desc="harmonize", quiet=quiet)
    for label in dict.fromkeys(j[0] for j in jobs):
        subject_dir = root / f"sub-{label}"
        with staged_output_dir(out / f"sub-{label}", force=force) as tmp:
            for _, dwi, bval, bvec in (j for j in jobs if j[0] == label):
                dest = tmp / dwi.parent.relative_to(subject_dir)
                mask = find_brain_mask(dwi, root)
                prefix = dwi.name.split(".")[0].removesuffix("_dwi")
                run_dir = tmp / f".run-{prefix}"
                apply_model(
                    model,
                    dwi=str(dwi),
                    bval=bval,
                    bvec=bvec,
                    mask=str(mask) if mask else None,
                    out=run_dir,
                    targets=targets,
                    prefix=prefix,
                    description=False,
                    allow_protocol_mismatch=allow_protocol_mismatch,
                )
                dest.mkdir(parents=True, exist_ok=True)
                for item in run_dir.iterdir():
                    os.replace(item, dest / item.name)
                run_dir.rmdir()
                progress.update(1)
        written.append(out / f"sub-{label}")
    progress.close()
    return written
