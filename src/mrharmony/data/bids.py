"""Reading traveling heads from BIDS (pybids) and describing a dataset from its files.

A BIDS dataset holds traveling heads when its subjects have dwi runs on several platforms, the
platform being told apart by one entity: the session (``ses``), the acquisition label (``acq``)
or the run (``run``). :func:`index_bids` finds each subject's scan on each platform (the
platform's name is the entity's value); :func:`describe` writes the ``dataset.yaml`` that
:func:`mrharmony.data.load_dataset` reads, from the images' headers, the gradient tables and the
JSON sidecars (echo time, manufacturer), for a BIDS or a MUSHAC-layout folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


from mrharmony.data.dataset import DatasetSpec, PlatformSpec, Scan, TravelingHeads
from mrharmony.errors import InputError

ENTITIES = {"ses": "session", "acq": "acquisition", "run": "run"}  # BIDS key -> pybids entity


def _layout(root: Path):
    try:
        from bids import BIDSLayout
    except ImportError:  # pragma: no cover - pybids is a dependency
        raise InputError("reading BIDS needs the pybids package (pip install pybids).", root) from None
    if not (root / "dataset_description.json").is_file():
        raise InputError("is not a BIDS dataset (no dataset_description.json).", root)
    return BIDSLayout(root, validate=False)


def _dwi_runs(root: Path, entity: str) -> dict[tuple[str, str], list]:
    """(subject, platform) -> the dwi image files of a BIDS dataset."""
    layout = _layout(root)
    key = ENTITIES[entity]
    runs: dict[tuple[str, str], list] = {}
    for f in layout.get(suffix="dwi", extension=[".nii.gz", ".nii"], return_type="object"):
        ent = f.get_entities()
        if key not in ent:
            continue
        runs.setdefault((f"sub-{ent['subject']}", str(ent[key])), []).append((f, layout))
    return runs


def _mask_for(dwi: Path, root: Path) -> Path | None:
    """A brain mask derivative of a dwi image: ``<name>_desc-brain_mask.nii.gz`` beside it or at
    the same place under ``derivatives/<pipeline>/``."""
    stem = dwi.name.split(".")[0].removesuffix("_dwi")
    name = f"{stem}_desc-brain_mask.nii.gz"
    rel = dwi.parent.relative_to(root)
    for candidate in [dwi.parent / name, *sorted((root / "derivatives").glob(f"*/{rel}/{name}"))]:
        if candidate.is_file():
            return candidate
    return None


def index_bids(ds: TravelingHeads, subjects: list[str] | None) -> tuple[list[str], dict]:
    """The subjects indexed (``subjects``, or those with a dwi run on every platform) and the
    (subject, platform) -> Scan index."""
    root = ds.data_root
    entity = ds.spec.bids_entity
    runs = _dwi_runs(root, entity)
    found = sorted({s for s, _ in runs})
    wanted = subjects if subjects is not None else [s for s in found if all((s, p) in runs for p in ds.platforms)]
    missing = [s for s in wanted if s not in found]
    if missing:
        raise InputError(f"has no dwi runs for subject {missing[0]}.", root)
    index = {}
    for s in wanted:
        for name, plat in ds.platforms.items():
            files = runs.get((s, name), [])
            if not files:
                raise InputError(f"has no dwi run with {entity}-{name} for subject {s} (platform {name}).", root / s)
            if len(files) > 1:
                names = ", ".join(f.filename for f, _ in files)
                raise InputError(f"holds {len(files)} dwi runs with {entity}-{name} for subject {s} ({names}); "
                                 "keep one per platform or tell them apart by another entity.", root / s)
            f, layout = files[0]
            dwi = Path(f.path)
            bval, bvec = layout.get_bval(f.path), layout.get_bvec(f.path)
            if not bval or not bvec:
                raise InputError("has no .bval / .bvec beside it or inherited.", dwi)
            index[(s, name)] = Scan(s, plat, dwi, Path(bval), Path(bvec), _mask_for(dwi, root))
    return list(wanted), index


def _sidecar(dwi: Path, layout=None) -> dict:
    if layout is not None:
        try:
            return dict(layout.get_metadata(str(dwi)))
        except Exception:  # noqa: BLE001 - metadata is optional
            return {}
    side = dwi.with_name(dwi.name.split(".")[0] + ".json")
    try:
        return json.loads(side.read_text()) if side.is_file() else {}
    except ValueError:
        raise InputError("is not valid JSON.", side) from None


def _platform_from_files(name: str, role: str, dwi: Path, bval: Path, bvec: Path, meta: dict,
                         **extra) -> PlatformSpec:
    from mrharmony.data.validate import B0_THRESHOLD, read_gradients, read_image

    img = read_image(dwi)
    bvals, _ = read_gradients(bval, bvec, n_volumes=int(img.shape[3]) if len(img.shape) == 4 else None)
    zooms = tuple(round(float(z), 4) for z in img.header.get_zooms()[:3])
    dw = bvals[bvals > B0_THRESHOLD]
    shells = sorted({float(round(b / 100.0) * 100) for b in dw})
    te = meta.get("EchoTime")
    scanner = " ".join(str(meta[k]) for k in ("Manufacturer", "ManufacturersModelName") if meta.get(k)) or None
    return PlatformSpec(name=name, role=role, voxel_size=zooms, bvalues=[0.0, *shells],
                        te_ms=float(te) * 1000.0 if te else None,
                        n_directions=max(1, int(round(len(dw) / max(len(shells), 1)))),
                        **({"scanner": scanner} if scanner else {}), **extra)


def describe(data: str | os.PathLike, out: str | os.PathLike, *, layout: str, input_platform: str,
             entity: str | None = None, name: str | None = None, force: bool = False) -> Path:
    """Write ``out/dataset.yaml`` for the scans in ``data`` (BIDS or MUSHAC layout).

    The platforms are read from the first subject that has them all: voxel size from the header,
    shells and directions from the gradient table, echo time and manufacturer from the JSON
    sidecar when there is one. ``input_platform`` names the input: the entity value for BIDS,
    ``scanner/protocol`` for the MUSHAC layout.
    """
    from mrharmony.config import dump_yaml
    from mrharmony.io import write_text

    data, out = Path(data).resolve(), Path(out)
    target = out / "dataset.yaml"
    if target.exists() and not force:
        raise InputError("already exists; pass --force to overwrite it.", target)
    if not data.is_dir():
        raise InputError("is not a directory.", data)
    if layout == "bids":
        if entity not in ENTITIES:
            raise InputError(f"a BIDS dataset needs --entity (one of {', '.join(ENTITIES)}).", data)
        runs = _dwi_runs(data, entity)
        values = sorted({v for _, v in runs})
        if input_platform not in values:
            raise InputError(f"has no dwi runs with {entity}-{input_platform} (found: {', '.join(values) or 'none'}).",
                             data)
        subjects = sorted({s for s, _ in runs if all((s, v) in runs for v in values)})
        if not subjects:
            raise InputError(f"has no subject with a dwi run for every {entity} ({', '.join(values)}).", data)
        platforms = []
        for v in values:
            f, lay = runs[(subjects[0], v)][0]
            platforms.append(_platform_from_files(v, "input" if v == input_platform else "target", Path(f.path),
                                                  Path(lay.get_bval(f.path)), Path(lay.get_bvec(f.path)),
                                                  _sidecar(Path(f.path), lay)))
        extra = {"layout": "bids", "bids_entity": entity}
    elif layout == "mushac":
        pairs = sorted({(p.parent.name, p.name) for p in data.glob("*/*/*") if (p / "dwi.nii.gz").is_file()})
        if not pairs:
            raise InputError("holds no <subject>/<scanner>/<protocol>/dwi.nii.gz.", data)
        names = [f"{a}/{b}" for a, b in pairs]
        if input_platform not in names:
            raise InputError(f"has no platform {input_platform!r} (found: {', '.join(names)}).", data)
        subjects = sorted(d.name for d in data.iterdir() if d.is_dir() and all((d / n / "dwi.nii.gz").is_file()
                                                                                 for n in names))
        if not subjects:
            raise InputError("has no subject with every scanner/protocol.", data)
        platforms = []
        for (scanner, protocol), n in zip(pairs, names):
            folder = data / subjects[0] / n
            dwi = folder / "dwi.nii.gz"
            platforms.append(_platform_from_files(f"{scanner}_{protocol}", "input" if n == input_platform else "target",
                                                  dwi, folder / "dwi.bval", folder / "dwi.bvec", _sidecar(dwi),
                                                  protocol=protocol))
            platforms[-1] = platforms[-1].model_copy(update={"scanner": scanner})
        extra = {"layout": "mushac"}
    else:
        raise InputError(f"unknown layout {layout!r}; choose bids or mushac.")
    spec = DatasetSpec(name=name or data.name, platforms=platforms, subjects=subjects,
                       data_root=os.path.relpath(data, out.resolve()), **extra)
    out.mkdir(parents=True, exist_ok=True)
    write_text(target, dump_yaml(spec.model_dump(mode="json", exclude_none=True)))
    return target
